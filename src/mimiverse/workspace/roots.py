"""Whose projects live where, and which of them a caller may use.

In ``auth=accounts`` each user has a root ``<workspaces_dir>/users/<name>`` and each team
a shared one ``<workspaces_dir>/teams/<slug>``; a project is a folder directly inside a
root. A project is named by a reference ``<owner>/<project>``: ``alice/app`` for a
user's, ``team:core/app`` for a team's. In ``auth=local`` there is one project, the
``project_root`` setting, named ``local/<folder name>``.

Every request that names a project goes through :meth:`Workspaces.project`, which only
finds projects in roots the caller may use; anything else is "not found" (the same
answer whether it exists or not, so names do not leak).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimiverse.accounts.principal import Principal
from mimiverse.errors import BadRequest, Conflict, NotFound
from mimiverse.settings import Settings

LOCAL_OWNER = "local"
TEAM_PREFIX = "team:"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class Project:
    """One project a caller may use."""

    ref: str
    owner: str
    name: str
    root: Path

    def describe(self) -> dict[str, Any]:
        """The project for the API (no server paths: they are nobody's business)."""
        shared = self.owner.startswith(TEAM_PREFIX)
        return {"ref": self.ref, "owner": self.owner, "name": self.name, "shared": shared}


class Workspaces:
    """Project roots per user and team, and the access rule over them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = (settings.workspaces_dir or settings.data_dir / "workspaces").resolve()

    @property
    def local(self) -> bool:
        """auth=local: the one project_root project, no per-user roots."""
        return self.settings.auth == "local"

    def roots_of(self, principal: Principal) -> dict[str, Path]:
        """Owner name → root folder, for every root the caller may use."""
        if self.local:
            return {LOCAL_OWNER: self.settings.project_root.resolve().parent}
        roots = {principal.username: self.base / "users" / principal.username}
        for team in principal.teams:
            roots[TEAM_PREFIX + team] = self.base / "teams" / team
        return roots

    def projects(self, principal: Principal) -> list[Project]:
        """The caller's projects, own first, then each team's."""
        if self.local:
            return [self._local_project()]
        found = []
        for owner, root in self.roots_of(principal).items():
            if root.is_dir() and root.resolve() == root:
                for child in sorted(root.iterdir()):
                    if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                        found.append(Project(f"{owner}/{child.name}", owner, child.name, child))
        return found

    def project(self, principal: Principal, ref: str | None = None) -> Project:
        """The project ``ref`` names, if the caller may use it; None = the caller's default.

        The default is the project_root in auth=local, else the caller's ``default``
        project, created on first use.
        """
        if self.local:
            project = self._local_project()
            if ref in (None, "", project.ref, project.name):
                return project
            raise self._not_found(ref or "")
        if not ref:
            root = self.roots_of(principal)[principal.username] / DEFAULT_PROJECT
            root.mkdir(parents=True, exist_ok=True)
            return Project(f"{principal.username}/{DEFAULT_PROJECT}", principal.username,
                           DEFAULT_PROJECT, root)  # fmt: skip
        owner, sep, name = ref.partition("/")
        roots = self.roots_of(principal)
        if not sep or owner not in roots or not _valid_name(name):
            raise self._not_found(ref)
        root = roots[owner] / name
        if not root.is_dir() or root.resolve() != root:  # a symlink on the way leads out
            raise self._not_found(ref)
        return Project(ref, owner, name, root)

    def create(self, principal: Principal, name: str, team: str | None = None) -> Project:
        """A new, empty project in the caller's root or a team's they belong to."""
        if self.local:
            raise BadRequest(
                "auth=local serves one project (the project_root setting): set "
                "MIMI_PROJECT_ROOT, or run with auth=accounts for per-user projects"
            )
        from mimiverse.accounts.service import check_name

        value = check_name(name, "project name")
        owner = principal.username if team is None else TEAM_PREFIX + team
        roots = self.roots_of(principal)
        if owner not in roots:
            raise NotFound(f"you are not in a team '{team}': GET /api/auth/me lists your teams")
        root = roots[owner] / value
        if root.parent.resolve() != root.parent:
            raise Conflict(
                f"the folder of '{owner}' on the server is a symlink: an admin must make it "
                "a plain folder before projects can be created there"
            )
        try:
            root.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise Conflict(f"the project '{owner}/{value}' exists already") from exc
        return Project(f"{owner}/{value}", owner, value, root)

    def may_use(self, principal: Principal, root: Path) -> bool:
        """Whether a project folder lies in one of the caller's roots."""
        target = root.resolve()
        return any(
            target == r.resolve() / target.name and target.parent == r.resolve()
            for r in self.roots_of(principal).values()
        ) or (self.local and target == self.settings.project_root.resolve())

    def _local_project(self) -> Project:
        root = self.settings.project_root.resolve()
        return Project(f"{LOCAL_OWNER}/{root.name}", LOCAL_OWNER, root.name, root)

    def _not_found(self, ref: str) -> NotFound:
        return NotFound(
            f"no project '{ref}' that you may use: GET /api/projects lists yours "
            "(references look like 'alice/app' or 'team:core/app')"
        )


def _valid_name(name: str) -> bool:
    from mimiverse.accounts.service import NAME_RE

    return bool(NAME_RE.match(name)) and name not in (".", "..")

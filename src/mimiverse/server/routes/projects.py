"""The caller's projects: list them, create one (in their own root or a team's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from mimiverse.server.auth import principal_of
from mimiverse.server.openapi import errors

if TYPE_CHECKING:
    from mimiverse.workspace.roots import Project, Workspaces

router = APIRouter(prefix="/api/projects", tags=["projects"])
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
"""Project names and team slugs as the schema shows them (kept lower-cased)."""


def _named(what: str) -> BeforeValidator:
    """The naming rule's own message, ahead of the schema's pattern."""

    def check(value: Any) -> Any:
        from mimiverse.accounts.service import check_name
        from mimiverse.errors import BadRequest

        if isinstance(value, str):
            try:
                check_name(value, what)
            except BadRequest as exc:
                raise PydanticCustomError("name", exc.message) from None
        return value

    return BeforeValidator(check)


class ProjectBody(BaseModel):
    """POST /api/projects."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, _named("project name")] = Field(
        pattern=NAME_PATTERN, description="1-32 letters, digits, '_', '.' or '-' (lower-cased)."
    )
    team: Annotated[str | None, _named("team slug")] = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A team's slug: create the project in that team's shared root.",
    )


def workspaces_of(request: Any) -> Workspaces:
    """The app's workspaces (``request`` may be a WebSocket)."""
    workspaces: Workspaces = request.app.state.workspaces
    return workspaces


def resolve_project(request: Any, ref: str | None) -> Project:
    """The project ``ref`` names if the caller may use it (None: their default); else 404."""
    return workspaces_of(request).project(principal_of(request), ref or None)


@router.get("")
async def list_projects(request: Request) -> dict[str, Any]:
    """The caller's projects, own first, then their teams'."""
    found = workspaces_of(request).projects(principal_of(request))
    return {"projects": [p.describe() for p in found]}


@router.post("", status_code=201, responses=errors(404, 409))
async def create_project(body: ProjectBody, request: Request) -> dict[str, Any]:
    """A new, empty project."""
    project = workspaces_of(request).create(principal_of(request), body.name, team=body.team)
    return project.describe()

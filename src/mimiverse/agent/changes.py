"""Changesets: the agent's edits as proposals, approved or rejected per hunk, then applied.

Edits never touch disk when they are made. They collect on the session's *draft*
changeset; ``propose()`` turns the draft into a proposal with hunks (ids like ``f0h1``,
unique in the changeset) that the user approves or rejects one by one. ``apply()`` writes
only approved hunks, all files or none; ``undo()`` puts the files back. Every state is
saved in the ``AgentStore``, so a restarted server can still apply or undo.

Lifecycle: ``draft → proposed → applied | partially_applied | rejected → undone``.

Decisions:

- ``apply`` refuses (BadRequest listing their ids) while any hunk is undecided; approve
  or reject them, or ``decide(id, all=True)`` / ``all=False`` for every hunk at once.
- A rejected hunk keeps the file's old lines. A new file is created, and a file deleted,
  only when its one hunk is approved; a rename has its own hunk (``kind="rename"``) so
  the content hunks of a renamed file can be approved without moving it, or vice versa.
- Before writing, every file must still be exactly as it was when first edited (else
  Conflict naming it, nothing written). Writes are atomic per file (temp + rename), and
  a failure midway restores the files already written.
- ``undo`` refuses (Conflict) when a file differs from what ``apply`` wrote.
"""

from __future__ import annotations

import builtins
import contextlib
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from mimiverse.agent import diffs
from mimiverse.agent.store import AgentStore
from mimiverse.errors import BadRequest, Conflict, MimiError, NotFound, ToolError
from mimiverse.workspace import files
from mimiverse.workspace.paths import Workspace

HunkStatus = Literal["pending", "approved", "rejected"]
HunkKind = Literal["text", "rename"]
ChangesetStatus = Literal["draft", "proposed", "applied", "partially_applied", "rejected", "undone"]

MAX_EDIT_BYTES = 1_000_000
"""Largest file the agent edits; bigger ones are changed with commands instead."""


@dataclass
class Hunk:
    """One reviewable piece of a file's change."""

    id: str
    path: str
    header: str
    lines: list[str]
    status: HunkStatus = "pending"
    kind: HunkKind = "text"
    """``rename``: moving the file (no lines); ``text``: a unified-diff hunk."""

    def text(self) -> str:
        """The hunk as unified-diff text."""
        return "\n".join([self.header, *self.lines]) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "id": self.id,
            "path": self.path,
            "header": self.header,
            "lines": list(self.lines),
            "status": self.status,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hunk:
        """The hunk ``as_dict`` described."""
        return cls(
            id=data["id"],
            path=data["path"],
            header=data["header"],
            lines=list(data["lines"]),
            status=cast(HunkStatus, data.get("status", "pending")),
            kind=cast(HunkKind, data.get("kind", "text")),
        )


@dataclass
class FileChange:
    """One file's change: ``before`` None is a new file, ``after`` None a deletion."""

    path: str
    before: str | None
    after: str | None
    renamed_from: str | None = None
    hunks: list[Hunk] = field(default_factory=list)
    mode: int | None = None
    """Permission bits of the original file (kept on rename, restored on undo)."""
    applied: dict[str, Any] | None = None
    """What ``apply`` wrote: ``{"path": str | None, "text": str | None, "dirs": [...]}``."""

    @property
    def source(self) -> str:
        """Where the file is on disk before the change."""
        return self.renamed_from or self.path

    def diff(self) -> str:
        """The whole change as unified-diff text."""
        return diffs.render_diff(
            self.source if self.before is not None else None,
            self.path if self.after is not None else None,
            [(h.header, h.lines) for h in self.hunks if h.kind == "text"],
        )

    def make_hunks(self, prefix: str) -> None:
        """Recompute ``hunks`` from before/after; ids are ``<prefix>h<n>``."""
        self.hunks = []
        if self.renamed_from is not None and self.after is not None:
            header = f"@@ rename {self.renamed_from} -> {self.path} @@"
            self.hunks.append(Hunk(f"{prefix}h0", self.path, header, [], kind="rename"))
        raw = diffs.diff_hunks(self.before or "", self.after or "")
        if not raw and (self.before is None or self.after is None):
            raw = [diffs.RawHunk(diffs.Span(0, 0, 0, 0), [])]  # an empty file made or removed
        for n, hunk in enumerate(raw, 1):
            self.hunks.append(Hunk(f"{prefix}h{n}", self.path, hunk.span.header(), hunk.lines))

    def changed(self) -> bool:
        """Whether this change does anything."""
        return self.before != self.after or self.renamed_from is not None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "path": self.path,
            "before": self.before,
            "after": self.after,
            "renamed_from": self.renamed_from,
            "mode": self.mode,
            "hunks": [h.as_dict() for h in self.hunks],
            "applied": self.applied,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileChange:
        """The file change ``as_dict`` described."""
        return cls(
            path=data["path"],
            before=data.get("before"),
            after=data.get("after"),
            renamed_from=data.get("renamed_from"),
            hunks=[Hunk.from_dict(h) for h in data.get("hunks", [])],
            mode=data.get("mode"),
            applied=data.get("applied"),
        )


@dataclass
class Changeset:
    """A set of file changes reviewed and applied together."""

    id: str
    session_id: str
    title: str = ""
    status: ChangesetStatus = "draft"
    files: list[FileChange] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def hunk_count(self) -> int:
        """Hunks over all files."""
        return sum(len(f.hunks) for f in self.files)

    def hunks(self) -> list[Hunk]:
        """Every hunk, file by file."""
        return [h for f in self.files for h in f.hunks]

    def diff(self) -> str:
        """Every file's change as one unified diff."""
        return "".join(f.diff() for f in self.files)

    def file(self, path: str) -> FileChange | None:
        """The change to ``path`` (its path after the change), or None."""
        return next((f for f in self.files if f.path == path), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (what the store keeps)."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "title": self.title,
            "status": self.status,
            "created_at": self.created_at,
            "hunk_count": self.hunk_count,
            "files": [f.as_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Changeset:
        """The changeset ``as_dict`` described."""
        return cls(
            id=data["id"],
            session_id=data.get("session_id", ""),
            title=data.get("title", ""),
            status=cast(ChangesetStatus, data["status"]),
            files=[FileChange.from_dict(f) for f in data.get("files", [])],
            created_at=float(data.get("created_at", 0.0)),
        )


@dataclass
class _Action:
    """Write ``data`` to ``path`` (None: remove it)."""

    path: Path
    data: bytes | None
    mode: int | None = None


class ChangeManager:
    """Stages a session's edits on its draft and proposes, decides, applies and undoes them."""

    def __init__(
        self, workspace: Workspace, store: AgentStore | None = None, session_id: str = ""
    ) -> None:
        self.workspace = workspace
        self.store = store if store is not None else AgentStore.memory()
        self.session_id = session_id
        self._lock = threading.RLock()
        drafts = [d for d in self.store.list_changesets(session_id) if d.get("status") == "draft"]
        self._draft_id: str | None = drafts[-1]["id"] if drafts else None

    # --- staging --------------------------------------------------------------------------

    def stage_edit(self, path: str, search: str, replace: str) -> FileChange:
        """Replace the one occurrence of ``search`` in the draft's view of ``path``."""
        with self._lock:
            draft = self._draft()
            key = self._key(path)
            change = self._tracked(draft, key)
            if change is None:
                if search.strip():
                    raise NotFound(
                        f"no file {key!r} in the project; create it with create_file", path=key
                    )
                return self._stage_write(draft, key, replace)
            if change.after is None:
                raise NotFound(f"{key!r} is deleted in the pending changes", path=key)
            if search == replace:
                raise ToolError("search and replace are the same: nothing would change")
            change.after = diffs.replace_block(change.after, search, replace, path=key)
            _check_size(key, change.after)
            return self._save_draft(draft, change)

    def stage_write(self, path: str, content: str) -> FileChange:
        """Create ``path`` with ``content``, or replace all of it."""
        with self._lock:
            draft = self._draft()
            return self._stage_write(draft, self._key(path), content)

    def _stage_write(self, draft: Changeset, key: str, content: str) -> FileChange:
        _check_size(key, content)
        change = self._tracked(draft, key)
        if change is None:
            change = FileChange(key, None, None)
            draft.files.append(change)
        change.after = content
        return self._save_draft(draft, change)

    def stage_delete(self, path: str) -> FileChange:
        """Delete ``path``."""
        with self._lock:
            draft = self._draft()
            key = self._key(path)
            change = self._tracked(draft, key)
            if change is None:
                raise NotFound(f"no file {key!r} in the project", path=key)
            if change.after is None:
                raise NotFound(f"{key!r} is already deleted in the pending changes", path=key)
            if change.renamed_from is not None:
                change.path, change.renamed_from = change.renamed_from, None
            change.after = None
            if change.before is None:
                draft.files.remove(change)
            return self._save_draft(draft, change)

    def stage_rename(self, src: str, dst: str) -> FileChange:
        """Move ``src`` to ``dst`` (which must not exist)."""
        with self._lock:
            draft = self._draft()
            src_key, dst_key = self._key(src), self._key(dst)
            change = self._tracked(draft, src_key)
            if change is None:
                raise NotFound(f"no file {src_key!r} in the project", path=src_key)
            if change.after is None:
                raise NotFound(f"{src_key!r} is deleted in the pending changes", path=src_key)
            if dst_key != change.source and (
                draft.file(dst_key) is not None or (self.workspace.root / dst_key).exists()
            ):
                raise ToolError(
                    f"cannot rename {src_key} to {dst_key}: {dst_key} already exists; "
                    "pick another name or delete it first",
                    path=dst_key,
                )
            origin = change.source if change.before is not None else None
            change.path = dst_key
            change.renamed_from = origin if origin != dst_key else None
            return self._save_draft(draft, change)

    def current_text(self, path: str) -> str | None:
        """The draft's view of ``path``; None when the draft does not touch it (or deletes it)."""
        with self._lock:
            if self._draft_id is None:
                return None
            change = self._draft().file(self._key(path))
            return change.after if change is not None else None

    def read(self, path: str) -> str | None:
        """The text the next edit of ``path`` sees: the draft's, else the disk's (None: absent)."""
        with self._lock:
            key = self._key(path)
            change = self._draft().file(key) if self._draft_id is not None else None
            return change.after if change is not None else self._read_disk(key)

    def has_draft(self) -> bool:
        """Whether edits are waiting to be proposed."""
        with self._lock:
            return self._draft_id is not None and any(f.changed() for f in self._draft().files)

    def draft(self) -> Changeset | None:
        """The open draft (edits not proposed yet), or None."""
        with self._lock:
            return self._draft() if self._draft_id is not None else None

    # --- proposals --------------------------------------------------------------------------

    def propose(self, title: str = "") -> Changeset | None:
        """Turn the draft into a proposal with hunks to decide; None when nothing changed."""
        with self._lock:
            if self._draft_id is None:
                return None
            draft = self._draft()
            self._draft_id = None
            draft.files = [f for f in draft.files if f.changed()]
            if not draft.files:
                self._save(draft)
                return None
            for n, change in enumerate(draft.files):
                change.make_hunks(f"f{n}")
            draft.status = "proposed"
            draft.title = title or _title(draft.files)
            draft.created_at = time.time()
            self._save(draft)
            return draft

    def get(self, changeset_id: str) -> Changeset:
        """One changeset (of any session); NotFound when there is none."""
        data = self.store.get_changeset(changeset_id)
        if data is None:
            raise NotFound(f"no changeset {changeset_id!r}", changeset_id=changeset_id)
        return Changeset.from_dict(data)

    def list(self, *, include_drafts: bool = False) -> builtins.list[Changeset]:
        """This session's changesets (every session's when ``session_id`` is ''), oldest first."""
        rows = self.store.list_changesets(self.session_id or None)
        return [
            Changeset.from_dict(d) for d in rows if include_drafts or d.get("status") != "draft"
        ]

    def decide(
        self,
        changeset_id: str,
        approve: builtins.list[str] | None = None,
        reject: builtins.list[str] | None = None,
        *,
        all: bool | None = None,
    ) -> Changeset:
        """Approve or reject hunks; ``all`` decides every hunk first, the lists then override."""
        with self._lock:
            changeset = self._proposed(changeset_id, "decided")
            hunks = {h.id: h for h in changeset.hunks()}
            approve, reject = list(approve or []), list(reject or [])
            unknown = [i for i in approve + reject if i not in hunks]
            if unknown:
                raise NotFound(
                    f"no hunk {', '.join(unknown)} in changeset {changeset_id}; "
                    f"its hunks are {', '.join(hunks)}",
                    changeset_id=changeset_id,
                )
            both = sorted(set(approve) & set(reject))
            if both:
                raise BadRequest(f"hunks {', '.join(both)} are both approved and rejected")
            if all is not None:
                for hunk in hunks.values():
                    hunk.status = "approved" if all else "rejected"
            for hunk_id in approve:
                hunks[hunk_id].status = "approved"
            for hunk_id in reject:
                hunks[hunk_id].status = "rejected"
            self._save(changeset)
            return changeset

    def apply(self, changeset_id: str) -> Changeset:
        """Write the approved hunks of every file, all or nothing."""
        with self._lock:
            changeset = self._proposed(changeset_id, "applied")
            pending = [h.id for h in changeset.hunks() if h.status == "pending"]
            if pending:
                raise BadRequest(
                    f"hunks {', '.join(pending)} of changeset {changeset_id} are undecided; "
                    "approve or reject them (or decide all) before applying",
                    changeset_id=changeset_id,
                    undecided=pending,
                )
            plans = [(change, self._plan(change)) for change in changeset.files]
            for change, _plan in plans:
                self._check_before(change)
            actions = [action for _change, plan in plans for action in plan[0]]
            made_dirs = self._execute(actions, f"applying changeset {changeset_id}")
            for change, (change_actions, record) in plans:
                if record is not None:
                    record["dirs"] = [
                        self.workspace.relative(d)
                        for a in change_actions
                        for d in made_dirs.get(a.path, [])
                    ]
                change.applied = record
            statuses = {h.status for h in changeset.hunks()}
            if statuses == {"rejected"}:
                changeset.status = "rejected"
            elif "rejected" in statuses:
                changeset.status = "partially_applied"
            else:
                changeset.status = "applied"
            self._save(changeset)
            return changeset

    def undo(self, changeset_id: str) -> Changeset:
        """Put every file back as it was before ``apply``."""
        with self._lock:
            changeset = self.get(changeset_id)
            if changeset.status not in ("applied", "partially_applied"):
                raise Conflict(
                    f"changeset {changeset_id} is {changeset.status}; only an applied "
                    "changeset can be undone",
                    changeset_id=changeset_id,
                )
            done = [c for c in changeset.files if c.applied is not None]
            for change in done:
                self._check_applied(change)
            actions: builtins.list[_Action] = []
            for change in done:
                assert change.applied is not None
                written = change.applied.get("path")
                if change.before is not None:
                    data = change.before.encode()
                    actions.append(_Action(self._full(change.source), data, change.mode))
                if written is not None and (change.before is None or written != change.source):
                    actions.append(_Action(self._full(written), None))
            self._execute(actions, f"undoing changeset {changeset_id}")
            for change in done:
                assert change.applied is not None
                for rel in reversed(change.applied.get("dirs", [])):
                    with contextlib.suppress(OSError):
                        (self.workspace.root / rel).rmdir()
            changeset.status = "undone"
            self._save(changeset)
            return changeset

    # --- internals ------------------------------------------------------------------------

    def _draft(self) -> Changeset:
        if self._draft_id is not None:
            data = self.store.get_changeset(self._draft_id)
            if data is not None and data.get("status") == "draft":
                return Changeset.from_dict(data)
        changeset = Changeset(id=f"cs-{uuid.uuid4().hex[:12]}", session_id=self.session_id)
        self._draft_id = changeset.id
        return changeset

    def _save(self, changeset: Changeset) -> None:
        self.store.put_changeset(
            changeset.id, changeset.session_id, changeset.status, changeset.as_dict()
        )

    def _save_draft(self, draft: Changeset, change: FileChange) -> FileChange:
        for n, each in enumerate(draft.files):
            each.make_hunks(f"f{n}")
        self._save(draft)
        return change

    def _proposed(self, changeset_id: str, verb: str) -> Changeset:
        changeset = self.get(changeset_id)
        if changeset.status == "draft":
            raise BadRequest(
                f"changeset {changeset_id} is still a draft; propose it before it can be {verb}"
            )
        if changeset.status != "proposed":
            raise Conflict(
                f"changeset {changeset_id} is already {changeset.status}; it cannot be {verb}",
                changeset_id=changeset_id,
            )
        return changeset

    def _key(self, path: str) -> str:
        """``path`` as the project-relative name the draft uses; refuses escapes and .git."""
        full = self.workspace.resolve(path)
        if full == self.workspace.root:
            raise ToolError(f"{path!r} is the project root; name a file in it")
        key = self.workspace.relative(full)
        if key == ".git" or key.startswith(".git/"):
            raise ToolError(f"{key!r} is inside .git; change history with the git tools")
        return key

    def _full(self, key: str) -> Path:
        """The disk path of ``key``; Conflict when a symlink now redirects it."""
        full = self.workspace.resolve(key)
        if full != self.workspace.root / key:
            raise Conflict(
                f"{key} is now a symlink to {self.workspace.relative(full)}; nothing was written",
                path=key,
            )
        return full

    def _read_disk(self, key: str) -> str | None:
        """The text of ``key`` on disk (None: absent); ToolError for what we cannot edit."""
        full = self.workspace.root / key
        try:
            info = full.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{key!r} is a directory; name a file", path=key)
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{key!r} is not a regular file", path=key)
        if info.st_size > MAX_EDIT_BYTES:
            raise ToolError(_too_big(key, info.st_size), path=key)
        data = files.read_bytes(full, beneath=self.workspace.root)
        if files.is_binary(data):
            raise ToolError(f"{key!r} is a binary file; the agent edits text files only", path=key)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(
                f"{key!r} is not UTF-8 text; the agent edits UTF-8 files only", path=key
            ) from None

    def _tracked(self, draft: Changeset, key: str) -> FileChange | None:
        """The draft's change to ``key``, tracking the file on disk when the draft has none
        yet; None when neither has it. (A change whose ``after`` is None deletes the file.)"""
        change = draft.file(key)
        if change is None:
            text = self._read_disk(key)
            if text is None:
                return None
            change = self._track(draft, key, text)
        return change

    def _track(self, draft: Changeset, key: str, text: str) -> FileChange:
        mode = (self.workspace.root / key).stat().st_mode & 0o7777
        for other in draft.files:
            if other.renamed_from == key:
                raise ToolError(
                    f"{key} is renamed to {other.path} in the pending changes; edit {other.path}",
                    path=key,
                )
        change = FileChange(key, text, text, mode=mode)
        draft.files.append(change)
        return change

    def _plan(self, change: FileChange) -> tuple[builtins.list[_Action], dict[str, Any] | None]:
        """What applying ``change``'s decisions writes, and the record ``undo`` needs."""
        take = [h for h in change.hunks if h.kind == "text"]
        if not any(h.status == "approved" for h in change.hunks):
            return [], None
        if change.before is None:
            text = diffs.apply_spans("", change.after or "", _spans(take))
            return [_Action(self._full(change.path), text.encode())], {
                "path": change.path,
                "text": text,
            }
        if change.after is None:
            return [_Action(self._full(change.source), None)], {"path": None, "text": None}
        text = diffs.apply_spans(change.before, change.after, _spans(take))
        moved = any(h.kind == "rename" and h.status == "approved" for h in change.hunks)
        target = change.path if moved else change.source
        if target == change.source and text == change.before:
            return [], None
        actions = [_Action(self._full(target), text.encode(), change.mode if moved else None)]
        if moved:
            actions.append(_Action(self._full(change.source), None))
        return actions, {"path": target, "text": text}

    def _check_before(self, change: FileChange) -> None:
        """Conflict unless the disk still holds what ``change`` was made against."""
        if not any(h.status == "approved" for h in change.hunks):
            return
        on_disk = _disk_bytes(self._full(change.source))
        if change.before is None:
            if on_disk is not None:
                raise Conflict(
                    f"{change.path} was created on disk since the proposal; nothing was "
                    "written. Propose the change again.",
                    path=change.path,
                )
            return
        if on_disk != change.before.encode():
            what = "deleted" if on_disk is None else "changed"
            raise Conflict(
                f"{change.source} was {what} on disk since the proposal; nothing was "
                "written. Read it again and propose the change against the current text.",
                path=change.source,
            )
        moved = any(h.kind == "rename" and h.status == "approved" for h in change.hunks)
        if moved and _disk_bytes(self._full(change.path)) is not None:
            raise Conflict(
                f"cannot rename {change.source} to {change.path}: {change.path} now exists; "
                "nothing was written",
                path=change.path,
            )

    def _check_applied(self, change: FileChange) -> None:
        """Conflict unless the disk still holds what ``apply`` wrote for ``change``."""
        assert change.applied is not None
        written, text = change.applied.get("path"), change.applied.get("text")
        if written is not None:
            on_disk = _disk_bytes(self._full(written))
            if on_disk is None or text is None or on_disk != text.encode():
                raise Conflict(
                    f"{written} was changed after the changeset was applied; undo would "
                    "lose those edits, so nothing was restored",
                    path=written,
                )
        if (
            change.before is not None
            and written != change.source
            and _disk_bytes(self._full(change.source)) is not None
        ):
            raise Conflict(
                f"{change.source} exists again since the changeset was applied; "
                "nothing was restored",
                path=change.source,
            )

    def _execute(
        self, actions: builtins.list[_Action], what: str
    ) -> dict[Path, builtins.list[Path]]:
        """Run ``actions``; on a failure put back every path already touched, then raise.

        Returns the directories each write had to create.
        """
        done: builtins.list[tuple[_Action, bytes | None, int | None, builtins.list[Path]]] = []
        made: dict[Path, builtins.list[Path]] = {}
        try:
            for action in actions:
                old = _disk_bytes(action.path)
                old_mode = action.path.stat().st_mode & 0o7777 if old is not None else None
                dirs = _missing_dirs(action.path.parent, self.workspace.root)
                done.append((action, old, old_mode, dirs))
                if action.data is None:
                    files.remove(action.path, beneath=self.workspace.root)
                else:
                    files.atomic_write(
                        action.path, action.data, mode=action.mode, beneath=self.workspace.root
                    )
                made[action.path] = dirs
        except BaseException as exc:
            name = self.workspace.relative(action.path)
            for undone, old, old_mode, dirs in reversed(done):
                with contextlib.suppress(OSError):
                    if old is None:
                        undone.path.unlink(missing_ok=True)
                    else:
                        files.atomic_write(
                            undone.path, old, mode=old_mode, beneath=self.workspace.root
                        )
                for directory in reversed(dirs):
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            if not isinstance(exc, OSError):
                raise
            raise MimiError(
                f"{what} failed at {name}: {exc.strerror or exc}; the files already "
                "written were restored, so nothing changed",
                path=name,
            ) from exc
        return made


def _spans(hunks: list[Hunk]) -> list[tuple[diffs.Span, bool]]:
    return [(diffs.Span.parse(h.header), h.status == "approved") for h in hunks]


def _disk_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        return b"\x00<directory>"


def _missing_dirs(directory: Path, root: Path) -> list[Path]:
    """Directories from the top down that a write in ``directory`` would create."""
    missing: list[Path] = []
    while directory != root and root in directory.parents and not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return missing[::-1]


def _check_size(key: str, text: str) -> None:
    size = len(text.encode())
    if size > MAX_EDIT_BYTES:
        raise ToolError(_too_big(key, size), path=key)


def _too_big(key: str, size: int) -> str:
    return (
        f"{key!r} is {size / 1e6:.1f} MB; the agent edits files up to "
        f"{MAX_EDIT_BYTES / 1e6:.0f} MB. Change it with a shell command instead"
    )


def _title(changes: list[FileChange]) -> str:
    if len(changes) == 1:
        change = changes[0]
        if change.before is None:
            return f"create {change.path}"
        if change.after is None:
            return f"delete {change.path}"
        if change.renamed_from is not None and change.before == change.after:
            return f"rename {change.renamed_from} to {change.path}"
        return f"edit {change.path}"
    return f"edit {len(changes)} files"

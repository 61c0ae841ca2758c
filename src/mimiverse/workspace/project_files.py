"""A project's files as the IDE sees them: list a folder, read and save text, create,
rename, delete and upload.

Every path is checked by ``check_documented`` (the rule request schemas state) and then
resolved by :class:`~mimiverse.workspace.paths.Workspace`; every change goes through
``workspace.files``, which reaches folders without following symlinks. Operations on an
entry itself (create, rename, delete) act on the name in its real folder, so a link
inside the project is renamed or deleted, never the file it points to. ``.git`` is
hidden: it is not listed, and paths into it are "not found".
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from mimiverse.errors import BadRequest, Conflict, Forbidden, NotFound, PathOutsideWorkspace
from mimiverse.workspace import files
from mimiverse.workspace.paths import Workspace, check_documented

Kind = Literal["file", "dir"]
HIDDEN = frozenset({".git"})
"""Folder names the IDE never shows or opens (matched case-insensitively)."""
MAX_ENTRIES = 5000
"""Entries one folder listing returns; the rest is cut (``truncated``)."""

_WRITES = threading.Lock()
"""Check-then-write steps (a save's base hash, a name being free) run one at a time."""


class FileTooLarge(BadRequest):
    """A file is over the ``max_file_bytes`` setting."""

    status = 413
    code = "file_too_large"


class NotText(BadRequest):
    """A file is binary or not UTF-8: the editor cannot show it."""

    status = 415
    code = "not_text"


class FileChanged(Conflict):
    """A save's ``base_sha256`` is not the file on disk any more; nothing was written."""

    code = "file_changed"

    def __init__(self, message: str, *, current_sha256: str | None) -> None:
        super().__init__(message, current_sha256=current_sha256)
        self.current_sha256 = current_sha256

    def to_dict(self) -> dict[str, Any]:
        """The error, with ``current_sha256`` beside it too (the client's conflict view)."""
        return super().to_dict() | {"current_sha256": self.current_sha256}


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing."""

    path: str
    name: str
    kind: Kind
    size: int | None

    def as_dict(self) -> dict[str, Any]:
        """The API shape."""
        return {"path": self.path, "name": self.name, "kind": self.kind, "size": self.size}


@dataclass(frozen=True)
class TextFile:
    """A file's text as the editor opens it."""

    path: str
    content: str
    sha256: str
    language: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        """The API shape."""
        return {"path": self.path, "content": self.content, "sha256": self.sha256,
                "language": self.language, "size": self.size}  # fmt: skip


class ProjectFiles:
    """The files of one project root, for one request."""

    def __init__(self, root: Path, *, max_file_bytes: int) -> None:
        self.workspace = Workspace(root)
        self.root = self.workspace.root
        self.max_file_bytes = max_file_bytes

    # --- reading ---------------------------------------------------------------------------

    def listing(self, path: str) -> tuple[str, list[Entry], bool]:
        """One folder's entries (dirs first, then by name), and whether some were cut."""
        rel = _normal(path)
        full = self._resolve(rel) if rel else self.root
        if not full.is_dir():
            raise NotFound(f"no folder {rel!r} in the project" + (": it is a file" if
                           full.exists() else ""), path=rel)  # fmt: skip
        found: list[Entry] = []
        with os.scandir(full) as entries:
            for item in entries:
                entry = self._entry(rel, item)
                if entry is not None:
                    found.append(entry)
        found.sort(key=lambda e: (e.kind != "dir", e.name.casefold(), e.name))
        return rel, found[:MAX_ENTRIES], len(found) > MAX_ENTRIES

    def _entry(self, folder: str, item: os.DirEntry[str]) -> Entry | None:
        if item.name.casefold() in HIDDEN:
            return None
        path = f"{folder}/{item.name}" if folder else item.name
        try:
            info = item.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                target = Path(item.path).resolve()
                if not self._inside(target):
                    return None  # a link out (or dangling) cannot be opened: not shown
                info = target.stat()
        except (OSError, RuntimeError):  # vanished, unreadable, or a symlink loop
            return None
        if stat.S_ISDIR(info.st_mode):
            return Entry(path, item.name, "dir", None)
        if stat.S_ISREG(info.st_mode):
            return Entry(path, item.name, "file", info.st_size)
        return None  # sockets, FIFOs, devices: nothing an editor opens

    def read(self, path: str) -> TextFile:
        """A text file; 404 when missing, 413 when too large, 415 when binary or not UTF-8."""
        rel = self._named(path)
        full = self._resolve(rel)
        self._regular(rel, full)
        with files.open_file(full, beneath=self.root) as handle:
            size = os.fstat(handle.fileno()).st_size
            self._fits(rel, size)
            data = handle.read(self.max_file_bytes + 1)
        self._fits(rel, len(data))
        if files.is_binary(data):
            raise NotText(f"{rel!r} is a binary file: the editor opens text files only", path=rel)
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotText(
                f"{rel!r} is not UTF-8 text (byte {exc.start}): the editor opens UTF-8 files "
                "only; convert it (e.g. iconv -t utf-8) to edit it here",
                path=rel,
            ) from None
        return TextFile(rel, content, _sha256(data), language_of(rel), len(data))

    # --- changing ----------------------------------------------------------------------------

    def write(self, path: str, content: str, base_sha256: str | None = None) -> tuple[str, str]:
        """Save ``content`` atomically; with ``base_sha256``, only over that version (409)."""
        rel = self._named(path)
        data = self._encoded(rel, content)
        full = self._resolve(rel)
        with _WRITES:
            if full.is_dir():
                raise Conflict(f"{rel!r} is a folder: save the file under another name", path=rel)
            if base_sha256 is not None:
                current = self._current_sha256(full)
                if current != base_sha256:
                    raise FileChanged(
                        f"{rel!r} changed on disk since it was opened"
                        + (" (it was deleted)" if current is None else "")
                        + ": nothing was written; reload it, or save again without "
                        "base_sha256 to overwrite",
                        current_sha256=current,
                    )
            with _mapped(rel):
                files.atomic_write(full, data, beneath=self.root)
        return rel, _sha256(data)

    def create(self, path: str, kind: Kind, content: str | None = None) -> dict[str, Any]:
        """A new file (with ``content``) or folder; 409 when the name is taken."""
        rel = self._named(path)
        if kind == "dir" and content:
            raise BadRequest(f"{rel!r} is a folder: send content only with kind 'file'")
        entry = self._own(rel)
        with _WRITES, _mapped(rel):
            if kind == "dir":
                files.make_dir(entry, beneath=self.root)
                return {"path": rel, "kind": kind}
            data = self._encoded(rel, content or "")
            files.create_new(entry, data, beneath=self.root)
        return {"path": rel, "kind": kind, "sha256": _sha256(data)}

    def rename(self, path: str, to: str) -> tuple[str, str]:
        """Move a file or folder to ``to`` (folders made as needed); 409 when ``to`` exists."""
        rel, target_rel = self._named(path), self._named(to)
        if not rel:
            raise Forbidden("the project root cannot be renamed: rename entries inside it")
        source, target = self._own(rel), self._own(target_rel)
        self._exists(rel, source)
        with _WRITES, _mapped(target_rel):
            files.move(source, target, beneath=self.root)
        return rel, target_rel

    def delete(self, path: str, *, recursive: bool = False) -> str:
        """Delete a file, link or folder; a folder with entries needs ``recursive``."""
        rel = self._named(path)
        if not rel:
            raise Forbidden("the project root cannot be deleted: delete entries inside it")
        entry = self._own(rel)
        self._exists(rel, entry)
        with _WRITES, _mapped(rel):
            try:
                files.delete(entry, beneath=self.root, recursive=recursive)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                raise Conflict(
                    f"folder {rel!r} is not empty: send recursive=true to delete it with "
                    "everything in it",
                    path=rel,
                ) from None
        return rel

    def upload(
        self, folder: str, uploads: list[tuple[str, bytes]], *, overwrite: bool = False
    ) -> list[str]:
        """Store uploaded files (name → bytes) under ``folder``; names may hold subfolders.

        Every name is checked, and none may exist (unless ``overwrite``), before anything
        is written.
        """
        base = _normal(folder)
        if base:
            self._resolve(base)
        planned: dict[str, Path] = {}
        for name, _ in uploads:
            rel = self._named(f"{base}/{name}" if base else name, what="upload name")
            if rel in planned:
                raise Conflict(f"two uploaded files are both named {rel!r}: rename one", path=rel)
            planned[rel] = self._own(rel)
        with _WRITES:
            if not overwrite:
                for rel, entry in planned.items():
                    if os.path.lexists(entry):
                        raise Conflict(
                            f"{rel!r} exists already: nothing was uploaded; delete or rename "
                            "it, or upload with overwrite=true",
                            path=rel,
                        )
            for (rel, entry), (_, data) in zip(planned.items(), uploads, strict=True):
                with _mapped(rel):
                    if overwrite:
                        files.atomic_write(entry, data, beneath=self.root)
                    else:
                        files.create_new(entry, data, beneath=self.root)
        return list(planned)

    # --- paths --------------------------------------------------------------------------------

    def _named(self, text: str, *, what: str = "path") -> str:
        """``text`` checked and normalised ('' is the root)."""
        if not text:  # names of only spaces are names
            raise BadRequest(f"empty {what}: name a file or folder relative to the project root")
        return _normal(text)

    def _resolve(self, rel: str) -> Path:
        """Where ``rel`` leads on disk (links inside followed); refused when it could leave."""
        # './' and '/.' keep a leading or trailing space in a name (resolve strips the
        # text) and keep the resolver's "project name as first folder" shortcut off.
        full = self.workspace.resolve(f"./{rel}/.")
        self._not_hidden(rel, full)
        return full

    def _own(self, rel: str) -> Path:
        """The entry ``rel`` names itself: its real folder and its own name (a link there is
        not followed). The whole path is checked first."""
        self._resolve(rel)
        parent_rel, _, name = rel.rpartition("/")
        if not name:
            raise Conflict("the project root exists already")
        parent = self._resolve(parent_rel) if parent_rel else self.root
        return parent / name

    def _not_hidden(self, rel: str, full: Path) -> None:
        inside = full.relative_to(self.root).parts if full != self.root else ()
        if any(p.casefold() in HIDDEN for p in (*PurePosixPath(rel).parts, *inside)):
            raise NotFound(f"no file or folder {rel!r} in the project (.git is hidden)", path=rel)

    def _inside(self, target: Path) -> bool:
        if target != self.root and self.root not in target.parents:
            return False
        return not any(p.casefold() in HIDDEN for p in target.relative_to(self.root).parts)

    # --- checks ---------------------------------------------------------------------------

    def _regular(self, rel: str, full: Path) -> None:
        if full.is_dir():
            raise NotFound(f"{rel!r} is a folder, not a file: list it with /api/files/tree",
                           path=rel)  # fmt: skip
        if not full.exists():
            raise NotFound(f"no file {rel!r} in the project", path=rel)
        if not full.is_file():
            raise NotText(f"{rel!r} is not a regular file (a FIFO, socket or device)", path=rel)

    def _exists(self, rel: str, entry: Path) -> None:
        if not os.path.lexists(entry):
            raise NotFound(f"no file or folder {rel!r} in the project", path=rel)

    def _fits(self, rel: str, size: int) -> None:
        if size > self.max_file_bytes:
            raise FileTooLarge(
                f"{rel!r} is {size} bytes; the editor opens and saves files up to "
                f"{self.max_file_bytes} bytes (raise MIMI_MAX_FILE_BYTES to allow more)",
                path=rel,
                size=size,
                limit=self.max_file_bytes,
            )

    def _encoded(self, rel: str, content: str) -> bytes:
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                f"the content for {rel!r} holds a lone surrogate (\\ud800-\\udfff) that is "
                "not text: send valid Unicode"
            ) from None
        self._fits(rel, len(data))
        return data

    def _current_sha256(self, full: Path) -> str | None:
        try:
            digest = hashlib.sha256()
            with files.open_file(full, beneath=self.root) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()
        except FileNotFoundError:
            return None


def _normal(text: str) -> str:
    """``text`` as a clean relative path: checked, '/'-separated, no '.' or empty parts."""
    if not text:
        return ""
    checked = check_documented(text)
    return "/".join(p for p in checked.split("/") if p not in ("", "."))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _mapped(rel: str) -> Iterator[None]:
    """File-system errors of a change as API errors that say what to do."""
    try:
        yield
    except PathOutsideWorkspace:
        raise
    except FileExistsError:
        raise Conflict(f"{rel!r} exists already: choose another name", path=rel) from None
    except FileNotFoundError:
        raise NotFound(f"no file or folder {rel!r} in the project", path=rel) from None
    except NotADirectoryError:
        raise Conflict(f"a file is in the way of {rel!r}: a folder on its path is a file",
                       path=rel) from None  # fmt: skip
    except IsADirectoryError:
        raise Conflict(f"{rel!r} is a folder", path=rel) from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise BadRequest(f"a name in {rel!r} is longer than the file system allows "
                             "(255 bytes): shorten it", path=rel) from None  # fmt: skip
        if exc.errno == errno.EINVAL:
            raise BadRequest(f"cannot move a folder into itself ({rel!r})", path=rel) from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise Forbidden(
                f"the server may not change {rel!r}: {exc.strerror}", path=rel
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            err = BadRequest(f"no space left to write {rel!r}: free some disk space", path=rel)
            err.status, err.code = 507, "insufficient_storage"
            raise err from None
        raise


# --- languages -------------------------------------------------------------------------------


@cache
def language_table() -> tuple[dict[str, str], dict[str, str]]:
    """File name → language id, and extension → language id (editor_languages.toml)."""
    text = resources.files("mimiverse.workspace").joinpath("editor_languages.toml").read_text()
    table = tomllib.loads(text)
    return dict(table["names"]), dict(table["extensions"])


def language_of(path: str) -> str:
    """The Monaco language id of a file, from its name or extension ('plaintext' if unknown)."""
    names, extensions = language_table()
    name = PurePosixPath(path).name
    if name in names:
        return names[name]
    _, dot, ext = name.rpartition(".")
    return extensions.get(ext.lower(), "plaintext") if dot else "plaintext"

"""Atomic file writes and bounded, encoding-tolerant reads."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mimiverse.errors import PathOutsideWorkspace

BINARY_SNIFF_BYTES = 8192


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_LINK = os.O_NOFOLLOW


def atomic_write(
    path: Path, data: bytes, *, mode: int | None = None, beneath: Path | None = None
) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename.

    A reader (or a crash) sees the old file or the new one, never half of either. The
    file keeps its permission bits when it existed; ``mode`` sets them for a new file.
    With ``beneath`` (a project root), every folder from it down to ``path`` is opened
    without following symlinks, so a folder swapped for a link after the path was checked
    cannot carry the write outside. A symlink at ``path`` itself is replaced, not followed.
    """
    with _folder(path, beneath, create=True) as folder:
        if mode is None:
            try:
                info = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
                mode = info.st_mode & 0o7777 if stat.S_ISREG(info.st_mode) else 0o644
            except FileNotFoundError:
                mode = 0o644
        tmp = f".{path.name}.{secrets.token_hex(4)}.mimi-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK, 0o600, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fchmod(out.fileno(), mode)
                os.fsync(out.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)
            raise


def read_bytes(path: Path, *, beneath: Path | None = None) -> bytes:
    """The bytes of ``path``, opened like ``open_file`` (no symlink followed below ``beneath``)."""
    with open_file(path, beneath=beneath) as handle:
        return handle.read()


def open_file(path: Path, *, beneath: Path | None = None) -> BinaryIO:
    """``path`` open for reading; with ``beneath``, reached without following any symlink.

    Callers pass a path ``Workspace.resolve`` returned (it has no links left); this check
    at open time closes the gap in which one could be planted. PathOutsideWorkspace then.
    """
    with _folder(path, beneath, create=False) as folder:
        flags = os.O_RDONLY | os.O_CLOEXEC | (_NO_LINK if beneath is not None else 0)
        try:
            fd = os.open(path.name, flags, dir_fd=folder)
        except OSError as exc:
            if _is_link(folder, path.name):
                raise _linked(path) from exc
            raise
    return os.fdopen(fd, "rb")


def remove(path: Path, *, beneath: Path | None = None) -> None:
    """Delete the file ``path`` (a symlink there is removed, never followed)."""
    with _folder(path, beneath, create=False) as folder:
        os.unlink(path.name, dir_fd=folder)


@contextlib.contextmanager
def _folder(path: Path, beneath: Path | None, *, create: bool) -> Iterator[int]:
    """A descriptor of ``path``'s folder; below ``beneath``, reached link by link refused."""
    if beneath is None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, _FOLDER)
    else:
        try:
            parts = path.parent.relative_to(beneath).parts
        except ValueError:
            raise PathOutsideWorkspace(
                f"{path.name!r} is not inside the project; use a path relative to its root"
            ) from None
        fd = os.open(beneath, _FOLDER)
        for part in parts:
            fd = _step(fd, part, path, create=create)  # closes the fd it is given
    try:
        yield fd
    finally:
        os.close(fd)


def _step(fd: int, part: str, path: Path, *, create: bool) -> int:
    """Open the folder ``part`` in ``fd`` (closing ``fd``), refusing a symlink there."""
    try:
        if part in (".", ".."):
            raise PathOutsideWorkspace(f"{path} has a '{part}' component; give a resolved path")
        try:
            return os.open(part, _FOLDER | _NO_LINK, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            return os.open(part, _FOLDER | _NO_LINK, dir_fd=fd)
        except OSError as exc:
            if _is_link(fd, part):
                raise _linked(path) from exc
            raise
    finally:
        os.close(fd)


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _linked(path: Path) -> PathOutsideWorkspace:
    return PathOutsideWorkspace(
        f"{path.name!r} (or a folder above it) is now a symlink: it is not followed, so "
        "nothing outside the project was read or written; use the real path"
    )


def is_binary(data: bytes) -> bool:
    """Whether ``data`` looks binary (a NUL byte in its first 8 KiB)."""
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def read_text(path: Path) -> str:
    """A text file's content; undecodable bytes become U+FFFD rather than an error."""
    return path.read_bytes().decode("utf-8", errors="replace")

"""Atomic file writes, bounded reads, and create, move and delete that follow no symlink."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
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
        tmp = _write_temp(folder, path.name, data, mode)
        try:
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)
            raise


def _write_temp(folder: int, name: str, data: bytes, mode: int) -> str:
    """``data`` in a new hidden temp file beside ``name`` (synced, with ``mode``); its name."""
    tmp = _temp_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK, 0o600, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        raise
    return tmp


def _temp_name(name: str) -> str:
    """A hidden, unique name beside ``name`` that fits NAME_MAX however long ``name`` is."""
    stem = name.encode()[:200].decode(errors="ignore")
    return f".{stem}.{secrets.token_hex(4)}.mimi-tmp"


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


# --- creating, moving and deleting (the IDE's file operations) ------------------------------


def create_new(path: Path, data: bytes, *, beneath: Path, mode: int = 0o644) -> None:
    """Write a new file at ``path``; FileExistsError when anything is there already.

    The content goes to a temp file first and is linked into place, so the name appears
    whole or not at all, and never replaces an entry that appeared meanwhile.
    """
    with _folder(path, beneath, create=True) as folder:
        tmp = _write_temp(folder, path.name, data, mode)
        try:
            os.link(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)


def make_dir(path: Path, *, beneath: Path) -> None:
    """Create the folder ``path`` and any missing parents; FileExistsError when it exists."""
    with _folder(path, beneath, create=True) as folder:
        os.mkdir(path.name, 0o755, dir_fd=folder)


def move(source: Path, target: Path, *, beneath: Path) -> None:
    """Rename ``source`` (a file, folder or link, not followed) to ``target``.

    Never replaces: FileExistsError when ``target`` exists. Missing parents of ``target``
    are created. Both folders are reached without following symlinks.
    """
    with (
        _folder(source, beneath, create=False) as src,
        _folder(target, beneath, create=True) as dst,
    ):
        os.lstat(source.name, dir_fd=src)  # FileNotFoundError before anything else
        if not _rename_noreplace(src, source.name, dst, target.name):
            if _exists(dst, target.name):
                raise FileExistsError(errno.EEXIST, "exists", str(target))
            os.rename(source.name, target.name, src_dir_fd=src, dst_dir_fd=dst)


def delete(path: Path, *, beneath: Path, recursive: bool = False) -> None:
    """Delete the file, link or folder ``path`` (a link is removed, never followed).

    A folder with entries needs ``recursive``; without it OSError(ENOTEMPTY) is raised.
    """
    with _folder(path, beneath, create=False) as folder:
        info = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path.name, dir_fd=folder)
        elif recursive:
            shutil.rmtree(path.name, dir_fd=folder)  # fd-based: links inside are not followed
        else:
            os.rmdir(path.name, dir_fd=folder)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


_RENAME_NOREPLACE = 1


def _rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> bool:
    """renameat2(RENAME_NOREPLACE): atomic no-clobber rename; False where unsupported."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), _RENAME_NOREPLACE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL) and _exists(src_dir, src) and not _exists(dst_dir, dst):
        return False  # the file system cannot do it: the caller checks, then renames
    raise OSError(code, os.strerror(code), dst)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)

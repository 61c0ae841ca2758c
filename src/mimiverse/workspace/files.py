"""Atomic file writes and bounded, encoding-tolerant reads."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

BINARY_SNIFF_BYTES = 8192


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename.

    A reader (or a crash) sees the old file or the new one, never half of either. The
    file keeps its permission bits when it existed; ``mode`` sets them for a new file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mimi-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_binary(data: bytes) -> bool:
    """Whether ``data`` looks binary (a NUL byte in its first 8 KiB)."""
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def read_text(path: Path) -> str:
    """A text file's content; undecodable bytes become U+FFFD rather than an error."""
    return path.read_bytes().decode("utf-8", errors="replace")

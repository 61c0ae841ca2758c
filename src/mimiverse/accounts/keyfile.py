"""Secrets made once and kept in a private file in the data dir (API token, session key)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

from mimiverse.errors import ConfigError


def kept_secret(path: Path, setting: str) -> str:
    """The secret in ``path``, created on first use (random, mode 0600).

    Two processes racing to create it end up with the same secret. ``setting`` names the
    environment variable that replaces the file, for error messages.
    """
    return _read(path, setting) or _create(path, setting)


def _read(path: Path, setting: str) -> str:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(
            f"cannot read the secret at {path}: {exc.strerror}; fix its permissions, "
            f"or set {setting}"
        ) from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o600)  # a secret others can read is none
    return text


def _create(path: Path, setting: str) -> str:
    """Write a new token with a link from a private temp file: all or nothing, never twice."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise ConfigError(
            f"cannot create a secret in {path.parent}: {exc.strerror}; "
            f"set MIMI_DATA_DIR to a writable folder or {setting}"
        ) from exc
    token = secrets.token_urlsafe(32)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read(path, setting)
            if existing:
                return existing
            os.replace(tmp, path)  # an empty file left by a crash: take its place
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return token

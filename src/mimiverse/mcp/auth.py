"""The bearer token that guards /mcp: from settings, or made once and kept in the data dir."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from mimiverse.errors import ConfigError
from mimiverse.settings import Settings

TOKEN_FILE = "api-token"
"""File name of the generated token, inside the data dir (mode 0600)."""


def token_path(settings: Settings) -> Path:
    """Where the generated token lives."""
    return settings.data_dir / TOKEN_FILE


def api_token(settings: Settings) -> str:
    """``settings.api_token`` when set, else the token kept in ``<data_dir>/api-token``.

    The file is created on first use with a random token, readable by its owner only; two
    processes racing to create it end up with the same token.
    """
    if settings.api_token:
        return settings.api_token
    path = token_path(settings)
    token = _read(path)
    if token:
        return token
    return _create(path)


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _read(path: Path) -> str:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(
            f"cannot read the API token at {path}: {exc.strerror}; fix its permissions, "
            "or set MIMI_API_TOKEN"
        ) from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o600)  # a token others can read is no secret
    return text


def _create(path: Path) -> str:
    """Write a new token with a link from a private temp file: all or nothing, never twice."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise ConfigError(
            f"cannot create the API token in {path.parent}: {exc.strerror}; "
            "set MIMI_DATA_DIR to a writable folder or MIMI_API_TOKEN to a token"
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
            existing = _read(path)
            if existing:
                return existing
            os.replace(tmp, path)  # an empty file left by a crash: take its place
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return token

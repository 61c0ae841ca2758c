"""The server's API token (auth=local): from settings, or made once and kept in the data dir.

AuthGuard (server/auth.py) maps it to the local admin; `mimiverse mcp --print-token` prints it.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from mimiverse.accounts.keyfile import kept_secret
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
    return kept_secret(token_path(settings), "MIMI_API_TOKEN")


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())

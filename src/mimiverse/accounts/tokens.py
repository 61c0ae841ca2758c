"""Random credentials and their stored forms: only keyed hashes ever reach the store."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "mimi_"
"""API tokens look like ``mimi_<id>_<secret>``: the id finds the row, the secret proves it."""


def digest(key: bytes, raw: str) -> str:
    """The keyed SHA-256 of a credential (what the store keeps)."""
    return hmac.new(key, raw.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected value matches nothing."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def new_session_id() -> str:
    """A session cookie value (256 bits)."""
    return secrets.token_urlsafe(32)


def new_csrf() -> str:
    """A per-session CSRF token."""
    return secrets.token_urlsafe(24)


def new_api_token() -> tuple[str, str]:
    """``(token_id, raw_token)`` for a new API token."""
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(raw: str) -> str:
    """The id part of an API token ('' when it does not look like one)."""
    if not raw.startswith(TOKEN_PREFIX):
        return ""
    token_id, sep, rest = raw[len(TOKEN_PREFIX) :].partition("_")
    return token_id if sep and rest and len(token_id) == 16 else ""

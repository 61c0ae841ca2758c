"""Who is making a request: the one object every route, tool and limit asks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["admin", "member"]
Via = Literal["local", "session", "token"]

SCOPES: frozenset[str] = frozenset({"api", "v1", "mcp", "admin"})
"""What an API token may be used for: /api, /v1 (OpenAI API), /mcp, /api/admin."""
LOCAL_USER_ID = "local"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (a user, through a session, a token or local trust)."""

    user_id: str
    username: str
    role: Role
    tier: str
    via: Via
    scopes: frozenset[str] = SCOPES
    teams: tuple[str, ...] = ()
    """Slugs of the teams the user belongs to (their shared workspaces)."""
    session_id: str = ""
    """The session's stored id (a hash), when authenticated by cookie."""
    token_id: str = ""
    """The API token's id, when authenticated by bearer token."""
    csrf: str = field(default="", repr=False)
    """The session's CSRF token: cookie-authenticated writes must echo it."""

    @property
    def is_admin(self) -> bool:
        """Admins manage accounts, teams and the audit log (not other users' code)."""
        return self.role == "admin"

    def allows(self, scope: str) -> bool:
        """Whether this credential may be used for ``scope`` (see SCOPES)."""
        if scope == "admin" and not self.is_admin:
            return False
        return scope in self.scopes


def local_principal(tier: str = "team") -> Principal:
    """The implicit admin of auth=local (a single-user machine, loopback only)."""
    return Principal(LOCAL_USER_ID, LOCAL_USER_ID, "admin", tier, "local")

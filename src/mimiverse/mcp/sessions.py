"""Who owns each MCP session on /mcp: a session id works only for its user and project.

The SDK hands out ``mcp-session-id`` values; anyone who learns one could send it. The
endpoint binds each new id to the user and project that opened the session and refuses
it from anybody else with the same 404 as an unknown id, so ids do not leak.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from mimiverse.errors import Conflict, NotFound

MAX_BOUND = 10_000
"""Sessions remembered (the SDK's default session limit); the least recently used go first."""


@dataclass(frozen=True)
class Owner:
    """The user and project one MCP session was opened for."""

    user_id: str
    root: Path
    project: str


class SessionOwners:
    """Session id → owner, bounded; ``check`` before a request, ``bind`` after an opening one."""

    def __init__(self, limit: int = MAX_BOUND) -> None:
        self.limit = limit
        self._owners: OrderedDict[str, Owner] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def bind(self, session_id: str, owner: Owner) -> None:
        """Record the owner of a session the SDK has just opened."""
        self._owners[session_id] = owner
        self._owners.move_to_end(session_id)
        while len(self._owners) > self.limit:
            self._owners.popitem(last=False)

    def forget(self, session_id: str) -> None:
        """Drop a session that ended (deleted by its client, or expired in the SDK)."""
        self._owners.pop(session_id, None)

    def check(self, session_id: str, owner: Owner) -> None:
        """Refuse a session id that is not ``owner``'s: NotFound, or Conflict for a project switch."""
        bound = self._owners.get(session_id)
        if bound is None or bound.user_id != owner.user_id:
            raise NotFound(
                "no such MCP session (it ended, or it is not yours): start a new one by "
                "sending initialize without the mcp-session-id header"
            )
        if bound.root != owner.root:
            raise Conflict(
                f"this MCP session works on project '{bound.project}', not "
                f"'{owner.project}': start a new session for the other project"
            )
        self._owners.move_to_end(session_id)

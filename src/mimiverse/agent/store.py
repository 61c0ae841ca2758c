"""Agent sessions, their messages, events and changesets, and project memory, in SQLite.

Tables live in the data dir's ``mimiverse.sqlite3`` (WAL) beside the completion feedback.
Rows hold JSON; a session can be replayed from its events and resumed from its messages.
A session row records who created it (``owner``) and which project it works on
(``project``, a reference such as ``alice/app``); databases from before those columns
get them on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mimiverse.agent.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    root TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'idle',
    state TEXT NOT NULL DEFAULT '{}',
    owner TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS agent_events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS agent_changesets (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_changesets_session ON agent_changesets (session_id, created_at);
CREATE TABLE IF NOT EXISTS agent_memory (
    root TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (root, key)
);
"""

_ADDED_COLUMNS = {
    "agent_sessions": {
        "owner": "TEXT NOT NULL DEFAULT ''",
        "project": "TEXT NOT NULL DEFAULT ''",
    }
}
"""Columns added since the first schema: ``ALTER TABLE … ADD COLUMN`` where missing."""
_SESSION_COLUMNS = "id, created_at, updated_at, root, title, status, owner, project"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class AgentStore:
    """SQLite persistence for the agent. Thread-safe; every write is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    @classmethod
    def memory(cls) -> AgentStore:
        """A store that lives in memory (tests, one-shot CLI runs)."""
        return cls(":memory:")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    # --- sessions -----------------------------------------------------------------------

    def create_session(
        self,
        session_id: str,
        root: str,
        title: str,
        state: dict[str, Any],
        *,
        owner: str = "",
        project: str = "",
    ) -> None:
        """Record a new session (``owner``: who made it; ``project``: its reference)."""
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT INTO agent_sessions "
                "(id, created_at, updated_at, root, title, state, owner, project) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, now, now, root, title, _dumps(state), owner, project),
            )

    def save_session(self, session_id: str, *, status: str, state: dict[str, Any]) -> None:
        """Store a session's status and state (messages, summary, usage)."""
        with self._lock:
            self._conn.execute(
                "UPDATE agent_sessions SET status = ?, state = ?, updated_at = ? WHERE id = ?",
                (status, _dumps(state), time.time(), session_id),
            )

    def session(self, session_id: str) -> dict[str, Any] | None:
        """One session's row (``state`` decoded), or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_SESSION_COLUMNS}, state FROM agent_sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
        return _session(row) if row else None

    def sessions(
        self, limit: int | None = 100, *, under: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Newest sessions first, without their state.

        ``under``: only sessions whose root starts with one of these folder prefixes.
        """
        query = f"SELECT {_SESSION_COLUMNS}, '{{}}' FROM agent_sessions"
        params: list[Any] = []
        if under is not None:
            if not under:
                return []
            query += " WHERE " + " OR ".join("substr(root, 1, ?) = ?" for _ in under)
            for prefix in under:
                params += [len(prefix), prefix]
        query += " ORDER BY updated_at DESC LIMIT ?"
        params.append(-1 if limit is None else limit)
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        return [_session(r) for r in rows]

    # --- events -------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Append one event."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO agent_events (session_id, seq, kind, at, data) "
                "VALUES (?, ?, ?, ?, ?)",
                (event.session_id, event.seq, event.kind, event.at, _dumps(event.data)),
            )

    def events(self, session_id: str, after: int = 0) -> list[Event]:
        """A session's stored events with ``seq > after``, in order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, at, data FROM agent_events "
                "WHERE session_id = ? AND seq > ? ORDER BY seq",
                (session_id, after),
            ).fetchall()
        return [
            Event(kind=kind, data=json.loads(data), session_id=session_id, seq=seq, at=at)
            for seq, kind, at, data in rows
        ]

    # --- changesets ---------------------------------------------------------------------

    def put_changeset(
        self, changeset_id: str, session_id: str, status: str, data: dict[str, Any]
    ) -> None:
        """Insert or replace one changeset (its full JSON form)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO agent_changesets (id, session_id, created_at, status, data) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "status = excluded.status, data = excluded.data",
                (changeset_id, session_id, time.time(), status, _dumps(data)),
            )

    def get_changeset(self, changeset_id: str) -> dict[str, Any] | None:
        """One changeset's JSON form, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT data FROM agent_changesets WHERE id = ?", (changeset_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def list_changesets(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Changesets, oldest first (of one session when given)."""
        query = "SELECT data FROM agent_changesets"
        params: tuple[Any, ...] = ()
        if session_id is not None:
            query += " WHERE session_id = ?"
            params = (session_id,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created_at", params).fetchall()
        return [json.loads(r[0]) for r in rows]

    # --- project memory -----------------------------------------------------------------

    def remember(self, root: str, key: str, value: Any) -> None:
        """Keep a fact about a project (detected test command, user preferences …)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO agent_memory (root, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (root, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (root, key, _dumps(value), time.time()),
            )

    def recall(self, root: str) -> dict[str, Any]:
        """Every fact kept about a project."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM agent_memory WHERE root = ? ORDER BY key", (root,)
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}


def _session(row: tuple[Any, ...]) -> dict[str, Any]:
    sid, created, updated, root, title, status, owner, project, state = row
    return {
        "id": sid,
        "created_at": created,
        "updated_at": updated,
        "root": root,
        "title": title,
        "status": status,
        "owner": owner,
        "project": project,
        "state": json.loads(state),
    }

"""The accounts database: one SQLite file (WAL) shared with the agent's tables."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

DB_FILE = "mimiverse.sqlite3"


class AccountDB:
    """A thread-safe connection; each ``transaction()`` is one atomic write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        schema = resources.files("mimiverse.accounts").joinpath("schema.sql").read_text()
        self._conn.executescript(schema)

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """All rows of a query, as dicts."""
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

    def row(self, sql: str, *args: Any) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        with self._lock:
            found = self._conn.execute(sql, args).fetchone()
        return dict(found) if found is not None else None

    def execute(self, sql: str, *args: Any) -> int:
        """One statement in its own transaction; the number of rows changed."""
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements, all or nothing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

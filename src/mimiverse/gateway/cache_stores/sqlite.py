"""Persistent cache store in one SQLite file (WAL mode).

Reads run inline on a read-only connection: a primary-key lookup takes microseconds and
WAL readers never wait for the writer. Writes, clears and counts run in a worker thread on
a second connection, so a slow commit or purge never stalls the event loop. Expired rows
are ignored on read and purged every ``purge_every`` writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mimiverse.gateway.cache_stores.base import KEY_PREFIX, CacheStore, task_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL,
    task TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cache_task ON cache (task);
CREATE INDEX IF NOT EXISTS cache_expires_at ON cache (expires_at);
"""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_OURS = f"substr(key, 1, {len(KEY_PREFIX)}) = '{KEY_PREFIX}'"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 2000")
    return conn


class SqliteStore(CacheStore):
    """Cache entries in table ``cache`` of ``path``; ``expires_at`` is ``clock()`` seconds."""

    name = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        purge_every: int = 500,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._purge_every = max(1, purge_every)
        self._writes = 0
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        try:
            self._writer.execute("PRAGMA journal_mode = WAL")
            self._writer.execute("PRAGMA synchronous = NORMAL")
            self._writer.executescript(_SCHEMA)
            self._reader = _connect(self.path)
        except BaseException:
            self._writer.close()
            raise
        self._reader.execute("PRAGMA query_only = 1")

    async def get(self, key: str) -> bytes | None:
        """The live value under ``key`` (inline: one indexed lookup)."""
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT value FROM cache WHERE key = ? AND {_LIVE}", (key, self._clock())
            ).fetchone()
        return None if row is None else bytes(row[0])

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Insert or replace ``key``; now and then purge expired rows."""
        await asyncio.to_thread(self._set, key, value, ttl_s)

    def _set(self, key: str, value: bytes, ttl_s: int) -> None:
        now = self._clock()
        expires_at = now + ttl_s if ttl_s > 0 else None
        with self._write_lock:
            self._writer.execute(
                "INSERT OR REPLACE INTO cache (key, value, expires_at, task) VALUES (?, ?, ?, ?)",
                (key, value, expires_at, task_of(key)),
            )
            self._writes += 1
            if self._writes % self._purge_every == 0:
                self._writer.execute("DELETE FROM cache WHERE expires_at <= ?", (now,))

    async def clear(self, task: str | None = None) -> int:
        """Delete the rows of ``task`` (every ``mimi:v1:`` row when ``None``)."""
        return await asyncio.to_thread(self._clear, task)

    def _clear(self, task: str | None) -> int:
        with self._write_lock:
            if task:
                cur = self._writer.execute("DELETE FROM cache WHERE task = ?", (task,))
            else:
                cur = self._writer.execute(f"DELETE FROM cache WHERE {_OURS}")
            return cur.rowcount

    async def count(self, task: str | None = None) -> int:
        """Live rows of ``task`` (of every task when ``None``)."""
        return await asyncio.to_thread(self._count, task)

    def _count(self, task: str | None) -> int:
        now = self._clock()
        with self._write_lock:
            if task:
                row = self._writer.execute(
                    f"SELECT COUNT(*) FROM cache WHERE task = ? AND {_LIVE}", (task, now)
                ).fetchone()
            else:
                row = self._writer.execute(
                    f"SELECT COUNT(*) FROM cache WHERE {_OURS} AND {_LIVE}", (now,)
                ).fetchone()
        return int(row[0])

    async def close(self) -> None:
        """Close both connections (idempotent)."""
        with self._read_lock:
            self._reader.close()
        with self._write_lock:
            self._writer.close()

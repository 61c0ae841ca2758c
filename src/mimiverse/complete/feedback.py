"""Suggestion events (shown, accepted, rejected, retained characters) and their stats.

One row per suggestion in table ``fim_suggestions`` of the project's SQLite store
(``<data_dir>/mimiverse.sqlite3``, WAL), opened the way the SQLite cache store opens its
file. Nothing leaves the machine. "Retained" is Copilot's accepted-and-retained measure:
some time after an accept, the editor reports how many of the accepted characters are
still in the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mimiverse.errors import BadRequest

Event = Literal["shown", "accepted", "rejected", "retained"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fim_suggestions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    chars INTEGER NOT NULL DEFAULT 0,
    lines INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    shown_at REAL,
    accepted_at REAL,
    rejected_at REAL,
    retained_chars INTEGER,
    retained_at REAL
);
CREATE INDEX IF NOT EXISTS fim_suggestions_model ON fim_suggestions (model, language);
"""
_COLUMN = {"shown": "shown_at", "accepted": "accepted_at", "rejected": "rejected_at"}


class UnknownSuggestion(BadRequest):
    """Feedback named a suggestion id this server never gave out."""

    status = 404
    code = "suggestion_not_found"


@dataclass(frozen=True)
class Record:
    """One suggestion as stored."""

    id: str
    model: str
    endpoint: str
    language: str
    source: str
    chars: int
    lines: int
    latency_ms: float


class FeedbackStore:
    """Suggestions and their events in SQLite; writes run on a worker thread."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA busy_timeout = 2000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    async def add(self, record: Record) -> None:
        """Store a new suggestion."""
        await asyncio.to_thread(self._add, record)

    def _add(self, r: Record) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO fim_suggestions (id, created_at, model, endpoint, "
                "language, source, chars, lines, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, self._clock(), r.model, r.endpoint, r.language, r.source, r.chars,
                 r.lines, r.latency_ms),
            )  # fmt: skip

    async def record(self, suggestion_id: str, event: Event, retained_chars: int | None) -> None:
        """Note an event; ``retained`` needs ``retained_chars``. Unknown ids are a 404."""
        if event == "retained" and retained_chars is None:
            raise BadRequest(
                "event 'retained' needs retained_chars: send how many accepted characters "
                "are still in the file"
            )
        found = await asyncio.to_thread(self._record, suggestion_id, event, retained_chars)
        if not found:
            raise UnknownSuggestion(
                f"no suggestion with id '{suggestion_id}': send the id from a completion "
                "answer of this server"
            )

    def _record(self, suggestion_id: str, event: Event, retained: int | None) -> bool:
        now = self._clock()
        with self._lock:
            row = self._conn.execute(
                "SELECT chars FROM fim_suggestions WHERE id = ?", (suggestion_id,)
            ).fetchone()
            if row is None:
                return False
            if event == "retained":
                kept = max(0, min(int(retained or 0), int(row[0])))
                self._conn.execute(
                    "UPDATE fim_suggestions SET retained_chars = ?, retained_at = ?, "
                    "accepted_at = COALESCE(accepted_at, ?) WHERE id = ?",
                    (kept, now, now, suggestion_id),
                )
            else:
                column = _COLUMN[event]
                extra = ", shown_at = COALESCE(shown_at, ?)" if event != "shown" else ""
                params: tuple[Any, ...] = (
                    (now, now, suggestion_id) if extra else (now, suggestion_id)
                )
                self._conn.execute(
                    f"UPDATE fim_suggestions SET {column} = COALESCE({column}, ?){extra} "
                    "WHERE id = ?",
                    params,
                )
        return True

    async def stats(self) -> list[dict[str, Any]]:
        """Counts and rates per model and language."""
        return await asyncio.to_thread(self._stats)

    def _stats(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                """
                SELECT model, language, COUNT(*),
                       COUNT(shown_at), COUNT(accepted_at), COUNT(rejected_at),
                       COALESCE(SUM(CASE WHEN accepted_at IS NOT NULL THEN chars END), 0),
                       COALESCE(SUM(retained_chars), 0),
                       COALESCE(SUM(CASE WHEN retained_at IS NOT NULL THEN chars END), 0),
                       AVG(latency_ms)
                FROM fim_suggestions GROUP BY model, language ORDER BY model, language
                """
            ).fetchall()
        out = []
        for model, language, total, shown, accepted, rejected, acc_chars, kept, judged, lat in rows:
            out.append(
                {
                    "model": model,
                    "language": language,
                    "suggestions": total,
                    "shown": shown,
                    "accepted": accepted,
                    "rejected": rejected,
                    "acceptance_rate": round(accepted / shown, 4) if shown else None,
                    "accepted_chars": acc_chars,
                    "retained_chars": kept,
                    "judged_chars": judged,
                    "retention_rate": round(kept / judged, 4) if judged else None,
                    "mean_latency_ms": round(lat, 2) if lat is not None else None,
                }
            )
        return out

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

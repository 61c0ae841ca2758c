"""The replica's durable part: per-author block logs, fork proofs and metadata in SQLite.

One file (``mesh.sqlite3``), WAL mode; every ``receive`` or ``write`` commits once, so a
crash leaves the logs at a batch boundary. Blocks are stored as their wire bytes, which
are what was hashed and signed: nothing is ever re-serialised.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mimiverse.mesh.errors import MeshBusy

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    hlc INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (author, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forks (
    author BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    proof BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites (
    id BLOB PRIMARY KEY,
    text TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

StoredBlock = tuple[bytes, int, bytes, int, bytes]  # author, seq, hash, hlc, data


class MeshStore:
    """SQLite tables of one replica."""

    def __init__(self, path: Path | str) -> None:
        self._lock: int | None = None
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(Path(f"{path}.lock"))
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    # --- blocks ---------------------------------------------------------------------

    def append(self, rows: Iterable[StoredBlock]) -> None:
        self.db.executemany(
            "INSERT INTO blocks (author, seq, hash, hlc, data) VALUES (?, ?, ?, ?, ?)", rows
        )

    def truncate(self, author: bytes, size: int) -> None:
        """Drop the author's blocks after seq ``size``."""
        self.db.execute("DELETE FROM blocks WHERE author = ? AND seq > ?", (author, size))

    def block(self, author: bytes, seq: int) -> bytes:
        row = self.db.execute(
            "SELECT data FROM blocks WHERE author = ? AND seq = ?", (author, seq)
        ).fetchone()
        if row is None:
            raise KeyError((author.hex(), seq))
        return bytes(row[0])

    def blocks(self, author: bytes, first: int, last: int) -> list[bytes]:
        """Wire bytes of the author's blocks first..last (inclusive)."""
        rows = self.db.execute(
            "SELECT data FROM blocks WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (author, first, last),
        )
        return [bytes(r[0]) for r in rows]

    def index(self) -> Iterator[tuple[bytes, int, bytes, int]]:
        """(author, seq, hash, hlc) of every block, by author then seq."""
        rows = self.db.execute("SELECT author, seq, hash, hlc FROM blocks ORDER BY author, seq")
        for author, seq, digest, hlc in rows:
            yield bytes(author), seq, bytes(digest), hlc

    def all_blocks(self, author: bytes) -> Iterator[bytes]:
        rows = self.db.execute("SELECT data FROM blocks WHERE author = ? ORDER BY seq", (author,))
        for (data,) in rows:
            yield bytes(data)

    # --- fork proofs, metadata, invites -------------------------------------------------

    def put_fork(self, author: bytes, seq: int, proof: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO forks (author, seq, proof) VALUES (?, ?, ?)",
            (author, seq, proof),
        )

    def forks(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute("SELECT proof FROM forks ORDER BY author")]

    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def put_invite(self, invite_id: bytes, text: str) -> None:
        self.db.execute("INSERT INTO invites (id, text) VALUES (?, ?)", (invite_id, text))

    def open_invites(self) -> list[tuple[bytes, str]]:
        rows = self.db.execute("SELECT id, text FROM invites WHERE used = 0")
        return [(bytes(i), t) for i, t in rows]

    def use_invite(self, invite_id: bytes) -> None:
        self.db.execute("UPDATE invites SET used = 1 WHERE id = ?", (invite_id,))


def _lock(path: Path) -> int:
    """Hold ``path`` locked while this store is open: one process per replica.

    Two processes appending to one device's log would each pick the same next sequence
    number and fork the device; the second opener is refused instead. The kernel drops
    the lock when the process dies, so a killed node never leaves a stale lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MeshBusy(path.parent) from None
    return fd

"""The embedded index store: one SQLite file (WAL), FTS5 with BM25 for lexical search.

Chunk text goes into FTS5 as code-aware token strings (``index.tokens``) under the
``porter`` stemmer, in four columns weighted symbol > path = context > body. Every change
to a file is one transaction, so a crash leaves either the old chunks or the new ones.

With ``lexical="tantivy"`` (the default) a tantivy index derived from FTS5's rows answers
lexical queries once it is committed and current (``tantivy_lexical``: ~20x faster at 100k
chunks); FTS5 answers while changes are pending, while it is rebuilt, and if it cannot be
opened. Each chunk-changing transaction bumps ``meta.lexical_generation``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from mimiverse.index import tokens
from mimiverse.index.model import Chunk, SourceFile
from mimiverse.index.stores.base import (
    Filters,
    Hit,
    IndexStore,
    StoredFile,
    embed_text,
    filter_sql,
)
from mimiverse.index.stores.tantivy_lexical import LexicalIndexUnavailable, Row, TantivyLexical

log = logging.getLogger("mimiverse.index.sqlite")

# bm25() column weights: symbol, path, context, body.
WEIGHTS = (10.0, 3.0, 2.0, 1.0)
SCHEMA_VERSION = "1"
_ESCAPE = " ESCAPE '\\'"  # SQLite's LIKE has no default escape character


class SqliteIndexStore(IndexStore):
    """SQLite implementation of ``IndexStore``."""

    name = "sqlite"

    def __init__(self, path: Path, *, lexical: str = "tantivy") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        schema = resources.files("mimiverse.index.stores").joinpath("sqlite.sql").read_text()
        with self._write_lock, self._write:
            self._write.executescript(schema)
            self._write.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
            self._write.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('lexical_generation', '0')"
            )
        self._generation = int(self.get_meta("lexical_generation") or 0)
        self._fast: TantivyLexical | None = None
        self._fast_pending = False
        self._fast_through = -1
        """The generation tantivy reflects once its pending changes are committed."""
        if lexical == "tantivy":
            self._open_fast()

    def _open_fast(self) -> None:
        try:
            self._fast = TantivyLexical(self.path.parent / "lexical")
            self._fast_through = self._fast.generation
        except LexicalIndexUnavailable as exc:
            log.warning("lexical search uses FTS5 only: %s", exc)

    @property
    def fast_lexical_ready(self) -> bool:
        """Whether tantivy answers lexical queries now (committed and current)."""
        fast = self._fast
        return fast is not None and not self._fast_pending and fast.generation == self._generation

    def _bump(self, con: sqlite3.Connection) -> int:
        """Inside a write transaction: the next lexical generation."""
        con.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'lexical_generation'"
        )
        row = con.execute("SELECT value FROM meta WHERE key = 'lexical_generation'").fetchone()
        return int(row[0])

    def _mirror(self, generation: int, removed: Sequence[int], added: Sequence[Row]) -> None:
        """After a commit: the same change in the tantivy index (or mark it for a rebuild)."""
        fast = self._fast
        follows = self._fast_through == self._generation
        self._generation = generation
        if fast is None or not follows:
            return  # already behind: flush() rebuilds it
        try:
            fast.apply(removed, added)
            self._fast_pending = True
            self._fast_through = generation
        except Exception as exc:
            log.warning("tantivy update failed, it will be rebuilt: %s", exc)
            self._fast_behind(fast)

    def _fast_behind(self, fast: TantivyLexical) -> None:
        """Drop tantivy's pending changes; flush() rebuilds it, FTS5 answers until then."""
        fast.rollback()
        self._fast_pending = False
        self._fast_through = -1

    def flush(self) -> None:
        with self._write_lock:
            fast = self._fast
            if fast is None:
                return
            try:
                if self._fast_through != self._generation:
                    self._rebuild_fast(fast)
                elif self._fast_pending:
                    fast.commit(self._generation)
                self._fast_pending = False
                self._fast_through = self._generation
            except Exception as exc:
                log.warning("tantivy unavailable, FTS5 answers lexical queries: %s", exc)
                self._fast_behind(fast)

    def _rebuild_fast(self, fast: TantivyLexical) -> None:
        began = time.perf_counter()
        rows = self._write.execute("SELECT rowid, symbol, path, context, body FROM chunks_fts")
        count = fast.rebuild(rows, self._generation)
        log.info("rebuilt the tantivy lexical index: %d chunks in %.1fs", count,
                 time.perf_counter() - began)  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    # --- files and chunks ---------------------------------------------------------------

    def files(self) -> dict[str, StoredFile]:
        with self._read_lock:
            rows = self._read.execute(
                "SELECT path, file_hash, size, mtime_ns FROM files"
            ).fetchall()
        return {r[0]: StoredFile(*r) for r in rows}

    def replace_file(self, file: SourceFile, file_hash: str, chunks: Sequence[Chunk]) -> list[int]:
        with self._write_lock:
            con = self._write
            con.execute("BEGIN IMMEDIATE")
            try:
                removed = self._drop(con, [file.path])
                con.execute(
                    "INSERT INTO files(path, language, size, mtime_ns, file_hash) VALUES (?,?,?,?,?)",
                    (file.path, file.language, file.size, file.mtime_ns, file_hash),
                )
                added: list[Row] = []
                for c in chunks:
                    cur = con.execute(
                        "INSERT INTO chunks(path, start_line, end_line, language, kind, symbol,"
                        " content, context, content_hash) VALUES (?,?,?,?,?,?,?,?,?)",
                        (c.path, c.start_line, c.end_line, c.language, c.kind, c.symbol,
                         c.content, c.context, c.content_hash),
                    )  # fmt: skip
                    assert cur.lastrowid is not None
                    row: Row = (cur.lastrowid, tokens.document(c.symbol), tokens.document(c.path),
                                tokens.document(c.context), tokens.document(c.content))  # fmt: skip
                    con.execute(
                        "INSERT INTO chunks_fts(rowid, symbol, path, context, body)"
                        " VALUES (?,?,?,?,?)",
                        row,
                    )
                    added.append(row)
                generation = self._bump(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._mirror(generation, removed, added)
        return removed

    def file_languages(self) -> dict[str, str]:
        with self._read_lock:
            rows = self._read.execute("SELECT path, language FROM files").fetchall()
        return {r[0]: r[1] for r in rows}

    def touch_file(self, file: SourceFile) -> None:
        with self._write_lock:
            self._write.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                (file.size, file.mtime_ns, file.path),
            )

    def delete_files(self, paths: Sequence[str]) -> list[int]:
        with self._write_lock:
            con = self._write
            con.execute("BEGIN IMMEDIATE")
            try:
                removed = self._drop(con, paths)
                generation = self._bump(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._mirror(generation, removed, [])
        return removed

    @staticmethod
    def _drop(con: sqlite3.Connection, paths: Sequence[str]) -> list[int]:
        removed: list[int] = []
        for path in paths:
            ids = [r[0] for r in con.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
            if ids:
                con.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
                con.execute("DELETE FROM chunks WHERE path = ?", (path,))
            con.execute("DELETE FROM files WHERE path = ?", (path,))
            removed.extend(ids)
        return removed

    # --- search -------------------------------------------------------------------------

    def lexical(self, terms: Sequence[str], limit: int, filters: Filters) -> list[Hit]:
        if not terms:
            return []
        fast = self._fast
        if fast is not None and self.fast_lexical_ready:
            hits = self._lexical_fast(fast, terms, limit, filters)
            if hits is not None:
                return hits
        return self._lexical_fts(terms, limit, filters)

    def _lexical_fast(
        self, fast: TantivyLexical, terms: Sequence[str], limit: int, filters: Filters
    ) -> list[Hit] | None:
        """Tantivy's best ids, filtered here; None when a selective filter leaves too few
        (FTS5 then ranks every match that passes the filter)."""
        filtered = bool(filters.language or filters.kind or filters.path_glob)
        found = fast.search(terms, limit * 20 if filtered else limit)
        rows = self.chunks([i for i, _ in found])
        hits: list[Hit] = []
        for chunk_id, score in found:
            hit = rows.get(chunk_id)
            if hit is not None and (
                not filtered or filters.allows(hit.path, hit.language, hit.kind)
            ):
                hit.score = score
                hits.append(hit)
        if filtered and len(hits) < limit and len(found) == limit * 20:
            return None
        return hits[:limit]

    def _lexical_fts(self, terms: Sequence[str], limit: int, filters: Filters) -> list[Hit]:
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        filtered = bool(filters.language or filters.kind or filters.path_glob)
        # Rank inside FTS first and join only the best rows (joining every match before
        # sorting cost ~3x at 15k chunks); filtered searches rank a wider window.
        window = limit * (20 if filtered else 1)
        sql = (
            "SELECT c.id, c.path, c.start_line, c.end_line, c.language, c.kind, c.symbol,"
            " c.content, r.score FROM (SELECT rowid, bm25(chunks_fts, ?, ?, ?, ?) AS score"
            " FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?) r"
            " JOIN chunks c ON c.id = r.rowid WHERE 1=1"
        )
        where, extra = filter_sql(filters, "?", escape=_ESCAPE)
        sql += where + " ORDER BY r.score LIMIT ?"
        params: list[object] = [*WEIGHTS, match, window, *extra]
        params.append(limit * 4 if filters.path_glob else limit)
        with self._read_lock:
            rows = self._read.execute(sql, params).fetchall()
            if filtered and len(rows) < limit:
                params[len(WEIGHTS) + 1] = -1  # a selective filter: rank every match
                rows = self._read.execute(sql, params).fetchall()
        hits = [
            Hit(cid, path, start, end, language, kind, symbol, content, score=-float(score))
            for cid, path, start, end, language, kind, symbol, content, score in rows
        ]
        if filters.path_glob:
            hits = [h for h in hits if filters.allows(h.path, h.language, h.kind)]
        return hits[:limit]

    def chunks(self, ids: Sequence[int]) -> dict[int, Hit]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = (
            "SELECT id, path, start_line, end_line, language, kind, symbol, content"
            f" FROM chunks WHERE id IN ({marks})"
        )
        with self._read_lock:
            rows = self._read.execute(sql, list(ids)).fetchall()
        return {row[0]: Hit(*row) for row in rows}

    # --- vectors ------------------------------------------------------------------------

    def missing_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        sql = (
            "SELECT c.content_hash, c.path, c.context, c.content, c.start_line, c.end_line,"
            " c.language, c.kind, c.symbol FROM chunks c"
            " WHERE NOT EXISTS (SELECT 1 FROM vectors v"
            "   WHERE v.content_hash = c.content_hash AND v.model = ?)"
            " GROUP BY c.content_hash LIMIT ?"
        )
        with self._read_lock:
            rows = self._read.execute(sql, (model, limit)).fetchall()
        out = []
        for h, path, context, content, start, end, language, kind, symbol in rows:
            chunk = Chunk(path, start, end, language, kind, symbol, content, context, h)
            out.append((h, embed_text(chunk)))
        return out

    def put_vectors(self, model: str, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        rows = [(h, model, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items]
        with self._write_lock:
            self._write.execute("BEGIN IMMEDIATE")
            try:
                self._write.executemany(
                    "INSERT OR REPLACE INTO vectors(content_hash, model, vector) VALUES (?,?,?)",
                    rows,
                )
                self._write.execute("COMMIT")
            except BaseException:
                self._write.execute("ROLLBACK")
                raise

    def chunk_vectors(
        self, model: str, ids: Sequence[int] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        sql = (
            "SELECT c.id, v.vector FROM chunks c JOIN vectors v"
            " ON v.content_hash = c.content_hash AND v.model = ?"
        )
        params: list[object] = [model]
        if ids is not None:
            if not ids:
                return iter(())
            sql += f" WHERE c.id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        with self._read_lock:
            rows = self._read.execute(sql, params).fetchall()
        return iter(rows)

    def chunk_vectors_by_hash(
        self, model: str, hashes: Sequence[str]
    ) -> Iterator[tuple[int, bytes]]:
        if not hashes:
            return iter(())
        sql = (
            "SELECT c.id, v.vector FROM chunks c JOIN vectors v"
            " ON v.content_hash = c.content_hash AND v.model = ?"
            f" WHERE c.content_hash IN ({','.join('?' * len(hashes))})"
        )
        with self._read_lock:
            rows = self._read.execute(sql, [model, *hashes]).fetchall()
        return iter(rows)

    def filtered_ids(self, filters: Filters) -> list[int]:
        where, params = filter_sql(filters, "?", escape=_ESCAPE)
        sql = "SELECT c.id, c.path, c.language, c.kind FROM chunks c WHERE 1=1" + where
        with self._read_lock:
            rows = self._read.execute(sql, params).fetchall()
        return [r[0] for r in rows if filters.allows(r[1], r[2], r[3])]

    def vector_chunk_ids(self, model: str) -> list[int]:
        sql = (
            "SELECT c.id FROM chunks c JOIN vectors v"
            " ON v.content_hash = c.content_hash AND v.model = ?"
        )
        with self._read_lock:
            return [r[0] for r in self._read.execute(sql, (model,))]

    def counts(self, model: str) -> dict[str, int]:
        with self._read_lock:
            files = self._read.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = self._read.execute("SELECT count(*) FROM chunks").fetchone()[0]
            embedded = self._read.execute(
                "SELECT count(*) FROM chunks c JOIN vectors v"
                " ON v.content_hash = c.content_hash AND v.model = ?",
                (model,),
            ).fetchone()[0]
        return {"files": files, "chunks": chunks, "embedded": embedded}

    def get_meta(self, key: str) -> str | None:
        with self._read_lock:
            row = self._read.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self._write.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
            )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.flush()
        with self._write_lock, self._read_lock:
            if self._fast is not None:
                self._fast.close()
            self._write.close()
            self._read.close()

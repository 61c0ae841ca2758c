"""The PostgreSQL index store: tsvector lexical search and pgvector HNSW vector search.

Many projects share one database; every row carries its project's id and every query
filters by it. Chunk text is indexed as the same code-aware token strings as the SQLite
store (``index.tokens``) under ``mimi_code`` (english stemming, no stopwords), weighted
symbol A > path B > context C > body D. Vectors of one embedding model live in their own table with a fixed
``vector(<dim>)`` column and an HNSW (cosine) index, created on the model's first
``put_vectors``. Every change to a file is one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

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

# ts_rank weights, in PostgreSQL's order D, C, B, A: body, context, path, symbol. ts_rank
# scores each matched term by its best-weighted occurrence (no IDF), so a 10:1 symbol:body
# ratio as in SQLite's BM25 lets one symbol hit outrank a chunk matching every query word in
# its body. On docstring-line -> function and symbol-name -> definition retrieval over three
# Python code bases, these weights match SQLite's MRR; {0.1,0.2,0.3,1.0} lost ~0.3 on the first.
WEIGHTS = "{0.5,0.6,0.7,1.0}"
SCHEMA_VERSION = "1"
HNSW_MAX_DIM = 2000
"""pgvector's HNSW limit for ``vector``; wider models are searched exactly (no index)."""
SCHEMA_LOCK = 0x6D696D69
"""Advisory lock key that serializes schema changes between processes."""

# Text search config (postgres.sql): english stemming, no stopwords in documents.
_LEXEMES = (
    "setweight(to_tsvector('mimi_code', %s), 'A') || setweight(to_tsvector('mimi_code', %s), 'B')"
    " || setweight(to_tsvector('mimi_code', %s), 'C') || setweight(to_tsvector('mimi_code', %s), 'D')"
)
_HIT = "c.id, c.path, c.start_line, c.end_line, c.language, c.kind, c.symbol, c.content"


def tsquery(terms: Iterable[str]) -> str:
    """``to_tsquery`` input that ORs ``terms``, each quoted so no term is read as syntax."""
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms if t.strip())
    return " | ".join(quoted)


def vector_text(vector: Sequence[float]) -> str:
    """A vector in pgvector's text form, as float32 values."""
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: replace it."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _hit(row: Sequence[Any], score: float = 0.0) -> Hit:
    """A ``Hit`` from a row that starts with the ``_HIT`` columns."""
    i, path, start, end, language, kind, symbol, content = row[:8]
    return Hit(int(i), path, start, end, language, kind, symbol, content, score=score)


def _filter_sql(filters: Filters) -> tuple[str, list[Any]]:
    """SQL conditions on ``c`` (chunks) for ``filters``; the glob is only pre-filtered."""
    return filter_sql(filters, "%s")


def _globbed(
    fetch: Callable[[int], list[tuple[Any, ...]]], limit: int, filters: Filters
) -> list[tuple[Any, ...]]:
    """Rows of ``fetch(n)`` (id, path, …) whose path passes the glob, up to ``limit``.

    Over-fetches when a glob must be checked in Python after its LIKE prefix, and fetches
    more while too few rows pass and more exist.
    """
    if not filters.path_glob:
        return fetch(limit)
    n = max(limit * 4, 16)
    while True:
        rows = fetch(n)
        kept = [r for r in rows if filters.allows(r[1], filters.language, filters.kind)]
        if len(kept) >= limit or len(rows) < n:
            return kept[:limit]
        n *= 4


class PostgresIndexStore(IndexStore):
    """PostgreSQL + pgvector implementation of ``IndexStore`` for one project."""

    name = "postgres"

    def __init__(self, url: str, *, project: str, max_connections: int = 4) -> None:
        self.url = url
        self.project_name = project
        schema = resources.files("mimiverse.index.stores").joinpath("postgres.sql").read_text()
        # A direct connection first: a bad URL fails here at once, not as a pool timeout.
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(schema)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO mimi_projects(name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                    (project,),
                )
                row = conn.execute(
                    "SELECT id FROM mimi_projects WHERE name = %s", (project,)
                ).fetchone()
                assert row is not None
                self.project_id: int = row[0]
                conn.execute(
                    "INSERT INTO mimi_meta(project, key, value) VALUES (%s, 'schema', %s)"
                    " ON CONFLICT DO NOTHING",
                    (self.project_id, SCHEMA_VERSION),
                )
        self._models: dict[str, tuple[sql.Identifier, int]] = {}
        self._models_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            name="mimiverse-index",
            open=True,
        )

    def _query(
        self, query: Any, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    # --- files and chunks ---------------------------------------------------------------

    def files(self) -> dict[str, StoredFile]:
        rows = self._query(
            "SELECT path, file_hash, size, mtime_ns FROM mimi_files WHERE project = %s",
            (self.project_id,),
        )
        return {r[0]: StoredFile(*r) for r in rows}

    def file_languages(self) -> dict[str, str]:
        rows = self._query(
            "SELECT path, language FROM mimi_files WHERE project = %s", (self.project_id,)
        )
        return {r[0]: r[1] for r in rows}

    def chunks_of(self, path: str) -> list[Hit]:
        rows = self._query(
            f"SELECT {_HIT} FROM mimi_chunks c WHERE c.project = %s AND c.path = %s"
            " ORDER BY c.start_line, c.id",
            (self.project_id, path),
        )
        return [_hit(row) for row in rows]

    def replace_file(self, file: SourceFile, file_hash: str, chunks: Sequence[Chunk]) -> list[int]:
        p = self.project_id
        with self._pool.connection() as conn, conn.transaction():
            removed = self._drop(conn, [file.path])
            conn.execute(
                "INSERT INTO mimi_files(project, path, language, size, mtime_ns, file_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (p, file.path, file.language, file.size, file.mtime_ns, file_hash),
            )
            rows = (
                (p, c.path, c.start_line, c.end_line, c.language, c.kind, _text(c.symbol),
                 _text(c.content), _text(c.context), c.content_hash,
                 tokens.document(c.symbol), tokens.document(c.path),
                 tokens.document(c.context), tokens.document(c.content))
                for c in chunks
            )  # fmt: skip
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO mimi_chunks(project, path, start_line, end_line, language, kind,"
                    " symbol, content, context, content_hash, lexemes)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {_LEXEMES})",
                    rows,
                )
        return removed

    def touch_file(self, file: SourceFile) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE mimi_files SET size = %s, mtime_ns = %s WHERE project = %s AND path = %s",
                (file.size, file.mtime_ns, self.project_id, file.path),
            )

    def delete_files(self, paths: Sequence[str]) -> list[int]:
        with self._pool.connection() as conn, conn.transaction():
            return self._drop(conn, paths)

    def _drop(self, conn: psycopg.Connection[Any], paths: Sequence[str]) -> list[int]:
        """Delete ``paths`` and their chunks inside the caller's transaction."""
        # Writers of one project take turns (the row lock is held until commit).
        conn.execute(
            "SELECT 1 FROM mimi_projects WHERE id = %s FOR NO KEY UPDATE", (self.project_id,)
        )
        if not paths:
            return []
        paths = list(paths)
        rows = conn.execute(
            "DELETE FROM mimi_chunks WHERE project = %s AND path = ANY(%s) RETURNING id",
            (self.project_id, paths),
        ).fetchall()
        conn.execute(
            "DELETE FROM mimi_files WHERE project = %s AND path = ANY(%s)",
            (self.project_id, paths),
        )
        return sorted(r[0] for r in rows)

    # --- search -------------------------------------------------------------------------

    def lexical(self, terms: Sequence[str], limit: int, filters: Filters) -> list[Hit]:
        query = tsquery(terms)
        if not query or limit <= 0:
            return []
        where, params = _filter_sql(filters)
        sql_text = (
            f"SELECT {_HIT}, ts_rank(%s, c.lexemes, q) AS score"
            " FROM mimi_chunks c, to_tsquery('mimi_code', %s) q"
            f" WHERE c.project = %s AND c.lexemes @@ q{where}"
            " ORDER BY score DESC, c.id LIMIT %s"
        )

        def fetch(n: int) -> list[tuple[Any, ...]]:
            return self._query(sql_text, [WEIGHTS, query, self.project_id, *params, n])

        rows = _globbed(fetch, limit, filters)
        return [_hit(row, float(row[8])) for row in rows]

    def chunks(self, ids: Sequence[int]) -> dict[int, Hit]:
        if not ids:
            return {}
        rows = self._query(
            f"SELECT {_HIT} FROM mimi_chunks c WHERE c.project = %s AND c.id = ANY(%s)",
            (self.project_id, list(ids)),
        )
        return {row[0]: _hit(row) for row in rows}

    def filtered_ids(self, filters: Filters) -> list[int]:
        where, params = _filter_sql(filters)
        rows = self._query(
            "SELECT c.id, c.path, c.language, c.kind FROM mimi_chunks c"
            f" WHERE c.project = %s{where} ORDER BY c.id",
            [self.project_id, *params],
        )
        return [r[0] for r in rows if filters.allows(r[1], r[2], r[3])]

    # --- vectors ------------------------------------------------------------------------

    def _model(self, model: str) -> tuple[sql.Identifier, int] | None:
        """The vectors table of ``model`` and its dimension, or None before its first vector."""
        with self._models_lock:
            found = self._models.get(model)
        if found is not None:
            return found
        rows = self._query("SELECT id, dim FROM mimi_vector_models WHERE model = %s", (model,))
        if not rows:
            return None
        found = (sql.Identifier(f"mimi_vectors_{rows[0][0]}"), int(rows[0][1]))
        with self._models_lock:
            self._models[model] = found
        return found

    def _create_model(self, model: str, dim: int) -> tuple[sql.Identifier, int]:
        """Register ``model`` with ``dim`` and create its vectors table and HNSW index."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(
                "INSERT INTO mimi_vector_models(model, dim) VALUES (%s, %s)"
                " ON CONFLICT (model) DO NOTHING",
                (model, dim),
            )
            row = conn.execute(
                "SELECT id, dim FROM mimi_vector_models WHERE model = %s", (model,)
            ).fetchone()
            assert row is not None
            model_id, dim = int(row[0]), int(row[1])
            table = sql.Identifier(f"mimi_vectors_{model_id}")
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " project integer NOT NULL REFERENCES mimi_projects(id) ON DELETE CASCADE,"
                    " content_hash text NOT NULL,"
                    " embedding vector({}) NOT NULL,"
                    " PRIMARY KEY (project, content_hash))"
                ).format(table, sql.SQL(str(dim)))
            )
            if dim <= HNSW_MAX_DIM:
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops)"
                    ).format(sql.Identifier(f"mimi_vectors_{model_id}_hnsw"), table)
                )
        with self._models_lock:
            self._models[model] = (table, dim)
        return table, dim

    def missing_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        found = self._model(model)
        query = sql.SQL(
            "SELECT DISTINCT ON (c.content_hash) c.content_hash, c.path, c.context, c.content,"
            " c.start_line, c.end_line, c.language, c.kind, c.symbol FROM mimi_chunks c"
            " WHERE c.project = %s{} ORDER BY c.content_hash LIMIT %s"
        ).format(
            sql.SQL(
                " AND NOT EXISTS (SELECT 1 FROM {} v"
                " WHERE v.project = c.project AND v.content_hash = c.content_hash)"
            ).format(found[0])
            if found
            else sql.SQL("")
        )
        rows = self._query(query, (self.project_id, limit))
        out = []
        for h, path, context, content, start, end, language, kind, symbol in rows:
            chunk = Chunk(path, start, end, language, kind, symbol, content, context, h)
            out.append((h, embed_text(chunk)))
        return out

    def put_vectors(self, model: str, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        if not items:
            return
        dims = {len(v) for _, v in items}
        if len(dims) != 1:
            raise ValueError(f"vectors for {model!r} differ in dimension: {sorted(dims)}")
        (dim,) = dims
        table, want = self._model(model) or self._create_model(model, dim)
        if dim != want:
            raise ValueError(f"model {model!r} has {want}-dimensional vectors, got {dim}")
        rows = [(self.project_id, h, vector_text(v)) for h, v in items]
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {}(project, content_hash, embedding) VALUES (%s, %s, %s::vector)"
                    " ON CONFLICT (project, content_hash) DO UPDATE SET embedding = EXCLUDED.embedding"
                ).format(table),
                rows,
            )

    def _chunk_vectors(
        self, model: str, where: str, params: Sequence[Any]
    ) -> list[tuple[int, bytes]]:
        found = self._model(model)
        if found is None:
            return []
        rows = self._query(
            sql.SQL(
                "SELECT c.id, v.embedding::real[] FROM mimi_chunks c JOIN {} v"
                " ON v.project = c.project AND v.content_hash = c.content_hash"
                " WHERE c.project = %s{} ORDER BY c.id"
            ).format(found[0], sql.SQL(where)),
            [self.project_id, *params],
        )
        return [(int(i), np.asarray(v, dtype=np.float32).tobytes()) for i, v in rows]

    def chunk_vectors(
        self, model: str, ids: Sequence[int] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        if ids is None:
            return iter(self._chunk_vectors(model, "", ()))
        if not ids:
            return iter(())
        return iter(self._chunk_vectors(model, " AND c.id = ANY(%s)", [list(ids)]))

    def chunk_vectors_by_hash(
        self, model: str, hashes: Sequence[str]
    ) -> Iterator[tuple[int, bytes]]:
        if not hashes:
            return iter(())
        return iter(self._chunk_vectors(model, " AND c.content_hash = ANY(%s)", [list(hashes)]))

    def vector_chunk_ids(self, model: str) -> list[int]:
        found = self._model(model)
        if found is None:
            return []
        rows = self._query(
            sql.SQL(
                "SELECT c.id FROM mimi_chunks c JOIN {} v"
                " ON v.project = c.project AND v.content_hash = c.content_hash"
                " WHERE c.project = %s ORDER BY c.id"
            ).format(found[0]),
            (self.project_id,),
        )
        return [int(r[0]) for r in rows]

    def vector_search(
        self, model: str, vector: Sequence[float], k: int, filters: Filters
    ) -> list[tuple[int, float]] | None:
        found = self._model(model)
        if found is None or k <= 0:
            return []
        table, dim = found
        if len(vector) != dim:
            raise ValueError(f"model {model!r} has {dim}-dimensional vectors, got {len(vector)}")
        where, params = _filter_sql(filters)
        query = sql.SQL(
            "SELECT c.id, c.path, v.embedding <=> %s::vector AS distance"
            " FROM {} v JOIN mimi_chunks c"
            " ON c.project = v.project AND c.content_hash = v.content_hash"
            # ORDER BY the distance alone, so the planner can walk the HNSW index.
            " WHERE v.project = %s{} ORDER BY distance LIMIT %s"
        ).format(table, sql.SQL(where))
        text = vector_text(vector)

        def fetch(n: int) -> list[tuple[Any, ...]]:
            with self._pool.connection() as conn, conn.transaction():
                # Iterative scans keep walking the HNSW graph until enough rows pass the
                # project and filter conditions (pgvector >= 0.8; a no-op setting before).
                conn.execute(
                    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true),"
                    " set_config('hnsw.ef_search', %s, true)",
                    (str(min(max(n, 40), 1000)),),
                )
                return conn.execute(query, [text, self.project_id, *params, n]).fetchall()

        rows = _globbed(fetch, k, filters)
        return [(int(r[0]), 1.0 - float(r[2])) for r in rows]

    @property
    def owns_vectors(self) -> bool:
        return True

    # --- status and meta ----------------------------------------------------------------

    def counts(self, model: str) -> dict[str, int]:
        found = self._model(model)
        embedded = (
            sql.SQL(
                "(SELECT count(*) FROM mimi_chunks c JOIN {} v"
                " ON v.project = c.project AND v.content_hash = c.content_hash"
                " WHERE c.project = %(p)s)"
            ).format(found[0])
            if found
            else sql.SQL("0")
        )
        query = sql.SQL(
            "SELECT (SELECT count(*) FROM mimi_files WHERE project = %(p)s),"
            " (SELECT count(*) FROM mimi_chunks WHERE project = %(p)s), {}"
        ).format(embedded)
        files, chunks, vectors = self._query(query, {"p": self.project_id})[0]
        return {"files": int(files), "chunks": int(chunks), "embedded": int(vectors)}

    def get_meta(self, key: str) -> str | None:
        rows = self._query(
            "SELECT value FROM mimi_meta WHERE project = %s AND key = %s", (self.project_id, key)
        )
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO mimi_meta(project, key, value) VALUES (%s, %s, %s)"
                " ON CONFLICT (project, key) DO UPDATE SET value = EXCLUDED.value",
                (self.project_id, key, _text(value)),
            )

    def close(self) -> None:
        self._pool.close()

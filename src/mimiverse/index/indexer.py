"""The indexer: scan → chunk → store (lexical at once) → embed in the background → search.

Files are reconciled by content hash, so a restart re-reads only changed files and never
re-embeds an unchanged chunk (vectors are keyed by chunk content hash). Each file is
replaced in one store transaction; the ANN index is derived and rebuilt when it does not
match the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimiverse.errors import BadRequest, MimiError
from mimiverse.gateway.base import RerankRequest
from mimiverse.index import tokens
from mimiverse.index.chunk import VERSION as CHUNKER_VERSION
from mimiverse.index.chunk import chunk_file
from mimiverse.index.hybrid import blend, cap_per_file
from mimiverse.index.model import SourceFile
from mimiverse.index.scan import read_text, scan
from mimiverse.index.stores.base import Filters, Hit, IndexStore
from mimiverse.index.symbols import SymbolMap
from mimiverse.index.vectors import VectorIndex

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway

log = logging.getLogger("mimiverse.index")

COUNTS_TTL_S = 5.0
"""How long ``status()`` may show counts this indexer did not change itself."""
RERANK_DOC_CHARS = 4000
"""Each candidate sent to the rerank model: its path and the start of its code."""
Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback for progress bars."""


@dataclass
class SyncReport:
    """What one reconciliation did."""

    scanned: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SearchResult:
    """Hits plus how complete the index was when they were found."""

    hits: list[Hit]
    mode: str
    took_ms: float
    status: dict[str, Any]
    reranked: bool = False
    """Whether the gateway's ``rerank`` task ordered the best candidates."""


def index_format() -> str:
    """The chunker's and the tokenizer's versions: an index made by others is re-cut."""
    return f"chunks-{CHUNKER_VERSION}/tokens-{tokens.VERSION}"


def file_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(data).hexdigest()


class Indexer:
    """One project's index."""

    def __init__(
        self,
        root: Path,
        store: IndexStore,
        vectors_dir: Path,
        *,
        gateway: Gateway | None = None,
        max_file_bytes: int = 1_000_000,
        embed_batch: int = 64,
        rerank_top: int = 20,
    ) -> None:
        self.root = root.resolve()
        self.store = store
        self.gateway = gateway
        self.vectors_dir = vectors_dir
        self.max_file_bytes = max_file_bytes
        self.embed_batch = embed_batch
        self.rerank_top = rerank_top
        self._counts_cache: tuple[str, float, dict[str, int]] | None = None
        self._sync_lock = threading.Lock()
        self._vectors: VectorIndex | None = None
        self._vectors_ready = False
        self._embed_error = ""
        self.last_sync: SyncReport | None = None
        self._symbols: SymbolMap | None = None
        self._symbols_lock = threading.Lock()
        self.skipped: list[dict[str, str]] = []

    # --- lexical side (synchronous; run in a worker thread) -----------------------------

    def sync(self, progress: Progress | None = None) -> SyncReport:
        """Reconcile the store with the files on disk."""
        with self._sync_lock:
            began = time.perf_counter()
            result = scan(self.root, max_bytes=self.max_file_bytes)
            report = SyncReport(scanned=len(result.files))
            report.skipped = [{"path": s.path, "reason": s.reason} for s in result.skipped]
            known = self.store.files()
            # Chunks cut or tokenised by an older version: every file is cut again (the
            # vectors of chunks that come out the same are kept: they are keyed by hash).
            current = index_format()
            stale = self.store.get_meta("format") != current
            seen: set[str] = set()
            total = len(result.files)
            for n, file in enumerate(result.files, start=1):
                seen.add(file.path)
                stored = known.get(file.path)
                if (
                    not stale
                    and stored
                    and stored.size == file.size
                    and stored.mtime_ns == file.mtime_ns
                ):
                    report.unchanged += 1
                else:
                    old = stored.file_hash if stored and not stale else None
                    added = self._index_file(file, old)
                    if added is None:
                        report.unchanged += 1
                    else:
                        report.changed += 1
                        report.chunks += added
                if progress and (n % 50 == 0 or n == total):
                    progress("chunk", n, total)
            gone = [p for p in known if p not in seen]
            if gone:
                self._drop_files(gone)
                report.deleted = len(gone)
            if stale:
                self.store.set_meta("format", current)
            self.store.flush()
            report.seconds = time.perf_counter() - began
            self.last_sync = report
            self.skipped = report.skipped
            return report

    def update_paths(self, paths: Sequence[Path]) -> int:
        """Re-index (or drop) specific files after a change on disk; returns files touched."""
        touched = 0
        with self._sync_lock:
            for path in paths:
                try:
                    rel = path.resolve().relative_to(self.root).as_posix()
                except ValueError:
                    continue
                full = self.root / rel
                if not full.is_file():
                    if rel in self.store.files():
                        self._drop_files([rel])
                        touched += 1
                    continue
                # One-file scan keeps ignore rules, size and binary checks identical to sync.
                accepted = {f.path: f for f in scan(self.root, max_bytes=self.max_file_bytes,
                                                    only=[rel]).files}  # fmt: skip
                file = accepted.get(rel)
                if file is None:
                    if rel in self.store.files():
                        self._drop_files([rel])
                        touched += 1
                    continue
                stored = self.store.files().get(rel)
                if self._index_file(file, stored.file_hash if stored else None) is not None:
                    touched += 1
            if touched:
                self.store.flush()
        return touched

    def _index_file(self, file: SourceFile, old_hash: str | None) -> int | None:
        """Chunk and store one file; None when its content did not change."""
        full = self.root / file.path
        try:
            data = full.read_bytes()
        except OSError as exc:
            log.warning("cannot read %s: %s", file.path, exc)
            return None
        digest = file_hash(data)
        if digest == old_hash:
            # Touched but not changed: refresh size/mtime without re-chunking.
            chunks = None
        else:
            text = read_text(full)
            chunks = chunk_file(file.path, text, file.language)
        if chunks is None:
            self.store.touch_file(file)
            return None
        removed = self.store.replace_file(file, digest, chunks)
        self._counts_cache = None
        self._forget(removed)
        if self._symbols is not None:
            self._symbols.update(file.path, text, file.language)
        return len(chunks)

    def _forget(self, chunk_ids: Sequence[int]) -> None:
        if self._vectors is not None and chunk_ids:
            self._vectors.remove(chunk_ids)

    def _drop_files(self, paths: Sequence[str]) -> None:
        self._forget(self.store.delete_files(paths))
        self._counts_cache = None
        if self._symbols is not None:
            for path in paths:
                self._symbols.remove(path)

    def symbol_map(self) -> SymbolMap:
        """Definitions and references of every indexed file (built on first use, then kept
        current by indexing)."""
        with self._symbols_lock:
            if self._symbols is None:
                symbols = SymbolMap()
                with self._sync_lock:
                    languages = self.store.file_languages()
                    for path, language in languages.items():
                        try:
                            symbols.update(path, read_text(self.root / path), language)
                        except OSError:
                            continue
                    self._symbols = symbols
            return self._symbols

    # --- vectors ------------------------------------------------------------------------

    @property
    def embed_model(self) -> str | None:
        """Model id that vectors are stored under (the gateway's embed route), if any."""
        if self.gateway is None:
            return None
        route = self.gateway.router.routes.get("embed") or []
        return route[0].backend.model if route else None

    def _vector_index(self, ndim: int) -> VectorIndex:
        if self._vectors is None:
            model = self.embed_model or "none"
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
            self._vectors = VectorIndex(self.vectors_dir / f"{safe}.usearch", ndim)
        return self._vectors

    def open_vectors(self) -> None:
        """Load the ANN file if it matches the store, else rebuild it from rows (blocking)."""
        model = self.embed_model
        if model is None or self.store.owns_vectors:
            self._vectors_ready = True
            return
        ids = self.store.vector_chunk_ids(model)
        if not ids:
            self._vectors_ready = True
            return
        first = next(self.store.chunk_vectors(model, ids[:1]))
        ndim = len(first[1]) // 4
        index = self._vector_index(ndim)
        from mimiverse.index.vectors import fingerprint

        if not index.load(fingerprint(ids)):
            began = time.perf_counter()
            index.rebuild(self.store.chunk_vectors(model))
            index.save()
            log.info("rebuilt %d vectors in %.1fs", len(index), time.perf_counter() - began)
        self._vectors_ready = True

    async def embed_pending(
        self, *, limit: int | None = None, progress: Progress | None = None
    ) -> int:
        """Embed chunks that have no vector yet, in batches; returns how many were embedded."""
        model = self.embed_model
        if model is None or self.gateway is None:
            return 0
        if not self._vectors_ready:
            await asyncio.to_thread(self.open_vectors)
        done = 0
        total = self.store.counts(model)["chunks"]
        while limit is None or done < limit:
            batch = await asyncio.to_thread(self.store.missing_vectors, model, self.embed_batch)
            if not batch:
                break
            try:
                vectors, _ = await self.gateway.embed([text for _, text in batch], kind="passage")
            except MimiError as exc:
                self._embed_error = exc.message
                raise
            self._embed_error = ""
            await asyncio.to_thread(self._store_vectors, model, batch, vectors)
            done += len(batch)
            if progress:
                progress("embed", self.store.counts(model)["embedded"], total)
        if done and self._vectors is not None:
            await asyncio.to_thread(self._vectors.save)
        return done

    def _store_vectors(
        self, model: str, batch: list[tuple[str, str]], vectors: list[list[float]]
    ) -> None:
        self.store.put_vectors(model, [(h, v) for (h, _), v in zip(batch, vectors, strict=True)])
        self._counts_cache = None
        if self.store.owns_vectors:
            return
        hashes = {h for h, _ in batch}
        rows = list(self.store.chunk_vectors_by_hash(model, sorted(hashes)))
        if rows:
            ndim = len(rows[0][1]) // 4
            matrix = np.frombuffer(b"".join(b for _, b in rows), dtype=np.float32).reshape(
                len(rows), ndim
            )
            self._vector_index(ndim).add([i for i, _ in rows], matrix)

    # --- search -------------------------------------------------------------------------

    async def search(
        self, query: str, *, limit: int = 10, mode: str = "hybrid", filters: Filters | None = None,
        per_file: int = 3, rerank: bool | None = None,
    ) -> SearchResult:  # fmt: skip
        """Hybrid (lexical + semantic, blended scores: ``hybrid.blend``), lexical or semantic."""
        began = time.perf_counter()
        filters = filters or Filters()
        fetch = max(limit * 5, 50)
        rankings: dict[str, list[Hit]] = {}
        # Both rankings at once: the store's query and the query's encoding each hold a core.
        lexical = semantic = None
        terms = tokens.query_terms(query)
        if mode in ("hybrid", "lexical"):
            lexical = asyncio.ensure_future(
                asyncio.to_thread(self.store.lexical, terms, fetch, filters)
            )
        query_vector: np.ndarray | None = None
        if mode in ("hybrid", "semantic"):
            try:
                found = await self._semantic(query, fetch, filters)
                if found is not None:
                    semantic, query_vector = found
            except BaseException:
                if lexical is not None:
                    lexical.cancel()
                raise
        if lexical is not None:
            rankings["lexical"] = await lexical
        if mode in ("hybrid", "semantic"):
            if semantic is not None:
                rankings["semantic"] = semantic
            elif mode == "semantic" and self._nothing_to_embed():
                rankings["semantic"] = []
            elif mode == "semantic":
                from mimiverse.errors import BackendUnavailable

                raise BackendUnavailable(
                    "semantic search needs embeddings: configure an embed endpoint "
                    "(MIMI_EMBEDDED_EMBED) and wait for vectors (see /api/codebase/status), "
                    "or use mode=lexical"
                )
        reorder = self._can_rerank() if rerank is None else rerank
        if reorder and not self._can_rerank():
            raise BadRequest(
                "rerank was asked for but no endpoint serves the rerank task: add one to "
                "endpoints/routes (see docs/settings.md) or leave rerank unset"
            )
        # Rerank a wider cut than asked for, then cap and cut.
        wanted = max(limit, self.rerank_top) if reorder else limit
        if len(rankings) == 1:
            ((method, hits),) = rankings.items()
            for rank, hit in enumerate(hits, start=1):
                hit.ranks[method], hit.scores[method] = rank, hit.score
            hits = cap_per_file(hits, per_file, wanted)
        else:
            assert query_vector is not None
            union = {h.chunk_id for hits in rankings.values() for h in hits}
            cosine = await asyncio.to_thread(self._cosines, query_vector, sorted(union))
            hits = blend(rankings["lexical"], rankings["semantic"], cosine, limit=wanted,
                         per_file=per_file, query_terms=terms)  # fmt: skip
        reranked = False
        if reorder and hits:
            hits, reranked = await self._rerank(query, hits)
        hits = hits[:limit]
        took = (time.perf_counter() - began) * 1000
        return SearchResult(hits, mode, took, self.status(), reranked)

    def _can_rerank(self) -> bool:
        """Whether the gateway routes a ``rerank`` task (and reranking is on)."""
        if self.gateway is None or self.rerank_top <= 0:
            return False
        return bool(self.gateway.router.routes.get("rerank"))

    async def _rerank(self, query: str, hits: list[Hit]) -> tuple[list[Hit], bool]:
        """``hits`` ordered by the rerank model; unchanged (and False) if it fails."""
        assert self.gateway is not None
        cut = hits[: max(1, self.rerank_top)]
        documents = [f"{h.path}\n{h.content}"[:RERANK_DOC_CHARS] for h in cut]
        try:
            results = await self.gateway.rerank(RerankRequest(query, documents))
        except MimiError as exc:
            log.warning("rerank failed, keeping the fused order: %s", exc.message)
            return hits, False
        ordered: list[Hit] = []
        for rank, result in enumerate(results, start=1):
            if 0 <= result.index < len(cut) and cut[result.index] not in ordered:
                hit = cut[result.index]
                hit.ranks["rerank"], hit.scores["rerank"] = rank, result.score
                ordered.append(hit)
        ordered.extend(h for h in cut if h not in ordered)  # anything the model left out
        return ordered + hits[len(cut) :], True

    async def _semantic(
        self, query: str, k: int, filters: Filters
    ) -> tuple[list[Hit], np.ndarray] | None:
        """The nearest chunks and the query's vector; None without vectors."""
        model = self.embed_model
        if model is None or self.gateway is None:
            return None
        owns = self.store.owns_vectors
        if not owns and (self._vectors is None or not len(self._vectors)):
            return None
        (vector,), _ = await self.gateway.embed([query], kind="query")
        q = np.asarray(vector, dtype=np.float32)
        if owns:
            found = await asyncio.to_thread(self.store.vector_search, model, vector, k, filters)
            return await self._hits(found or []), q
        index = self._vectors
        assert index is not None
        if filters == Filters():
            found = await asyncio.to_thread(index.search, q, k)
        else:
            allowed = self._allowed_ids(filters)
            found = await asyncio.to_thread(index.search, q, k, allowed.__contains__)
        return await self._hits(found), q

    def _cosines(self, query: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Exact cosine similarity of ``query`` with the stored vectors of ``ids`` (vectors
        are L2-normalised: a dot product)."""
        model = self.embed_model
        if model is None or not ids:
            return {}
        if self._vectors is not None and not self.store.owns_vectors:
            # In memory (half precision): ~20x faster than reading the rows from SQLite.
            found = self._vectors.vectors(ids)
            return {i: float(v @ query) for i, v in found.items()}
        rows = list(self.store.chunk_vectors(model, ids))
        if not rows:
            return {}
        matrix = np.frombuffer(b"".join(b for _, b in rows), dtype=np.float32)
        scores = matrix.reshape(len(rows), -1) @ query
        return {chunk_id: float(s) for (chunk_id, _), s in zip(rows, scores, strict=True)}

    async def _hits(self, found: list[tuple[int, float]]) -> list[Hit]:
        hits_by_id = await asyncio.to_thread(self.store.chunks, [i for i, _ in found])
        out = []
        for chunk_id, score in found:
            hit = hits_by_id.get(chunk_id)
            if hit is not None:
                hit.score = score
                out.append(hit)
        return out

    def _allowed_ids(self, filters: Filters) -> set[int]:
        return set(self.store.filtered_ids(filters))

    # --- status -------------------------------------------------------------------------

    def _nothing_to_embed(self) -> bool:
        """An embedder and no chunks: an empty project, not vectors still to come."""
        model = self.embed_model
        return model is not None and not self._counts(model)["chunks"]

    def _counts(self, model: str) -> dict[str, int]:
        """The store's counts, kept for ``COUNTS_TTL_S`` or until this indexer writes (the
        vector count is a join: ~17 ms at 17k chunks, too dear for every search)."""
        now = time.monotonic()
        cached = self._counts_cache
        if cached is None or cached[0] != model or now - cached[1] > COUNTS_TTL_S:
            cached = self._counts_cache = (model, now, self.store.counts(model))
        return cached[2]

    def status(self) -> dict[str, Any]:
        """Counts, embedding progress and the last sync."""
        model = self.embed_model
        counts = self._counts(model or "")
        chunks = counts["chunks"]
        status: dict[str, Any] = {
            "root": str(self.root),
            "store": self.store.name,
            "files": counts["files"],
            "chunks": chunks,
            "embed_model": model,
            "embedded": counts["embedded"] if model else 0,
            "vectors_complete": (counts["embedded"] / chunks if chunks else 1.0) if model else 0.0,
            "embed_error": self._embed_error,
            "skipped": len(self.skipped),
        }
        if self.last_sync is not None:
            s = self.last_sync
            status["last_sync"] = {"scanned": s.scanned, "changed": s.changed,
                                   "deleted": s.deleted, "seconds": round(s.seconds, 3)}  # fmt: skip
        return status

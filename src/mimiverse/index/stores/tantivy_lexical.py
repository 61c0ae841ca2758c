"""BM25 over chunk tokens with tantivy: the SQLite store's fast lexical path.

SQLite's FTS5 scores every chunk that matches any query term; at ~100k chunks a query with
one common word ("return") scores half the index (p95 ~90 ms measured). Tantivy skips
blocks that cannot reach the top k (block-max WAND): p95 ~5 ms on the same index, same
MRR. FTS5 stays the truth and the fallback; this index is derived from its rows and
rebuilt from them whenever it may differ.

Two fields hold the chunk's code-aware token strings (``index.tokens``): ``text`` has the
symbol, path and context repeated by their weight next to the body (term frequencies add
up before BM25 saturates them, as with FTS5's column-weighted ``bm25()``), and ``symbol``
has the defined name alone, scored by its own BM25 and added with ``SYMBOL_BOOST``: a
query word that names the definition is strong evidence, and inside one long field it
saturates like any other word (+0.035 MRR@10 on bench/search.py, lexical 0.389 → 0.424,
a plateau for boosts 0.4–0.6 and repeats 1–10). Stemmed with Snowball English.

Consistency: every SQLite transaction that changes chunks bumps a generation number; a
sidecar file says which generation this index reflects, written only after a commit.
Anything else (a crash between the two, another process writing SQLite, a new format)
shows up as a mismatch, and the store rebuilds this index from FTS5's rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

from mimiverse.index import tokens

log = logging.getLogger("mimiverse.index.lexical")

REPEAT = (3, 1, 1)
"""How many times symbol, path and context are repeated next to the body (their weights)."""
SYMBOL_BOOST = 0.5
"""Weight of the ``symbol`` field's own BM25 next to ``text``'s."""
FORMAT = f"2/tokens-{tokens.VERSION}/repeat-{'.'.join(map(str, REPEAT))}"
_STATE = "state.json"
_TOKENIZER = "code"
_WRITER_HEAP = 50_000_000

Row = tuple[int, str, str, str, str]
"""(chunk id, symbol, path, context, body) as token strings."""


class LexicalIndexUnavailable(RuntimeError):
    """The tantivy index cannot be opened or written here (the caller falls back to FTS5)."""


def document_text(symbol: str, path: str, context: str, body: str) -> str:
    """The one field's text: the weighted parts repeated, then the body."""
    parts = [symbol] * REPEAT[0] + [path] * REPEAT[1] + [context] * REPEAT[2] + [body]
    return " ".join(p for p in parts if p)


def _document(chunk_id: int, symbol: str, path: str, context: str, body: str) -> tantivy.Document:
    text = document_text(symbol, path, context, body)
    return tantivy.Document(id=chunk_id, symbol=symbol, text=text)


class TantivyLexical:
    """A tantivy index of chunk tokens in ``directory``, with its generation sidecar."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._writer: tantivy.IndexWriter | None = None
        self.generation = -1
        """The SQLite generation this index reflects (-1: unknown, rebuild)."""
        try:
            self._open()
        except (OSError, ValueError) as exc:
            raise LexicalIndexUnavailable(f"cannot open {directory}: {exc}") from exc

    @staticmethod
    def _schema() -> tantivy.Schema:
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=False, indexed=True, fast=True)
        builder.add_text_field("symbol", tokenizer_name=_TOKENIZER, index_option="freq")
        builder.add_text_field("text", tokenizer_name=_TOKENIZER, index_option="freq")
        return builder.build()

    def _open(self) -> None:
        state = self._read_state()
        if state.get("format") != FORMAT and self.directory.exists():
            shutil.rmtree(self.directory)  # another layout: start over, rebuilt from SQLite
            state = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(self._schema(), path=str(self.directory), reuse=True)
        analyzer = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace())
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stemmer("english"))
            .build()
        )
        self.index.register_tokenizer(_TOKENIZER, analyzer)
        generation = state.get("generation")
        self.generation = generation if isinstance(generation, int) else -1

    def _read_state(self) -> dict[str, object]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.directory / _STATE).read_text("utf-8"))
            if isinstance(data, dict):
                return data
        return {}

    def _write_state(self) -> None:
        tmp = self.directory / f".{_STATE}.tmp"
        tmp.write_text(json.dumps({"format": FORMAT, "generation": self.generation}), "utf-8")
        os.replace(tmp, self.directory / _STATE)

    def _writer_or_raise(self) -> tantivy.IndexWriter:
        if self._writer is None:
            try:
                self._writer = self.index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            except ValueError as exc:  # the lock file is held by another process
                raise LexicalIndexUnavailable(f"{self.directory} is being written: {exc}") from exc
        return self._writer

    # --- writes (uncommitted until commit) ---------------------------------------------

    def apply(self, removed: Sequence[int], added: Iterable[Row]) -> None:
        """Delete chunks ``removed`` and add ``added`` (seen by searches after ``commit``)."""
        with self._lock:
            writer = self._writer_or_raise()
            for chunk_id in removed:
                writer.delete_documents_by_term("id", chunk_id)
            for chunk_id, symbol, path, context, body in added:
                writer.add_document(_document(chunk_id, symbol, path, context, body))

    def commit(self, generation: int) -> None:
        """Publish the pending changes as the state of SQLite's ``generation``."""
        with self._lock:
            self._writer_or_raise().commit()
            self.index.reload()
            self.generation = generation
            self._write_state()

    def rebuild(self, rows: Iterable[Row], generation: int) -> int:
        """Replace everything with ``rows``; returns how many were indexed."""
        with self._lock:
            writer = self._writer_or_raise()
            writer.rollback()
            writer.delete_all_documents()
            count = 0
            for chunk_id, symbol, path, context, body in rows:
                writer.add_document(_document(chunk_id, symbol, path, context, body))
                count += 1
            writer.commit()
            self.index.reload()
            self.generation = generation
            self._write_state()
        return count

    def rollback(self) -> None:
        """Drop uncommitted changes (after a failure half-way through ``apply``)."""
        with self._lock, contextlib.suppress(ValueError):
            if self._writer is not None:
                self._writer.rollback()

    # --- reads --------------------------------------------------------------------------

    def search(self, terms: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best ``limit`` chunks for any of ``terms``."""
        words = [
            t for t in terms if t.isalnum()
        ]  # tokens are [a-z0-9]; the parser sees plain words
        if not words or limit <= 0:
            return []
        query = self.index.parse_query(
            " ".join(words), ["symbol", "text"], field_boosts={"symbol": SYMBOL_BOOST}
        )
        searcher = self.index.searcher()
        result = searcher.search(query, limit, count=False)
        if not result.hits:
            return []
        ids = searcher.fast_field_values("id", [address for _, address in result.hits])
        return [
            (int(i), float(score))
            for (score, _), i in zip(result.hits, ids, strict=True)
            if i is not None
        ]

    def ids(self) -> list[int]:
        """Every committed chunk id (for consistency checks)."""
        searcher = self.index.searcher()
        if not searcher.num_docs:
            return []
        result = searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False)
        values = searcher.fast_field_values("id", [address for _, address in result.hits])
        return sorted(int(i) for i in values if i is not None)

    def close(self) -> None:
        """Release the writer (and its lock file)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(ValueError):
                writer.rollback()
            with contextlib.suppress(ValueError):
                writer.wait_merging_threads()

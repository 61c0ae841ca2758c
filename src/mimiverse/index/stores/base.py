"""The index store interface: files, chunks, lexical search, and embeddings by content hash.

The store is the truth. Vector indexes are derived from its rows and can be rebuilt.
Implementations: ``sqlite`` (embedded default) and ``postgres`` (tsvector + pgvector).
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mimiverse.index.model import Chunk, SourceFile


@dataclass(frozen=True)
class Filters:
    """Narrow a search: a path glob, a language, a chunk kind."""

    path_glob: str = ""
    language: str = ""
    kind: str = ""

    def allows(self, path: str, language: str, kind: str) -> bool:
        """Whether a chunk with these fields passes."""
        if self.language and language != self.language:
            return False
        if self.kind and kind != self.kind:
            return False
        return not self.path_glob or fnmatch.fnmatchcase(path, self.path_glob)


def glob_to_like(glob: str) -> str | None:
    """A LIKE prefix (backslash escapes) to pre-filter a path glob cheaply, or None."""
    head = glob.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    if not head:
        return None
    return head.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


def filter_sql(filters: Filters, mark: str, *, escape: str = "") -> tuple[str, list[object]]:
    """``AND …`` conditions on chunks aliased ``c`` for ``filters`` (the glob is only
    pre-filtered by its LIKE prefix: check ``Filters.allows`` on the rows), with ``mark``
    as the driver's placeholder and ``escape`` appended to the LIKE."""
    where = ""
    params: list[object] = []
    if filters.language:
        where += f" AND c.language = {mark}"
        params.append(filters.language)
    if filters.kind:
        where += f" AND c.kind = {mark}"
        params.append(filters.kind)
    like = glob_to_like(filters.path_glob) if filters.path_glob else None
    if like:
        where += f" AND c.path LIKE {mark}{escape}"
        params.append(like)
    return where, params


@dataclass
class Hit:
    """A chunk returned by a search, with its score under the method that found it."""

    chunk_id: int
    path: str
    start_line: int
    end_line: int
    language: str
    kind: str
    symbol: str
    content: str
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)
    """1-based rank of this chunk under each method (lexical, semantic, …)."""
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class StoredFile:
    """What the store knows of one indexed file."""

    path: str
    file_hash: str
    size: int
    mtime_ns: int


class IndexStore(abc.ABC):
    """Persistent chunks with lexical search and content-hash-keyed vectors."""

    name = "base"

    @abc.abstractmethod
    def files(self) -> dict[str, StoredFile]:
        """Every indexed file by path."""

    def file_languages(self) -> dict[str, str]:
        """Language of every indexed file, by path."""
        languages: dict[str, str] = {}
        for path in self.files():
            hits = self.chunks_of(path)
            languages[path] = hits[0].language if hits else "text"
        return languages

    def chunks_of(self, path: str) -> list[Hit]:
        """A file's chunks in line order (default: through filtered_ids)."""
        ids = self.filtered_ids(Filters(path_glob=path))
        return sorted(self.chunks(ids).values(), key=lambda h: h.start_line)

    @abc.abstractmethod
    def replace_file(self, file: SourceFile, file_hash: str, chunks: Sequence[Chunk]) -> list[int]:
        """Atomically replace a file's chunks; returns the removed chunk ids."""

    @abc.abstractmethod
    def touch_file(self, file: SourceFile) -> None:
        """Record a new size/mtime for a file whose content did not change."""

    @abc.abstractmethod
    def delete_files(self, paths: Sequence[str]) -> list[int]:
        """Atomically drop files and their chunks; returns the removed chunk ids."""

    @abc.abstractmethod
    def lexical(self, terms: Sequence[str], limit: int, filters: Filters) -> list[Hit]:
        """Best chunks for query tokens by BM25 (symbol and path weighted), best first."""

    @abc.abstractmethod
    def chunks(self, ids: Sequence[int]) -> dict[int, Hit]:
        """Chunks by id (missing ids are left out)."""

    @abc.abstractmethod
    def missing_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (content_hash, text to embed) with no vector for ``model`` yet."""

    @abc.abstractmethod
    def put_vectors(self, model: str, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store vectors by content hash."""

    @abc.abstractmethod
    def chunk_vectors(
        self, model: str, ids: Sequence[int] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """(chunk id, float32 vector bytes) for chunks that have a vector (all, or ``ids``)."""

    @abc.abstractmethod
    def chunk_vectors_by_hash(
        self, model: str, hashes: Sequence[str]
    ) -> Iterator[tuple[int, bytes]]:
        """(chunk id, vector bytes) of every chunk whose content hash is in ``hashes``."""

    @abc.abstractmethod
    def filtered_ids(self, filters: Filters) -> list[int]:
        """Ids of every chunk that passes ``filters``."""

    @abc.abstractmethod
    def vector_chunk_ids(self, model: str) -> list[int]:
        """Ids of chunks that have a vector for ``model``."""

    def vector_search(
        self, model: str, vector: Sequence[float], k: int, filters: Filters
    ) -> list[tuple[int, float]] | None:
        """(chunk id, cosine similarity) best first, when the store searches vectors itself
        (pgvector); None means "use the derived on-disk ANN index"."""
        return None

    @property
    def owns_vectors(self) -> bool:
        """True when ``vector_search`` is implemented by the store."""
        return False

    @abc.abstractmethod
    def counts(self, model: str) -> dict[str, int]:
        """``files``, ``chunks``, ``embedded`` (chunks with a vector for ``model``)."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A value from the store's key/value table."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set a key/value pair."""

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Make every change so far visible to the fastest search path (a no-op where
        changes are visible at commit)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close connections."""


def embed_text(chunk: Chunk) -> str:
    """The text a chunk is embedded as: where it lives, its context, then its code."""
    head = f"{chunk.path}\n{chunk.context}".strip()
    return f"{head}\n{chunk.content}" if head else chunk.content

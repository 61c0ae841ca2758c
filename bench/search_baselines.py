"""Baselines for bench/search.py over the very chunks our index holds.

- ``bm25_baseline``: plain BM25 (the ``bm25s`` package, Lucene variant, k1 = 1.5,
  b = 0.75) over each chunk's code (``content`` only: no path, no context, no fields).
  Tokens: ``\\w\\w+`` lower-cased (bm25s' own default pattern), no identifier splitting,
  no stemming; Lucene's English stopwords dropped on both sides.
- ``ripgrep_baseline``: for each query, ``rg -i -F -o -n`` with the query's distinct
  non-stopword terms (``\\w\\w+``, lower-cased, Lucene stopwords) as an OR of fixed
  strings over the corpus (``*.py``). Every matched occurrence (``-o``) is mapped to the
  chunk that holds its line. Chunks are ranked by how many distinct query terms they
  match, then by occurrences (then path and line); each file gives one result, its best
  chunk. ``ripgrep_count``: the same output ranked by occurrences only (then the file's
  occurrences), the literal "most matches first" reading, which big, wordy chunks win.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
from bm25s.stopwords import STOPWORDS_EN

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
STOPWORDS = frozenset(STOPWORDS_EN)


@dataclass(frozen=True)
class Span:
    """A chunk's place: what the hit rule judges."""

    path: str
    start_line: int
    end_line: int


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the index stored it."""

    chunk_id: int
    path: str
    start_line: int
    end_line: int
    content: str


def plain_tokens(text: str) -> list[str]:
    """Lower-cased ``\\w\\w+`` words without stopwords."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


class Bm25Baseline:
    """Plain BM25 over chunk contents."""

    def __init__(self, chunks: Sequence[StoredChunk]) -> None:
        self.chunks = list(chunks)
        self.retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        self.retriever.index([plain_tokens(c.content) for c in self.chunks], show_progress=False)

    def search(self, query: str, limit: int = 10) -> list[Span]:
        """The ``limit`` best chunks for ``query``."""
        terms = plain_tokens(query)
        if not terms:
            return []
        docs, scores = self.retriever.retrieve(
            [terms], k=min(limit, len(self.chunks)), show_progress=False, n_threads=1
        )
        out = []
        for index, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                break
            c = self.chunks[int(index)]
            out.append(Span(c.path, c.start_line, c.end_line))
        return out


class RipgrepBaseline:
    """``rg`` over the corpus, mapped to chunks (see the module docstring)."""

    def __init__(self, root: Path, chunks: Sequence[StoredChunk]) -> None:
        exe = shutil.which("rg")
        if exe is None:
            raise RuntimeError("ripgrep is missing: apt-get install ripgrep")
        self.exe = exe
        self.root = root
        self.by_path: dict[str, list[StoredChunk]] = defaultdict(list)
        for c in sorted(chunks, key=lambda c: (c.path, c.start_line)):
            self.by_path[c.path].append(c)
        self.starts = {p: [c.start_line for c in cs] for p, cs in self.by_path.items()}

    @staticmethod
    def terms(query: str) -> list[str]:
        """The query's distinct non-stopword terms."""
        return list(dict.fromkeys(plain_tokens(query)))

    def _chunk_at(self, path: str, line: int) -> StoredChunk | None:
        cs = self.by_path.get(path)
        if not cs:
            return None
        i = bisect.bisect_right(self.starts[path], line) - 1
        for j in range(i, max(i - 4, -1), -1):  # chunks rarely overlap: look a few back
            if cs[j].start_line <= line <= cs[j].end_line:
                return cs[j]
        return None

    def search(self, query: str, limit: int = 10) -> list[Span]:
        """The ``limit`` best files, one chunk each, by distinct terms matched."""
        return self.search_both(query, limit)[0]

    def search_both(self, query: str, limit: int = 10) -> tuple[list[Span], list[Span]]:
        """One ``rg`` run, two rankings: by distinct terms, and by occurrences."""
        terms = self.terms(query)
        if not terms:
            return [], []
        args = [self.exe, "-i", "-F", "-o", "-n", "--with-filename", "--no-heading",
                "--no-config", "--color", "never", "-g", "*.py"]  # fmt: skip
        for term in terms:
            args += ["-e", term]
        proc = subprocess.run(
            [*args, "."], cwd=self.root, capture_output=True, text=True, check=False
        )
        per_file: Counter[str] = Counter()
        occurrences: Counter[int] = Counter()
        distinct: dict[int, set[str]] = defaultdict(set)
        chunk_of: dict[int, StoredChunk] = {}
        for row in proc.stdout.splitlines():
            path, _, rest = row.partition(":")
            line_text, _, matched = rest.partition(":")
            path = path.removeprefix("./")
            per_file[path] += 1
            chunk = self._chunk_at(path, int(line_text))
            if chunk is not None:
                occurrences[chunk.chunk_id] += 1
                distinct[chunk.chunk_id].add(matched.lower())
                chunk_of[chunk.chunk_id] = chunk

        def one_per_file(key: Callable[[int], tuple[Any, ...]]) -> list[Span]:
            out: list[Span] = []
            seen: set[str] = set()
            for i in sorted(occurrences, key=key):
                c = chunk_of[i]
                if c.path not in seen:
                    seen.add(c.path)
                    out.append(Span(c.path, c.start_line, c.end_line))
                    if len(out) == limit:
                        break
            return out

        def place(i: int) -> tuple[str, int]:
            return chunk_of[i].path, chunk_of[i].start_line

        by_terms = one_per_file(lambda i: (-len(distinct[i]), -occurrences[i], *place(i)))
        by_count = one_per_file(lambda i: (-occurrences[i], -per_file[chunk_of[i].path], *place(i)))
        return by_terms, by_count

"""The on-disk ANN index (usearch HNSW), derived from the store's rows and rebuildable.

The file carries a fingerprint of the (chunk id → vector) set it was built from; on open,
a fingerprint that differs from the store's (a crash between a store write and a save, a
restored backup) makes us rebuild from rows. Searches filter by an allow-predicate with
over-fetching, and fall back to exact search when the filter is very selective.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from mimiverse.gateway.backends.local_embed import preload_runtime

# usearch's wheel ships its own libstdc++; onnxruntime (the embedder) crashes when it is
# imported after it. Importing onnxruntime first makes both work, so do it here, at the one
# place usearch is imported.
preload_runtime()
from usearch.index import Index  # noqa: E402

log = logging.getLogger("mimiverse.index.vectors")
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def fingerprint(ids: Iterable[int]) -> str:
    """Order-independent fingerprint of a set of chunk ids."""
    count, total, mixed = 0, 0, 0
    for i in ids:
        count += 1
        total += i
        mixed ^= (i * _MIX) & _MASK
    return f"{count}:{total}:{mixed:x}"


class VectorIndex:
    """Cosine HNSW over chunk ids, persisted next to the store."""

    def __init__(self, path: Path, ndim: int, *, threads: int = 0) -> None:
        self.path = path
        self.ndim = ndim
        self.threads = threads or len(os.sched_getaffinity(0))
        self._lock = threading.RLock()
        self._index = self._new()
        self._ids: set[int] = set()

    def _new(self) -> Index:
        return Index(ndim=self.ndim, metric="cos", dtype="f16", connectivity=16,
                     expansion_add=64, expansion_search=96)  # fmt: skip

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the ids currently indexed."""
        with self._lock:
            return fingerprint(self._ids)

    def load(self, expected: str) -> bool:
        """Load the saved file if its fingerprint equals ``expected``."""
        meta_path = self.path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != expected or meta.get("ndim") != self.ndim:
                return False
            index = self._new()
            index.load(str(self.path))
            ids = {int(k) for k in index.keys}
        except (OSError, ValueError, RuntimeError):
            return False
        if fingerprint(ids) != expected:
            return False
        with self._lock:
            self._index, self._ids = index, ids
        return True

    def rebuild(self, rows: Iterable[tuple[int, bytes]], batch: int = 4096) -> None:
        """Replace the contents with ``rows`` (chunk id, float32 bytes)."""
        index, ids = self._new(), set()
        keys: list[int] = []
        vecs: list[bytes] = []

        def flush() -> None:
            if keys:
                matrix = np.frombuffer(b"".join(vecs), dtype=np.float32).reshape(len(keys), -1)
                index.add(np.asarray(keys, dtype=np.uint64), matrix, threads=self.threads)
                ids.update(keys)
                keys.clear()
                vecs.clear()

        for key, blob in rows:
            keys.append(key)
            vecs.append(blob)
            if len(keys) >= batch:
                flush()
        flush()
        with self._lock:
            self._index, self._ids = index, ids

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Add (or replace) vectors for chunk ids."""
        if not len(ids):
            return
        with self._lock:
            again = [i for i in ids if i in self._ids]
            if again:
                self._index.remove(np.asarray(again, dtype=np.uint64))
            self._index.add(np.asarray(ids, dtype=np.uint64), vectors, threads=self.threads)
            self._ids.update(ids)

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored (half-precision) vectors of the known ``ids``, as float32."""
        with self._lock:
            known = [i for i in ids if i in self._ids]
            if not known:
                return {}
            got = self._index.get(np.asarray(known, dtype=np.uint64))
        if got is None:
            return {}
        rows = list(got) if isinstance(got, tuple) else list(np.atleast_2d(got))
        return {
            i: np.asarray(v, dtype=np.float32)
            for i, v in zip(known, rows, strict=True)
            if v is not None
        }

    def remove(self, ids: Iterable[int]) -> None:
        """Forget chunk ids (unknown ids are ignored)."""
        with self._lock:
            gone = [i for i in ids if i in self._ids]
            if gone:
                self._index.remove(np.asarray(gone, dtype=np.uint64))
                self._ids.difference_update(gone)

    def search(
        self, vector: np.ndarray, k: int, allow: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (chunk id, cosine similarity), best first, passing ``allow``."""
        with self._lock:
            n = len(self._ids)
            if n == 0:
                return []
            fetch = min(n, k if allow is None else k * 8)
            found = self._index.search(vector, fetch)
            out = [
                (int(key), 1.0 - float(d))
                for key, d in zip(found.keys, found.distances, strict=True)
            ]
            if allow is not None:
                out = [(key, s) for key, s in out if allow(key)]
                if len(out) < k and fetch < n:
                    found = self._index.search(vector, n, exact=True)
                    out = [(int(key), 1.0 - float(d))
                           for key, d in zip(found.keys, found.distances, strict=True)
                           if allow(int(key))]  # fmt: skip
        return out[:k]

    def save(self) -> None:
        """Write the index and its fingerprint atomically."""
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._index.save(str(tmp))
            os.replace(tmp, self.path)
            meta = {
                "fingerprint": fingerprint(self._ids),
                "ndim": self.ndim,
                "count": len(self._ids),
            }
            meta_tmp = self.path.with_suffix(".json.tmp")
            meta_tmp.write_text(json.dumps(meta))
            os.replace(meta_tmp, self.path.with_suffix(".json"))

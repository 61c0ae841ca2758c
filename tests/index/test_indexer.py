"""The indexer's reconciliation: unchanged files are skipped, an index made by an older
chunker or tokenizer is cut again without losing the vectors of unchanged chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimiverse.index.indexer import Indexer, index_format
from mimiverse.index.stores.sqlite import SqliteIndexStore


def make_indexer(tmp_path: Path) -> Indexer:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "a.py").write_text("def isdir(p):\n    return p.endswith('/')\n")
    (root / "b.py").write_text("def total(xs):\n    return sum(xs)\n")
    store = SqliteIndexStore(tmp_path / "index.sqlite3")
    return Indexer(root, store, tmp_path / "vectors")


def test_second_sync_skips_unchanged_files(tmp_path: Path) -> None:
    indexer = make_indexer(tmp_path)
    try:
        assert indexer.sync().changed == 2
        assert indexer.store.get_meta("format") == index_format()
        again = indexer.sync()
        assert (again.changed, again.unchanged) == (0, 2)
    finally:
        indexer.store.close()


def test_older_index_format_is_cut_again_keeping_vectors(tmp_path: Path) -> None:
    indexer = make_indexer(tmp_path)
    store = indexer.store
    try:
        indexer.sync()
        hashes = [h for h, _ in store.missing_vectors("m", 10)]
        store.put_vectors("m", [(h, [1.0, 0.0]) for h in hashes])
        ids_before = store.vector_chunk_ids("m")
        store.set_meta("format", "chunks-1/tokens-1")

        report = indexer.sync()
        assert (report.changed, report.unchanged) == (2, 0)
        assert store.get_meta("format") == index_format()
        assert store.counts("m")["embedded"] == 2, "same chunks, same hashes: vectors kept"
        assert sorted(store.vector_chunk_ids("m")) != sorted(ids_before), "rows were re-cut"
        assert indexer.sync().changed == 0
    finally:
        store.close()


def test_vector_index_returns_stored_vectors_of_known_ids(tmp_path: Path) -> None:
    import numpy as np

    from mimiverse.index.vectors import VectorIndex

    index = VectorIndex(tmp_path / "v.usearch", 8)
    rng = np.random.default_rng(1)
    matrix = rng.random((3, 8), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    index.add([10, 11, 12], matrix)
    got = index.vectors([11, 99, 12])
    assert sorted(got) == [11, 12]
    assert float(got[11] @ matrix[1]) == pytest.approx(1.0, abs=1e-3), "half precision"
    assert index.vectors([99]) == {}

"""The SQLite store's tantivy path: answers once flushed, FTS5 answers until then, and any
sign that it may differ from SQLite's rows (another writer, a lost sidecar, a held lock)
ends in FTS5 answering or a rebuild, never in stale results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mimiverse.index import tokens
from mimiverse.index.model import Chunk, SourceFile
from mimiverse.index.stores.base import Filters
from mimiverse.index.stores.sqlite import SqliteIndexStore


def put(store: SqliteIndexStore, path: str, *symbols: str) -> None:
    chunks = [
        Chunk(path, 3 * n + 1, 3 * n + 2, "python", "function", s, f"def {s}():\n    pass")
        for n, s in enumerate(symbols)
    ]
    store.replace_file(SourceFile(path, "python", 10, 1), f"hash-{path}-{symbols}", chunks)


def found(store: SqliteIndexStore, query: str, filters: Filters | None = None) -> list[str]:
    hits = store.lexical(tokens.query_terms(query), 10, filters or Filters())
    return [h.symbol for h in hits]


def test_pending_changes_are_answered_by_fts5_then_by_tantivy(tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "index.sqlite3")
    try:
        put(store, "a.py", "parse_config", "load_plugins")
        assert not store.fast_lexical_ready
        assert found(store, "parse config") == ["parse_config"], "FTS5 while pending"
        store.flush()
        assert store.fast_lexical_ready
        assert found(store, "parse config") == ["parse_config"]
        assert found(store, "plugins", Filters(path_glob="a.py")) == ["load_plugins"]
        assert found(store, "plugins", Filters(path_glob="b.py")) == []
        put(store, "a.py", "render_page")  # replaces a.py's chunks
        store.flush()
        assert found(store, "parse config") == []
        assert found(store, "render") == ["render_page"]
        store.delete_files(["a.py"])
        store.flush()
        assert found(store, "render") == []
    finally:
        store.close()


def test_changes_by_another_writer_trigger_a_rebuild(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite3"
    first = SqliteIndexStore(db)
    put(first, "a.py", "parse_config")
    first.close()  # flushes: tantivy holds parse_config
    other = SqliteIndexStore(db, lexical="fts5")  # e.g. an older build or another process
    put(other, "b.py", "write_report")
    other.close()

    again = SqliteIndexStore(db)
    try:
        assert not again.fast_lexical_ready, "the generation moved on without it"
        assert found(again, "report") == ["write_report"], "FTS5 answers meanwhile"
        again.flush()
        assert again.fast_lexical_ready
        assert found(again, "report") == ["write_report"]
        assert found(again, "config") == ["parse_config"]
    finally:
        again.close()


def test_a_lost_sidecar_means_a_rebuild(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite3"
    store = SqliteIndexStore(db)
    put(store, "a.py", "parse_config")
    store.close()
    (tmp_path / "lexical" / "state.json").write_text("{not json")
    again = SqliteIndexStore(db)
    try:
        assert not again.fast_lexical_ready
        again.flush()
        assert again.fast_lexical_ready
        assert found(again, "config") == ["parse_config"]
    finally:
        again.close()


def test_a_writer_lock_held_by_another_process_leaves_fts5_answering(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite3"
    SqliteIndexStore(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITER, str(tmp_path / "lexical")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        store = SqliteIndexStore(db)
        try:
            put(store, "b.py", "write_report")
            store.flush()
            assert not store.fast_lexical_ready
            assert found(store, "report") == ["write_report"]
        finally:
            store.close()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


HOLD_WRITER = """
import sys, time
from pathlib import Path
from mimiverse.index.stores.tantivy_lexical import TantivyLexical
index = TantivyLexical(Path(sys.argv[1]))
index.apply([], [])
print("holding", flush=True)
time.sleep(60)
"""

"""SIGKILL the indexer mid-run, restart it: no duplicated, missing or orphaned chunks, and
the vector index agrees with the rows."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mimiverse.index.chunk import chunk_file
from mimiverse.index.scan import read_text, scan
from mimiverse.index.service import index_dir
from mimiverse.index.stores.sqlite import SqliteIndexStore
from mimiverse.index.vectors import VectorIndex, fingerprint
from mimiverse.settings import Settings


def make_project(root: Path, files: int) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 2000)[:files]
    for src in sources:
        shutil.copy(src, root / src.name)


def run_index(root: Path, env: dict[str, str], *, embed: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mimiverse.cli", "index", str(root)]
    command += [] if embed else ["--no-embed"]
    log = (root.parent / "index.log").open("ab")
    try:
        return subprocess.Popen(command, env=env, stdout=log, stderr=log)
    finally:
        log.close()


def count(db: Path, sql: str) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def kill_when(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, "indexer exited before the kill point"
        assert time.monotonic() < deadline, "indexer never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def check_consistent(root: Path, db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT path, start_line, end_line, content_hash FROM chunks ORDER BY path, start_line"
        ).fetchall()
        files = {r[0] for r in con.execute("SELECT path FROM files")}
        fts = con.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    finally:
        con.close()
    assert max(Counter(rows).values(), default=1) == 1, "duplicated chunks"
    assert {r[0] for r in rows} <= files, "chunks whose file is not indexed (orphans)"
    assert fts == len(rows), "lexical index rows out of step with chunks"
    expected = []
    for f in scan(root).files:
        for c in chunk_file(f.path, read_text(root / f.path), f.language):
            expected.append((c.path, c.start_line, c.end_line, c.content_hash))
    assert sorted(rows) == sorted(expected), "missing or stale chunks"
    check_fast_lexical(db)


def check_fast_lexical(db: Path) -> None:
    """The tantivy index, once the store has flushed, holds exactly the chunk ids."""
    store = SqliteIndexStore(db)
    try:
        store.flush()
        assert store.fast_lexical_ready
        assert store._fast is not None
        with sqlite3.connect(db) as con:
            ids = sorted(r[0] for r in con.execute("SELECT id FROM chunks"))
        assert store._fast.ids() == ids, "tantivy out of step with the chunks"
    finally:
        store.close()


def test_sigkill_during_chunking_then_restart(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    make_project(root, 250)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
    env.update(MIMI_DATA_DIR=str(data), MIMI_CONFIG=str(tmp_path / "none.toml"))
    settings = Settings(data_dir=data)
    db = index_dir(settings, root) / "index.sqlite3"

    proc = run_index(root, env, embed=False)
    kill_when(proc, lambda: count(db, "SELECT count(*) FROM files") >= 40)
    killed_at = count(db, "SELECT count(*) FROM files")
    assert 0 < killed_at < 250, "killed mid-run"

    done = run_index(root, env, embed=False)
    assert done.wait(timeout=300) == 0, (tmp_path / "index.log").read_text()[-3000:]
    check_consistent(root, db)


@pytest.mark.model
def test_sigkill_during_embedding_then_restart(tmp_path: Path, models_dir: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    make_project(root, 8)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
    env.update(
        MIMI_DATA_DIR=str(data), MIMI_CONFIG=str(tmp_path / "none.toml"),
        MIMI_MODELS_DIR=str(models_dir), MIMI_EMBEDDED_PRELOAD="false",
    )  # fmt: skip
    settings = Settings(data_dir=data)
    db = index_dir(settings, root) / "index.sqlite3"

    proc = run_index(root, env, embed=True)
    kill_when(proc, lambda: count(db, "SELECT count(*) FROM vectors") >= 64, timeout_s=300)

    done = run_index(root, env, embed=True)
    assert done.wait(timeout=600) == 0, (tmp_path / "index.log").read_text()[-3000:]
    check_consistent(root, db)
    con = sqlite3.connect(db)
    try:
        model = con.execute("SELECT DISTINCT model FROM vectors").fetchall()
        assert len(model) == 1
        ids = [r[0] for r in con.execute(
            "SELECT c.id FROM chunks c JOIN vectors v ON v.content_hash = c.content_hash"
        )]  # fmt: skip
        missing = con.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS"
            " (SELECT 1 FROM vectors v WHERE v.content_hash = c.content_hash)"
        ).fetchone()[0]
    finally:
        con.close()
    assert missing == 0, "every chunk has a vector after the restart finished"
    vectors_dir = index_dir(settings, root) / "vectors"
    (ann,) = list(vectors_dir.glob("*.usearch"))
    meta_ndim = __import__("json").loads(ann.with_suffix(".json").read_text())["ndim"]
    index = VectorIndex(ann, ndim=meta_ndim)
    assert index.load(fingerprint(ids)), "ANN file matches the rows"

"""The index store contract, run against every store implementation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mimiverse.index import tokens
from mimiverse.index.hybrid import blend, cap_per_file, fuse
from mimiverse.index.model import Chunk, SourceFile
from mimiverse.index.stores.base import Filters, Hit, IndexStore
from mimiverse.index.stores.sqlite import SqliteIndexStore


@pytest.fixture(params=["sqlite", "sqlite-fts5", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexStore]:
    """Every store; ``sqlite`` answers through tantivy once flushed, ``sqlite-fts5`` never."""
    s: IndexStore
    if request.param == "postgres":
        from mimiverse.index.stores.postgres import PostgresIndexStore

        url = request.getfixturevalue("postgres_url")
        s = PostgresIndexStore(url, project=f"test-{uuid.uuid4()}")
    elif request.param == "sqlite-fts5":
        s = SqliteIndexStore(tmp_path / "index.sqlite3", lexical="fts5")
    else:
        s = SqliteIndexStore(tmp_path / "index.sqlite3")
    yield s
    s.close()


def source(path: str, language: str = "python") -> SourceFile:
    return SourceFile(path, language, 100, 1)


def chunk(path: str, symbol: str, body: str, *, kind: str = "function", line: int = 1) -> Chunk:
    return Chunk(path, line, line + body.count("\n"), "python", kind, symbol, body)


def seed(store: IndexStore) -> None:
    store.replace_file(source("src/users.py"), "h1", [
        chunk("src/users.py", "getUserName", "def getUserName(user):\n    return user.name"),
        chunk("src/users.py", "delete_user", "def delete_user(db, uid):\n    db.drop(uid)", line=4),
    ])  # fmt: skip
    store.replace_file(source("src/parse.py"), "h2", [
        chunk("src/parse.py", "parse_json", "def parse_json(text):\n    return loads(text)"),
    ])  # fmt: skip
    store.replace_file(source("docs/guide.md", "markdown"), "h3", [
        Chunk("docs/guide.md", 1, 3, "markdown", "section", "Users", "# Users\nHow user names work"),
    ])  # fmt: skip


def search(store: IndexStore, query: str, filters: Filters | None = None) -> list[str]:
    store.flush()
    return [h.symbol for h in store.lexical(tokens.query_terms(query), 10, filters or Filters())]


def test_code_aware_tokens() -> None:
    assert tokens.tokens("getUserName") == ["getusername", "get", "user", "name"]
    assert tokens.tokens("HTTPServer_v2") == ["httpserverv2", "http", "server", "v", "2"]
    assert tokens.query_terms("Return the user's name") == ["return", "user", "name"]


def test_compounds_are_split_and_abbreviations_expanded() -> None:
    assert tokens.identifier_tokens("readlines") == ("readlines", "read", "lines")
    assert tokens.identifier_tokens("isdir") == ("isdir", "is", "dir", "directory")
    assert tokens.identifier_tokens("msg_count") == ("msgcount", "msg", "count", "message")
    assert tokens.identifier_tokens("parse") == ("parse",), "a word of its own stays whole"
    assert tokens.split_compound("ison") is None, "too short to split"
    assert tokens.query_terms("the directory") == ["directory"], "queries are not expanded"


def test_lexical_finds_compounds_and_abbreviations(store: IndexStore) -> None:
    store.replace_file(source("src/fs.py"), "h1", [
        chunk("src/fs.py", "isdir", "def isdir(p):\n    return stat(p).mode"),
        chunk("src/fs.py", "readlines", "def readlines(f):\n    return f.split()", line=4),
    ])  # fmt: skip
    assert search(store, "is it a directory")[0] == "isdir"
    assert search(store, "read the lines")[0] == "readlines"


def test_lexical_splits_identifiers_and_weights_symbols(store: IndexStore) -> None:
    seed(store)
    assert search(store, "user name")[0] == "getUserName"
    assert search(store, "getUserName")[0] == "getUserName"
    assert search(store, "parse JSON text")[0] == "parse_json"
    assert search(store, "deleting users")[0] == "delete_user", "porter stemming"


def test_filters(store: IndexStore) -> None:
    seed(store)
    assert search(store, "user", Filters(language="markdown")) == ["Users"]
    assert search(store, "user", Filters(kind="section")) == ["Users"]
    assert set(search(store, "user", Filters(path_glob="src/*.py"))) == {
        "getUserName",
        "delete_user",
    }
    assert search(store, "user", Filters(path_glob="*/guide.md")) == ["Users"]
    ids = store.filtered_ids(Filters(path_glob="src/**"))
    assert len(ids) == 3


def test_replace_is_atomic_and_leaves_no_orphans(store: IndexStore) -> None:
    seed(store)
    before = store.counts("m")
    removed = store.replace_file(source("src/users.py"), "h1b", [
        chunk("src/users.py", "rename_user", "def rename_user(user, name):\n    user.name = name"),
    ])  # fmt: skip
    assert len(removed) == 2
    assert store.counts("m")["chunks"] == before["chunks"] - 1
    assert "getUserName" not in search(store, "getUserName")
    assert search(store, "rename user")[0] == "rename_user"
    assert store.files()["src/users.py"].file_hash == "h1b"


def test_a_failed_replace_keeps_the_old_chunks(store: IndexStore) -> None:
    seed(store)

    class Exploding(list[Chunk]):
        def __iter__(self) -> Iterator[Chunk]:
            yield chunk("src/users.py", "x", "def x(): pass")
            raise RuntimeError("disk full")

    bad = Exploding()
    with pytest.raises(RuntimeError):
        store.replace_file(source("src/users.py"), "h-bad", bad)
    assert set(search(store, "user")) >= {"getUserName", "delete_user"}
    assert store.files()["src/users.py"].file_hash == "h1"


def test_delete_files(store: IndexStore) -> None:
    seed(store)
    removed = store.delete_files(["src/parse.py", "not/there.py"])
    assert len(removed) == 1
    assert "src/parse.py" not in store.files()
    assert search(store, "parse json") == []


def test_vectors_by_content_hash(store: IndexStore) -> None:
    seed(store)
    missing = store.missing_vectors("m", 100)
    assert len(missing) == 4
    assert any(text.startswith("src/users.py\n") for _, text in missing)
    store.put_vectors("m", [(h, [1.0, 0.0, 0.0]) for h, _ in missing[:2]])
    assert len(store.missing_vectors("m", 100)) == 2
    assert store.counts("m")["embedded"] == 2
    assert store.missing_vectors("other-model", 100).__len__() == 4
    rows = list(store.chunk_vectors("m"))
    assert len(rows) == 2 and np.frombuffer(rows[0][1], dtype=np.float32).tolist() == [
        1.0,
        0.0,
        0.0,
    ]
    # An unchanged chunk re-inserted keeps its vector (same content hash).
    users = [chunk("src/users.py", "getUserName", "def getUserName(user):\n    return user.name")]
    before = {h for h, _ in store.missing_vectors("m", 100)}
    store.replace_file(source("src/users.py"), "h1c", users)
    assert {h for h, _ in store.missing_vectors("m", 100)} <= before


def test_meta(store: IndexStore) -> None:
    assert store.get_meta("nope") is None
    store.set_meta("k", "v")
    assert store.get_meta("k") == "v"


def hit(i: int, path: str) -> Hit:
    return Hit(i, path, 1, 2, "python", "function", f"s{i}", "")


def test_rrf_fusion_and_per_file_cap() -> None:
    lexical = [hit(1, "a.py"), hit(2, "a.py"), hit(3, "b.py")]
    semantic = [hit(3, "b.py"), hit(1, "a.py"), hit(4, "c.py")]
    fused = fuse({"lexical": lexical, "semantic": semantic}, limit=10)
    assert [h.chunk_id for h in fused][:2] == [1, 3]
    assert fused[0].ranks == {"lexical": 1, "semantic": 2}
    capped = cap_per_file([hit(i, "same.py") for i in range(5)] + [hit(9, "x.py")], 2, 10)
    assert [h.chunk_id for h in capped] == [0, 1, 9]


def scored(chunk_id: int, path: str, score: float) -> Hit:
    found = hit(chunk_id, path)
    found.score = score
    return found


def test_blend_fills_cosines_and_mixes_normalised_scores() -> None:
    lexical = [scored(1, "a.py", 8.0), scored(2, "b.py", 4.0)]
    semantic = [scored(3, "c.py", 0.9), scored(1, "a.py", 0.5)]
    cosine = {1: 0.5, 2: 0.85, 3: 0.9}  # 2 is lexical-only: its cosine is filled in
    fused = blend(lexical, semantic, cosine, limit=10)
    # 1: .5*(0/.4) + .5*1 = .5; 2: .5*(.35/.4) + .5*.5 = .6875; 3: .5*1 + 0 = .5
    assert [h.chunk_id for h in fused] == [2, 1, 3], "ties keep the lexical list's order"
    assert fused[0].scores == {"lexical": 4.0, "semantic": 0.85}
    assert fused[0].ranks == {"lexical": 2}
    assert fused[0].score == pytest.approx(0.6875)


def test_blend_judges_a_chunk_without_vector_by_its_lexical_part() -> None:
    lexical = [scored(1, "a.py", 10.0), scored(2, "b.py", 5.0)]
    semantic = [scored(3, "c.py", 0.9)]
    fused = blend(lexical, semantic, {3: 0.9}, limit=10)
    assert [h.chunk_id for h in fused] == [1, 2, 3]
    assert fused[0].score == pytest.approx(1.0)
    assert "semantic" not in fused[0].scores


def test_name_coverage() -> None:
    terms = tokens.query_terms("Set the watcher for child processes")
    assert tokens.name_coverage("Policy.set_child_watcher", terms) == 1.0
    assert tokens.name_coverage("get_child", terms) == 0.5
    assert tokens.name_coverage("readlines", tokens.query_terms("read the lines")) == 1.0
    assert tokens.name_coverage("", terms) == 0.0


def test_blend_rewards_hits_whose_name_the_query_spells_out() -> None:
    lexical = [scored(1, "a.py", 5.0), scored(2, "b.py", 5.0)]
    lexical[1].symbol = "parse_config"
    fused = blend(lexical, [], {}, limit=10, query_terms=["parse", "config", "file"])
    assert [h.chunk_id for h in fused] == [2, 1]
    assert fused[0].scores["name"] == 1.0

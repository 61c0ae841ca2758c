"""PostgreSQL-only behaviour: pgvector search in SQL, projects sharing a database, HNSW."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest

from mimiverse.index import tokens
from mimiverse.index.model import Chunk, SourceFile
from mimiverse.index.stores.base import Filters, glob_to_like
from mimiverse.index.stores.postgres import PostgresIndexStore, tsquery

MODEL = "embed-4d"
"""One model has one dimension in a database: tests of other widths use other names."""


@pytest.fixture
def open_store(postgres_url: str) -> Iterator[Callable[..., PostgresIndexStore]]:
    """Open stores on fresh project names (or a given one); all closed after the test."""
    stores: list[PostgresIndexStore] = []

    def factory(project: str = "") -> PostgresIndexStore:
        store = PostgresIndexStore(postgres_url, project=project or f"test-{uuid.uuid4()}")
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


def add(store: PostgresIndexStore, path: str, symbol: str, language: str = "python") -> str:
    """Index one file with one chunk; returns the chunk's content hash."""
    kind = "section" if language == "markdown" else "function"
    chunk = Chunk(path, 1, 2, language, kind, symbol, f"def {symbol}():\n    pass")
    store.replace_file(SourceFile(path, language, 10, 1), f"h-{path}", [chunk])
    return chunk.content_hash


def unit(*xs: float) -> list[float]:
    v = np.asarray(xs, dtype=np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


def seed_vectors(store: PostgresIndexStore) -> dict[str, int]:
    """Four chunks at known directions; returns chunk ids by symbol."""
    vectors = {
        "alpha": unit(1, 0, 0, 0),
        "beta": unit(0.9, 0.1, 0, 0),
        "gamma": unit(0, 1, 0, 0),
        "docs": unit(0.95, 0, 0.05, 0),
    }
    paths = {"alpha": "src/a.py", "beta": "lib/b.py", "gamma": "src/g.py", "docs": "docs/d.md"}
    for symbol, path in paths.items():
        h = add(store, path, symbol, "markdown" if path.endswith(".md") else "python")
        store.put_vectors(MODEL, [(h, vectors[symbol])])
    hits = store.chunks(store.filtered_ids(Filters()))
    return {hit.symbol: i for i, hit in hits.items()}


def test_owns_vectors_and_searches_nearest_first(
    open_store: Callable[..., PostgresIndexStore],
) -> None:
    store = open_store()
    ids = seed_vectors(store)
    assert store.owns_vectors
    found = store.vector_search(MODEL, unit(1, 0, 0, 0), 4, Filters())
    assert found is not None
    assert [i for i, _ in found] == [ids["alpha"], ids["docs"], ids["beta"], ids["gamma"]]
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert found[-1][1] == pytest.approx(0.0, abs=1e-5)
    ((nearest, similarity),) = store.vector_search(MODEL, unit(0, 1, 0, 0), 1, Filters()) or []
    assert nearest == ids["gamma"] and similarity == pytest.approx(1.0, abs=1e-5)
    assert store.vector_search("never-embedded", unit(1, 0, 0, 0), 4, Filters()) == []


def test_vector_search_honours_filters(open_store: Callable[..., PostgresIndexStore]) -> None:
    store = open_store()
    ids = seed_vectors(store)
    query = unit(1, 0, 0, 0)

    def search(filters: Filters, k: int = 10) -> list[int]:
        return [i for i, _ in store.vector_search(MODEL, query, k, filters) or []]

    assert search(Filters(language="markdown")) == [ids["docs"]]
    assert search(Filters(kind="function")) == [ids["alpha"], ids["beta"], ids["gamma"]]
    assert search(Filters(path_glob="src/*.py")) == [ids["alpha"], ids["gamma"]]
    assert search(Filters(path_glob="*/b.py")) == [ids["beta"]]
    assert search(Filters(path_glob="src/*", language="markdown")) == []
    assert search(Filters(), k=2) == [ids["alpha"], ids["docs"]]


def test_filtered_vector_search_fills_k_past_many_other_rows(
    open_store: Callable[..., PostgresIndexStore],
) -> None:
    """HNSW with filters: rare matching rows far from the query still fill k (iterative scan)."""
    store = open_store()
    other = open_store()
    rng = np.random.default_rng(7)
    for s in (store, other):
        rows = []
        for n in range(300):
            h = add(s, f"src/m{n}.py", f"fn{n}")
            rows.append((h, (rng.standard_normal(16) + 4).tolist()))
        s.put_vectors("embed-16d", rows)
    for n in range(5):
        h = add(store, f"docs/d{n}.md", f"doc{n}", "markdown")
        store.put_vectors("embed-16d", [(h, (-rng.standard_normal(16) - 4).tolist())])
    query = [4.0] * 16
    found = store.vector_search("embed-16d", query, 5, Filters(language="markdown")) or []
    hits = store.chunks([i for i, _ in found])
    assert sorted(hits[i].path for i, _ in found) == [f"docs/d{n}.md" for n in range(5)]
    assert len(store.vector_search("embed-16d", query, 50, Filters()) or []) == 50
    # The HNSW top 10 agrees with a brute-force cosine ranking of the same vectors.
    stored = list(store.chunk_vectors("embed-16d"))
    matrix = np.stack([np.frombuffer(b, dtype=np.float32) for _, b in stored])
    q = np.asarray(query, dtype=np.float32)
    cosine = matrix @ q / np.linalg.norm(matrix, axis=1) / np.linalg.norm(q)
    best = [stored[i][0] for i in np.argsort(-cosine)[:10]]
    got = [i for i, _ in store.vector_search("embed-16d", query, 10, Filters()) or []]
    assert len(set(got) & set(best)) >= 9


def test_projects_in_one_database_are_apart(
    open_store: Callable[..., PostgresIndexStore],
) -> None:
    a, b = open_store(), open_store()
    ha = add(a, "src/shared.py", "only_in_a")
    hb = add(b, "src/shared.py", "only_in_b")
    a.put_vectors("embed-2d", [(ha, unit(1, 0))])
    b.put_vectors("embed-2d", [(hb, unit(1, 0))])
    a.set_meta("k", "a")
    assert b.get_meta("k") is None

    a_ids, b_ids = a.filtered_ids(Filters()), b.filtered_ids(Filters())
    assert len(a_ids) == len(b_ids) == 1 and a_ids != b_ids
    assert a.chunks(b_ids) == {}
    assert [h.symbol for h in a.lexical(tokens.query_terms("only in b"), 10, Filters())] == [
        "only_in_a"
    ]
    assert [i for i, _ in a.vector_search("embed-2d", unit(1, 0), 10, Filters()) or []] == a_ids
    assert a.vector_chunk_ids("embed-2d") == a_ids
    assert [i for i, _ in a.chunk_vectors("embed-2d")] == a_ids
    assert [i for i, _ in a.chunk_vectors_by_hash("embed-2d", [ha, hb])] == a_ids
    assert a.counts("embed-2d") == {"files": 1, "chunks": 1, "embedded": 1}

    # Deleting in one project leaves the other's file of the same path alone.
    assert a.delete_files(["src/shared.py"]) == a_ids
    assert b.files().keys() == {"src/shared.py"}
    assert b.counts("embed-2d") == {"files": 1, "chunks": 1, "embedded": 1}

    # Reopening by name finds the same project.
    name = f"test-{uuid.uuid4()}"
    add(open_store(name), "x.py", "reopened")
    assert open_store(name).files().keys() == {"x.py"}


def test_hnsw_index_per_model_and_dimension_is_fixed(
    open_store: Callable[..., PostgresIndexStore], postgres_url: str
) -> None:
    store = open_store()
    h = add(store, "src/a.py", "alpha")
    store.put_vectors("dims-3", [(h, [1.0, 0.0, 0.0])])
    store.put_vectors("dims-5", [(h, [1.0, 0.0, 0.0, 0.0, 0.0])])
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT m.model, m.dim, i.indexdef FROM mimi_vector_models m"
            " JOIN pg_indexes i ON i.tablename = 'mimi_vectors_' || m.id"
            " WHERE m.model LIKE 'dims-%' AND i.indexdef LIKE '%hnsw%'"
        ).fetchall()
    assert sorted((model, dim) for model, dim, _ in rows) == [("dims-3", 3), ("dims-5", 5)]
    assert all("vector_cosine_ops" in indexdef for _, _, indexdef in rows)
    with pytest.raises(ValueError, match="3-dimensional"):
        store.put_vectors("dims-3", [(h, [1.0, 0.0])])
    with pytest.raises(ValueError, match="3-dimensional"):
        store.vector_search("dims-3", [1.0, 0.0], 1, Filters())


def test_lexical_terms_are_never_query_syntax(
    open_store: Callable[..., PostgresIndexStore],
) -> None:
    store = open_store()
    add(store, "src/a.py", "parse_json")
    for term in ["'", "\\", "a:b", "!", "&|", "(", "x:*", "''", " ", "é"]:
        assert store.lexical([term], 5, Filters()) == []
    assert [h.symbol for h in store.lexical(["it's", "json"], 5, Filters())] == ["parse_json"]
    assert tsquery(["a'b", "c\\d", ""]) == "'a''b' | 'c\\\\d'"


def test_path_glob_prefix_escapes_like_syntax(
    open_store: Callable[..., PostgresIndexStore],
) -> None:
    assert glob_to_like("src/my_dir%/*.py") == "src/my\\_dir\\%/%"
    assert glob_to_like("*.py") is None
    store = open_store()
    add(store, "src/my_dir/a.py", "underscored")
    add(store, "src/myXdir/b.py", "lookalike")
    ids = store.filtered_ids(Filters(path_glob="src/my_dir/*.py"))
    assert [h.symbol for h in store.chunks(ids).values()] == ["underscored"]


def test_nul_characters_are_stored(open_store: Callable[..., PostgresIndexStore]) -> None:
    store = open_store()
    chunk = Chunk("src/nul.py", 1, 1, "python", "module", "", "x = 'a\x00b'  # nulled")
    store.replace_file(SourceFile("src/nul.py", "python", 10, 1), "h", [chunk])
    (hit,) = store.lexical(["nulled"], 5, Filters())
    assert "\x00" not in hit.content and hit.content.startswith("x = 'a")


def test_file_languages_and_chunks_of(open_store: Callable[..., PostgresIndexStore]) -> None:
    store = open_store()
    add(store, "docs/[draft]*.md", "Draft", "markdown")
    add(store, "docs/d.md", "Other", "markdown")
    body = [Chunk("src/a.py", n, n, "python", "function", f"f{n}", f"f{n}") for n in (9, 1, 5)]
    store.replace_file(SourceFile("src/a.py", "python", 10, 1), "h", body)
    assert store.file_languages() == {
        "docs/[draft]*.md": "markdown",
        "docs/d.md": "markdown",
        "src/a.py": "python",
    }
    assert [h.symbol for h in store.chunks_of("src/a.py")] == ["f1", "f5", "f9"]
    assert [h.symbol for h in store.chunks_of("docs/[draft]*.md")] == ["Draft"]
    assert open_store().file_languages() == {}

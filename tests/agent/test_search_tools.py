"""search_code, find_symbol and find_references over a real (lexical) index, and without one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.tools.base import Registry, ToolContext
from mimiverse.agent.tools.search import FindReferences, FindSymbol, SearchCode, text_search
from mimiverse.index.indexer import Indexer
from mimiverse.index.stores.sqlite import SqliteIndexStore
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace

CALC = '''"""Arithmetic helpers."""


def add(a, b):
    """Sum of two numbers."""
    return a + b


def subtract(a, b):
    return a - b


class Calculator:
    def total(self, xs):
        result = 0
        for x in xs:
            result = add(result, x)
        return result
'''
MAIN = """from calc import add, Calculator


def main():
    print(add(1, 2))
    print(Calculator().total([1, 2, 3]))
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "main.py").write_text(MAIN)
    (root / "NOTES.md").write_text("# Notes\n\nThe totals are summed by the calculator.\n")
    (root / ".gitignore").write_text("secret.py\n")
    (root / "secret.py").write_text("def subtract(): pass\n")
    return root


@pytest.fixture
def indexer(root: Path, tmp_path: Path) -> Iterator[Indexer]:
    indexer = Indexer(root, SqliteIndexStore(tmp_path / "index.sqlite3"), tmp_path / "vectors")
    indexer.sync()
    yield indexer
    indexer.store.close()


@pytest.fixture
def make_ctx(
    root: Path, make_settings: Callable[..., Settings]
) -> Callable[[Indexer | None], ToolContext]:
    def make(indexer: Indexer | None) -> ToolContext:
        workspace = Workspace(root)
        return ToolContext(
            workspace=workspace,
            settings=make_settings(project_root=root),
            changes=ChangeManager(workspace),
            indexer=lambda: indexer,
        )

    return make


@pytest.fixture
def registry() -> Registry:
    return Registry([SearchCode(), FindSymbol(), FindReferences()])


async def test_search_code_over_the_index(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext], indexer: Indexer
) -> None:
    result = await registry.call("search_code", {"query": "subtract"}, make_ctx(indexer))
    assert result.ok
    lines = result.text.splitlines()
    assert lines[0] == "1 result for 'subtract' (hybrid search):"
    # The chunker keeps small neighbours together: add and subtract are one chunk.
    assert lines[1] == "1. calc.py:1-10  function add"
    assert lines[2] == '      1 | """Arithmetic helpers."""', "a chunk's first line"
    assert lines[3:] == ["       …", "      9 | def subtract(a, b):"], "then matching lines"
    assert result.data["hits"][0]["start_line"] == 1
    assert "secret.py" not in result.text, "ignored files are not indexed"
    assert not SearchCode.mutates and not FindSymbol.mutates and not FindReferences.mutates


async def test_search_code_snippets_show_matching_lines(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext], indexer: Indexer
) -> None:
    result = await registry.call(
        "search_code", {"query": "total result", "limit": 1, "mode": "lexical"}, make_ctx(indexer)
    )
    assert result.ok
    assert result.text.splitlines()[1:] == [
        "1. calc.py:13-18  class Calculator",
        "     13 | class Calculator:",
        "     14 |     def total(self, xs):",
        "     15 |         result = 0",
        "       …",
        "     17 |             result = add(result, x)",
    ]
    assert len(result.data["hits"]) == 1


async def test_search_code_without_an_index_scans_the_files(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext]
) -> None:
    result = await registry.call("search_code", {"query": "Calculator().total"}, make_ctx(None))
    assert result.ok
    lines = result.text.splitlines()
    assert (
        lines[0] == "(no code index is available yet, so this is a plain text search of the files)"
    )
    assert lines[2] == "1. main.py:5-6"
    assert "      6 > " in result.text
    assert result.data["fallback"]

    words = await registry.call("search_code", {"query": "subtract numbers"}, make_ctx(None))
    paths = [h["path"] for h in words.data["hits"]]
    assert "calc.py" in paths and "secret.py" not in paths

    none = await registry.call("search_code", {"query": "zebra crossing"}, make_ctx(None))
    assert none.ok and "no file contains" in none.text


async def test_search_code_text_mode_and_an_empty_index(
    registry: Registry,
    make_ctx: Callable[[Indexer | None], ToolContext],
    root: Path,
    tmp_path: Path,
) -> None:
    fresh = Indexer(root, SqliteIndexStore(tmp_path / "empty.sqlite3"), tmp_path / "v2")
    try:
        result = await registry.call("search_code", {"query": "a - b"}, make_ctx(fresh))
        assert "the code index is empty" in result.text
        assert "calc.py:9-11" in result.text
    finally:
        fresh.store.close()
    exact = await registry.call("search_code", {"query": "a + b", "mode": "text"}, make_ctx(None))
    assert exact.text.splitlines()[0] == "1 text match for 'a + b':", "no fallback note"


async def test_search_code_semantic_without_vectors_says_what_to_do(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext], indexer: Indexer
) -> None:
    result = await registry.call(
        "search_code", {"query": "sum", "mode": "semantic"}, make_ctx(indexer)
    )
    assert not result.ok
    assert "mode=lexical" in result.text


async def test_search_code_bad_arguments_name_the_field(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext]
) -> None:
    ctx = make_ctx(None)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"query": ""}, "query"),
        ({}, "query"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "path": "src"}, "path"),
    ]
    for args, field in cases:
        result = await registry.call("search_code", args, ctx)
        assert not result.ok, args
        assert field in result.text and "invalid arguments for search_code" in result.text
    blank = await registry.call("search_code", {"query": "   "}, ctx)
    assert not blank.ok and "blank" in blank.text


@pytest.fixture(params=["index", "no index"])
def symbol_ctx(
    request: pytest.FixtureRequest,
    make_ctx: Callable[[Indexer | None], ToolContext],
    indexer: Indexer,
) -> ToolContext:
    """A context with the code index, and one without (the symbol tools parse files then)."""
    return make_ctx(indexer if request.param == "index" else None)


async def test_find_symbol(registry: Registry, symbol_ctx: ToolContext) -> None:
    result = await registry.call("find_symbol", {"name": "add"}, symbol_ctx)
    assert result.ok
    body = result.text.splitlines()
    if symbol_ctx.indexer() is None:
        assert body.pop(0).startswith("(no code index")
    assert body == ["1 definition of 'add':", "calc.py:4  function  def add(a, b):"]
    assert result.data["definitions"] == [
        {"path": "calc.py", "line": 4, "kind": "function", "signature": "def add(a, b):"}
    ]
    method = await registry.call("find_symbol", {"name": "Calculator.total"}, symbol_ctx)
    assert "calc.py:14" in method.text
    missing = await registry.call("find_symbol", {"name": "multiply"}, symbol_ctx)
    assert missing.ok and "no definition of 'multiply'" in missing.text


async def test_find_references(registry: Registry, symbol_ctx: ToolContext) -> None:
    result = await registry.call("find_references", {"name": "add"}, symbol_ctx)
    assert result.ok
    body = [line for line in result.text.splitlines() if not line.startswith("(")]
    assert body == [
        "3 references to 'add':",
        "calc.py:17  result = add(result, x)",
        "main.py:1  from calc import add, Calculator",
        "main.py:5  print(add(1, 2))",
    ]
    assert result.data["references"][0] == {
        "path": "calc.py",
        "line": 17,
        "kind": "call",
        "text": "            result = add(result, x)",
    }
    none = await registry.call("find_references", {"name": "subtract"}, symbol_ctx)
    assert none.ok and "no references to 'subtract'" in none.text


async def test_symbol_tools_bad_arguments(
    registry: Registry, make_ctx: Callable[[Indexer | None], ToolContext]
) -> None:
    ctx = make_ctx(None)
    for tool in ("find_symbol", "find_references"):
        for args in ({}, {"name": ""}, {"name": 3}, {"symbol": "add"}):
            result = await registry.call(tool, args, ctx)
            assert not result.ok, (tool, args)
            assert f"invalid arguments for {tool}" in result.text
            assert "name" in result.text
        blank = await registry.call(tool, {"name": "``"}, ctx)
        assert not blank.ok and "blank" in blank.text


def test_text_search_ranks_whole_query_matches_first(root: Path) -> None:
    hits = text_search(root, "result = add", 5, 1_000_000)
    assert (hits[0].path, hits[0].line) == ("calc.py", 17)
    assert hits[0].context == (
        "        for x in xs:",
        "            result = add(result, x)",
        "        return result",
    )
    assert all(h.path != "secret.py" for h in hits)

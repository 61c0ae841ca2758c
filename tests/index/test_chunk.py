"""Chunking: definitions per language, splitting, merging, sections, windows, properties."""

from __future__ import annotations

import sysconfig
import time
from itertools import pairwise
from pathlib import Path

import pytest

from mimiverse.index import chunk as chunk_module
from mimiverse.index.chunk import (
    CALLABLES,
    chunk_file,
    definitions_query,
    parse,
    tags_query,
)
from mimiverse.index.languages import GRAMMARS, TAG_QUERIES, language_for
from mimiverse.index.model import Chunk
from mimiverse.index.scan import read_text

FIXTURES = Path(__file__).parent.parent / "fixtures" / "languages"
ALL_FIXTURES = sorted(p for p in FIXTURES.rglob("*") if p.is_file())


def assert_well_formed(chunks: list[Chunk], text: str, path: str = "") -> None:
    """Exact content, every non-blank line covered, nothing empty, in order."""
    lines = text.split("\n")
    covered: set[int] = set()
    for chunk in chunks:
        where = f"{path}:{chunk.start_line}-{chunk.end_line}"
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines), where
        assert chunk.content == "\n".join(lines[chunk.start_line - 1 : chunk.end_line]), where
        assert chunk.content.strip(), where
        assert chunk.content_hash, where
        assert chunk.path == path or not path
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    missing = [n for n, line in enumerate(lines, 1) if line.strip() and n not in covered]
    assert not missing, f"{path}: lines {missing[:10]} are in no chunk"
    starts = [c.start_line for c in chunks]
    assert starts == sorted(starts)


def limit(chunk: Chunk, max_lines: int) -> int:
    """The longest a chunk may be: functions and methods may run half again as long."""
    return max_lines * 3 // 2 if chunk.kind in CALLABLES else max_lines


def outline(chunks: list[Chunk]) -> list[tuple[str, str, int, int]]:
    return [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]


def chunk_fixture(rel: str, **options: int) -> list[Chunk]:
    path = FIXTURES / rel
    language = language_for(rel)
    assert language is not None
    chunks = chunk_file(rel, read_text(path), language, **options)
    assert_well_formed(chunks, read_text(path), rel)
    return chunks


# Default limits: classes are cut at their members (small neighbours merged back), one
# chunk per top-level definition.
EXPECTED_DEFAULT = {
    "c/buffer.c": [
        ("module", "", 1, 5),
        ("struct", "buffer", 7, 11),
        ("function", "grow", 13, 26),
        ("function", "buffer_append", 28, 36),
        ("function", "buffer_steal", 38, 44),
    ],
    "cpp/matrix.cpp": [
        ("module", "", 1, 6),
        ("class", "Matrix", 8, 11),
        ("method", "Matrix.at", 13, 18),
        ("class", "Matrix", 20, 26),
        ("method", "Matrix.multiply", 28, 42),
    ],
    "go/store.go": [
        ("module", "", 1, 10),
        ("struct", "Store", 12, 16),
        ("function", "New", 18, 21),
        ("method", "Store.Get", 23, 32),
        ("method", "Store.Set", 34, 39),
        ("interface", "Getter", 41, 44),
    ],
    "java/Library.java": [
        ("module", "", 1, 5),
        ("class", "Library", 7, 10),
        ("method", "Library.Library", 12, 18),
        ("method", "Library.find", 20, 28),
        ("method", "Library.toString", 30, 34),
        ("interface", "Lendable", 36, 40),
    ],
    "javascript/cart.js": [
        ("module", "", 1, 4),
        ("class", "Cart", 6, 10),
        ("method", "Cart.add", 12, 20),
        ("method", "Cart.total", 22, 26),
        ("function", "describe", 28, 32),
        ("function", "isEmpty", 34, 41),
    ],
    "python/inventory.py": [
        ("module", "", 1, 8),
        ("class", "Item", 11, 18),
        ("method", "Item.restock", 20, 24),
        ("method", "Item.empty", 26, 28),
        ("class", "Inventory", 31, 39),
        ("method", "Inventory.take", 41, 47),
        ("method", "Inventory.to_json", 49, 53),
        ("function", "load", 56, 65),
    ],
    "rust/shapes.rs": [
        ("trait", "Shape", 1, 9),
        ("struct", "Circle", 11, 14),
        ("impl", "Circle", 16, 24),
        ("impl", "Circle", 26, 30),
        ("enum", "Kind", 32, 35),
        ("function", "total_area", 37, 44),
    ],
    "tsx/Counter.tsx": [
        ("interface", "CounterProps", 1, 6),
        ("function", "Counter", 8, 15),
        ("function", "Reset", 17, 23),
    ],
    "typescript/queue.ts": [
        ("interface", "Job", 1, 10),
        ("enum", "Priority", 12, 16),
        ("class", "JobQueue", 18, 23),
        ("method", "JobQueue.push", 25, 28),
        ("method", "JobQueue.drain", 30, 46),
        ("function", "createJob", 48, 50),
    ],
    "c_sharp/Account.cs": [
        ("module", "", 1, 5),
        ("class", "Account", 6, 9),
        ("method", "Account.Account", 11, 18),
        ("method", "Account.Deposit", 20, 28),
        ("method", "Account.TryWithdraw", 30, 40),
        ("interface", "IAuditor", 42, 46),
    ],
    "ruby/greeter.rb": [
        ("class", "Greetings.Greeter", 1, 8),
        ("method", "Greetings.Greeter.initialize", 10, 13),
        ("method", "Greetings.Greeter.greet", 15, 21),
        ("method", "Greetings.Greeter.supported?", 23, 26),
        ("method", "Greetings.greet_all", 28, 31),
    ],
    "php/UserRepository.php": [
        ("module", "", 1, 7),
        ("interface", "Repository", 9, 12),
        ("class", "UserRepository", 14, 18),
        ("method", "UserRepository.find", 20, 26),
        ("method", "UserRepository.count", 28, 32),
        ("function", "make_repository", 34, 37),
    ],
}


@pytest.mark.parametrize("rel", sorted(EXPECTED_DEFAULT))
def test_definitions_per_language(rel: str) -> None:
    assert outline(chunk_fixture(rel)) == EXPECTED_DEFAULT[rel]


# queue.ts's 16-line last method cannot take in the class's closing brace at this limit.
@pytest.mark.parametrize("rel", sorted(set(EXPECTED_DEFAULT) - {"typescript/queue.ts"}))
def test_a_smaller_line_limit_keeps_the_member_cut(rel: str) -> None:
    """These fixtures' definitions fit in 16 lines: the limit changes nothing."""
    assert outline(chunk_fixture(rel, max_lines=16)) == EXPECTED_DEFAULT[rel]


@pytest.mark.parametrize("rel", [str(p.relative_to(FIXTURES)) for p in ALL_FIXTURES])
@pytest.mark.parametrize("max_lines", [3, 7, 16, 80])
def test_every_fixture_is_covered_exactly(rel: str, max_lines: int) -> None:
    chunks = chunk_fixture(rel, max_lines=max_lines)
    assert chunks
    assert all(c.end_line - c.start_line + 1 <= limit(c, max_lines) for c in chunks)
    assert all(c.language == language_for(rel) for c in chunks)


def test_method_context_has_class_header_and_signature() -> None:
    chunks = {c.symbol: c for c in chunk_fixture("python/inventory.py", max_lines=16)}
    take = chunks["Inventory.take"]
    assert take.context == (
        "python/inventory.py\nclass Inventory:\ndef take(self, sku: str, amount: int = 1) -> Item:"
    )
    assert chunks["load"].context == "python/inventory.py"
    go = {c.symbol: c for c in chunk_fixture("go/store.go")}
    assert go["Store.Get"].context.endswith("func (s *Store) Get(key string) (string, error) {")


def test_doc_comments_and_decorators_stay_with_their_definition() -> None:
    java = {c.symbol: c for c in chunk_fixture("java/Library.java", max_lines=16)}
    assert java["Library.find"].content.lstrip().startswith("/** Find a book")
    assert java["Library.toString"].content.lstrip().startswith("@Override")
    rust = {(c.kind, c.symbol): c for c in chunk_fixture("rust/shapes.rs")}
    assert rust["struct", "Circle"].content.startswith("#[derive(Debug, Clone, Copy)]")
    assert rust["function", "total_area"].content.startswith("/// Sum of the areas")
    python = {c.symbol: c for c in chunk_fixture("python/inventory.py")}
    assert python["Item"].content.startswith("@dataclass\nclass Item:")


def test_large_class_is_not_duplicated() -> None:
    body = "\n".join(
        f"    def method_{i}(self, value):\n"
        f'        """Method {i}."""\n'
        f"        total = value + {i}\n"
        f"        total *= 2\n"
        f"        return total\n"
        for i in range(30)
    )
    text = f'class Big:\n    """A large class."""\n\n    LIMIT = 3\n\n{body}'
    chunks = chunk_file("big.py", text, "python")
    assert_well_formed(chunks, text, "big.py")
    assert outline(chunks[:1]) == [("class", "Big", 1, 4)]
    methods = [c for c in chunks if c.kind == "method"]
    assert [c.symbol for c in methods] == [f"Big.method_{i}" for i in range(30)]
    lines_indexed = sum(c.end_line - c.start_line + 1 for c in chunks)
    assert lines_indexed <= len(text.split("\n"))


def test_function_up_to_half_again_the_limit_stays_whole() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    text = f"def long(a):\n{body}\n    return a\n"
    chunks = chunk_file("long.py", text, "python", max_lines=50)
    assert outline(chunks) == [("function", "long", 1, 72)]


def test_window_cut_prefers_a_blank_line_after_the_balanced_point() -> None:
    rows = [f"    x{i} = {i}" for i in range(150)]
    rows.insert(80, "")  # line 82: the balanced cut is line 77, the blank one 5 lines later
    text = "def huge(a):\n" + "\n".join(rows) + "\n"
    chunks = chunk_file("huge.py", text, "python", max_lines=100)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 81), (83, 152)]


def test_oversized_function_is_split_keeping_its_signature() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(200))
    text = f"import os\n\n\ndef huge(a, b):\n{body}\n    return a\n"
    chunks = chunk_file("huge.py", text, "python", max_lines=50)
    assert_well_formed(chunks, text, "huge.py")
    parts = [c for c in chunks if c.symbol == "huge"]
    assert len(parts) == 5
    assert all(c.kind == "function" for c in parts)
    assert all(c.end_line - c.start_line + 1 <= 50 for c in parts)
    assert all(c.context == "huge.py\ndef huge(a, b):" for c in parts)
    assert all(a.end_line < b.start_line for a, b in pairwise(parts))


def test_small_neighbours_are_merged() -> None:
    text = (
        "import os\n"
        "\n"
        "def one(): return 1\n"
        "def two(): return 2\n"
        "\n"
        "def three():\n"
        "    return 3\n"
        "\n"
        "X = 4\n"
        "\n"
        "def big():\n" + "".join(f"    y = {i}\n" for i in range(10)) + "\n"
        "print(big())\n"
    )
    chunks = chunk_file("small.py", text, "python")
    assert_well_formed(chunks, text, "small.py")
    assert outline(chunks) == [
        ("function", "three", 1, 9),
        ("function", "big", 11, 23),
    ]
    assert not [c for c in chunks if c.start_line == c.end_line]


def test_small_definition_keeps_its_own_chunk_next_to_a_large_one() -> None:
    big = "def big():\n" + "".join(f"    y = {i}\n" for i in range(10))
    text = f"{big}\n\ndef tiny(a):\n    return a\n"
    chunks = chunk_file("t.py", text, "python")
    assert outline(chunks) == [("function", "big", 1, 11), ("function", "tiny", 14, 15)]


def test_markdown_sections() -> None:
    chunks = chunk_fixture("markdown/guide.md")
    assert outline(chunks) == [
        ("section", "Mimiverse guide", 1, 4),
        ("section", "Install", 6, 19),
        ("section", "Usage", 21, 29),
    ]
    install = chunks[1]
    assert "# this is not a heading" in install.content  # fenced code never splits
    assert install.context == "markdown/guide.md\nMimiverse guide"
    text = "---\ntitle: x\n---\n\n# A\n\n" + "".join(f"line {i}\n" for i in range(12)) + "\n## B\n"
    text += "".join(f"more {i}\n" for i in range(12))
    chunks = chunk_file("doc.md", text, "markdown")
    assert_well_formed(chunks, text, "doc.md")
    assert [(c.symbol, c.context) for c in chunks] == [("A", "doc.md"), ("B", "doc.md\nA")]


def test_oversized_markdown_section_is_windowed_with_heading_context() -> None:
    text = "# Title\n\n" + "".join(f"para {i}\n" for i in range(100))
    chunks = chunk_file("long.md", text, "markdown", max_lines=30)
    assert_well_formed(chunks, text, "long.md")
    assert len(chunks) == 4
    assert all(c.symbol == "Title" and c.context == "long.md\n# Title" for c in chunks)


def test_window_fallback_for_unknown_and_grammarless_languages() -> None:
    text = "".join(f"line {i}\n" if i % 20 else "\n" for i in range(150))
    chunks = chunk_file("notes.txt", text, "text")
    assert_well_formed(chunks, text, "notes.txt")
    assert {c.kind for c in chunks} == {"window"}
    assert {c.symbol for c in chunks} == {""}
    assert all(c.end_line - c.start_line + 1 <= 60 for c in chunks)
    spans = [(c.start_line, c.end_line) for c in chunks]
    assert all(a[1] < b[0] for a, b in pairwise(spans))  # no overlap
    kotlin = chunk_fixture("kotlin/Point.kt")
    assert outline(kotlin) == [("window", "", 1, 13)]


def test_parse_failure_falls_back_to_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(language: str, source: bytes) -> None:
        raise RuntimeError("grammar exploded")

    monkeypatch.setattr(chunk_module, "parse", broken)
    text = read_text(FIXTURES / "python" / "inventory.py")
    chunks = chunk_file("inventory.py", text, "python")
    assert_well_formed(chunks, text, "inventory.py")
    assert {c.kind for c in chunks} == {"window"}


def test_syntax_errors_still_cover_everything() -> None:
    text = "def ok():\n    return 1\n\ndef broken(:\n    pass\n\nclass C:\n    def m(self):\n        return [\n"
    chunks = chunk_file("bad.py", text, "python", max_lines=5)
    assert_well_formed(chunks, text, "bad.py")


def test_awkward_text() -> None:
    assert chunk_file("empty.py", "", "python") == []
    assert chunk_file("blank.py", "\n\n   \n", "python") == []
    crlf = "def f():\r\n    return 1\r\n\r\nclass A:\r\n    pass\r\n"
    assert_well_formed(chunk_file("crlf.py", crlf, "python"), crlf, "crlf.py")
    form_feed = "def f():\n    return 1\n\x0c\ndef g():\n    return 2\n"
    assert_well_formed(chunk_file("ff.py", form_feed, "python"), form_feed, "ff.py")
    one_line = "int a(){return 1;} int b(){return 2;}"
    chunks = chunk_file("one.c", one_line, "c")
    assert_well_formed(chunks, one_line, "one.c")
    assert len(chunks) == 1
    replaced = "def f():\n    return '\ufffd\ufffd'\n"
    assert_well_formed(chunk_file("r.py", replaced, "python"), replaced, "r.py")


@pytest.mark.parametrize("language", sorted(GRAMMARS))
def test_bundled_grammars_parse_offline(language: str) -> None:
    tree = parse(language, b"x = 1\n")
    assert tree is not None
    assert tree.root_node.end_byte == 6


@pytest.mark.parametrize("language", sorted(TAG_QUERIES))
def test_tag_queries_compile_with_definitions_and_references(language: str) -> None:
    query = tags_query(language)
    assert query is not None and definitions_query(language) is not None
    names = {query.capture_name(i) for i in range(query.capture_count)}
    assert any(n.startswith("definition.") for n in names)
    assert any(n.startswith("name.definition.") for n in names)
    assert "reference.call" in names and "name.reference.call" in names


def test_reference_captures_find_calls() -> None:
    from tree_sitter import QueryCursor

    text = read_text(FIXTURES / "python" / "inventory.py").encode()
    tree = parse("python", text)
    query = tags_query("python")
    assert tree is not None and query is not None
    captures = QueryCursor(query).captures(tree.root_node)
    calls = {(n.text or b"").decode() for n in captures["name.reference.call"]}
    assert {"dumps", "loads", "Inventory", "add", "Item"} <= calls


def test_real_stdlib_files_keep_coverage_and_exactness() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("**/*.py") if "site-packages" not in p.parts)
    sample = files[:: max(1, len(files) // 200)][:200]
    assert len(sample) >= 100
    started, count = time.perf_counter(), 0
    for path in sample:
        rel = path.relative_to(stdlib).as_posix()
        text = read_text(path)
        chunks = chunk_file(rel, text, "python")
        assert_well_formed(chunks, text, rel)
        assert all(c.end_line - c.start_line + 1 <= limit(c, 80) for c in chunks)
        count += len(chunks)
    elapsed = time.perf_counter() - started
    print(f"stdlib sample: {len(sample)} files, {count} chunks, {elapsed:.2f}s")
    assert count > len(sample)

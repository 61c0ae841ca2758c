"""The search dataset (CodeSearchNet method, see BENCHMARKS.md): a docstring-free copy of
the CPython stdlib (or of the installed NumPy) and docstring → function queries, cached per
Python version (and NumPy version).

Corpus: every ``*.py`` of ``sysconfig.get_paths()["stdlib"]`` except ``site-packages``/
``dist-packages``, test folders (``test``, ``tests``, ``idle_test``: this covers
``idlelib`` and ``tkinter`` tests, ``lib2to3/tests`` and its data, ``unittest/test``,
``ctypes/test``, ``distutils/tests``), ``test_*.py`` files and ``__pycache__``. Only
``.py`` files are copied (no data files). ``encodings/`` stays: it is real code, and the
duplicate-code rule keeps its near-identical codec methods out of the queries. Files the
indexer's own scan refuses (e.g. the stdlib ``venv/`` package, whose folder name the scan
always skips) are left out of the copy, so every method indexes the same files.
The NumPy corpus (``corpus="numpy"``) is the installed package's ``*.py`` under the same
rules, without ``conftest.py`` and ``_core/_add_newdocs*.py`` (docstrings of C objects,
passed as string arguments: stripping would not remove them); ``distutils``/``f2py`` stay.

Stripping: every docstring (module, class, function) is found with ``ast`` and its
characters are replaced by spaces, line breaks kept, so every other line keeps its number;
a body left empty gets ``...`` in the docstring's place. The copy is checked to parse and
to have no docstring left (removing one can promote the next string statement: we repeat).

Queries: the first sentence of a function's (or method's, nested ones included) original
docstring (``inspect.cleandoc``; the first paragraph, cut after the first ``.``/``!``/``?``
followed by a space); target = the function, from its ``def`` line to its last line.
Dropped: queries under 3 words, starting with "See"/"Deprecated", dunder and test
functions (name starts with ``test``/``Test``), bodies (after the docstring) under 3
non-blank lines, query texts that occur more than once, and functions whose code occurs
more than once in the corpus (both occurrences: the target would be ambiguous). Seeded
(``SEED``): files are shuffled, at most 5 queries are drawn per file, 1000 in all.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import random
import re
import shutil
import sys
import sysconfig
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

SEED = 20261121
MAX_QUERIES = 1000
PER_FILE = 5
VERSION = "1"
"""Bump when the corpus or the query rules change (invalidates the cache)."""

SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
)
NUMPY_SKIP_FILES = frozenset({"conftest.py", "_add_newdocs.py", "_add_newdocs_scalars.py"})
"""Pytest setup, and NumPy's docstrings of C objects: their text is passed as string
arguments (``add_newdoc(…)``), not docstrings, so stripping would leave them in."""
CORPORA = ("stdlib", "numpy")
_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s)")
_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Query:
    """One docstring → function query."""

    qid: int
    text: str
    path: str
    """Relative to the corpus root, forward slashes."""
    symbol: str
    def_line: int
    """1-based line of the ``def`` keyword (decorators are above it)."""
    end_line: int


@dataclass
class Dataset:
    """The stripped corpus on disk and its queries."""

    root: Path
    queries: list[Query]
    files: list[str]
    stats: dict[str, int]


# --- stripping ----------------------------------------------------------------------------


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr):
        return None
    value = body[0].value
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return body[0]
    return None


def _char_col(line: str, byte_col: int) -> int:
    """``ast`` columns are UTF-8 byte offsets; this is the character offset."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def _blank_span(lines: list[str], expr: ast.Expr, placeholder: str) -> None:
    """Replace the expression's characters by spaces (``placeholder`` at its start)."""
    first, last = expr.lineno - 1, (expr.end_lineno or expr.lineno) - 1
    start = _char_col(lines[first], expr.col_offset)
    end = _char_col(lines[last], expr.end_col_offset or 0)
    for row in range(first, last + 1):
        line = lines[row]
        a = start if row == first else 0
        b = end if row == last else len(line)
        lines[row] = line[:a] + " " * (b - a) + line[b:]
    line = lines[first]
    lines[first] = line[:start] + placeholder + line[start + len(placeholder) :]
    for row in range(first, last + 1):
        if not lines[row].strip():
            lines[row] = ""


def strip_docstrings(text: str) -> str:
    """``text`` with every docstring blanked out; line numbers unchanged; still parses."""
    for _ in range(5):
        tree = ast.parse(text)
        found = [
            (node, expr)
            for node in ast.walk(tree)
            if isinstance(node, _DOC_OWNERS) and (expr := _docstring_node(node)) is not None
        ]
        if not found:
            return text
        lines = text.split("\n")
        for node, expr in found:
            body = node.body
            sole = len(body) == 1 and not isinstance(node, ast.Module)
            _blank_span(lines, expr, "..." if sole else "")
        # A trailing "; stmt" after a blanked docstring would start the line with ";".
        text = "\n".join(re.sub(r"^(\s*);\s*", r"\1", line) for line in lines)
    raise ValueError("docstrings keep reappearing")


def has_docstring(tree: ast.AST) -> bool:
    """Whether any module, class or function in ``tree`` has a docstring."""
    return any(
        isinstance(node, _DOC_OWNERS) and ast.get_docstring(node, clean=False) is not None
        for node in ast.walk(tree)
    )


# --- queries ------------------------------------------------------------------------------


def first_sentence(doc: str) -> str:
    """The first sentence of a cleaned docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(doc).strip().split("\n\n", 1)[0]
    flat = " ".join(paragraph.split())
    match = _SENTENCE.match(flat)
    return (match.group(1) if match else flat).strip()


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _code_key(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    body = [line.strip() for line in lines[node.lineno - 1 : node.end_lineno] if line.strip()]
    return hashlib.sha1("\n".join(body).encode()).hexdigest()


def _body_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    stmts = node.body[1:] if _docstring_node(node) is not None else node.body
    if not stmts:
        return 0
    span = lines[stmts[0].lineno - 1 : node.end_lineno]
    return sum(1 for line in span if line.strip())


def _is_test(name: str) -> bool:
    return name.startswith(("test", "Test"))


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


@dataclass
class _Candidate:
    path: str
    node_name: str
    text: str
    def_line: int
    end_line: int
    code: str


def _candidates(
    rel: str, original: str, stripped: str, stats: Counter[str]
) -> tuple[list[_Candidate], list[str]]:
    """Candidate queries of one file, and the code keys of all its functions."""
    tree = ast.parse(original)
    lines = stripped.split("\n")
    out: list[_Candidate] = []
    keys: list[str] = []
    for node in _functions(tree):
        key = _code_key(lines, node)
        keys.append(key)
        doc = ast.get_docstring(node, clean=False)
        if doc is None:
            continue
        stats["functions_with_docstring"] += 1
        text = first_sentence(doc)
        if len(text.split()) < 3:
            stats["dropped_short_docstring"] += 1
        elif re.match(r"(see|deprecated)\b", text, re.IGNORECASE):
            stats["dropped_see_deprecated"] += 1
        elif _is_dunder(node.name) or _is_test(node.name):
            stats["dropped_dunder_or_test"] += 1
        elif _body_lines(lines, node) < 3:
            stats["dropped_short_body"] += 1
        else:
            out.append(_Candidate(rel, node.name, text, node.lineno, node.end_lineno or 0, key))
    return out, keys


# --- building and caching -------------------------------------------------------------------


def stdlib_sources(root: Path) -> list[Path]:
    """The stdlib ``.py`` files that make the corpus, in a stable order."""
    return python_sources(root, SKIP_DIRS)


def python_sources(root: Path, skip: frozenset[str]) -> list[Path]:
    """``.py`` files under ``root`` outside folders named in ``skip``, without
    ``test_*.py``, sorted by relative path."""
    files = [
        p
        for p in root.rglob("*.py")
        if not (skip & set(p.relative_to(root).parts[:-1]))
        and not p.name.startswith("test_")
        and p.is_file()
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def corpus_sources(corpus: str) -> tuple[Path, list[Path]]:
    """The installed source root of ``corpus`` (``stdlib``/``numpy``) and its files."""
    if corpus == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        return root, stdlib_sources(root)
    spec = importlib.util.find_spec(corpus)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{corpus} is not installed in this interpreter")
    root = Path(spec.submodule_search_locations[0])
    files = [p for p in python_sources(root, SKIP_DIRS) if p.name not in NUMPY_SKIP_FILES]
    return root, files


def cache_dir(corpus: str = "stdlib") -> Path:
    """``~/.cache/mimiverse-bench/search-py<python version>-v<VERSION>`` for the stdlib,
    ``…/search-numpy<numpy version>-py<python version>-v<VERSION>`` for NumPy."""
    version = ".".join(map(str, sys.version_info[:3]))
    name = "" if corpus == "stdlib" else corpus + importlib.metadata.version(corpus) + "-"
    return Path.home() / ".cache" / "mimiverse-bench" / f"search-{name}py{version}-v{VERSION}"


def build(target: Path, log: bool = True, corpus_name: str = "stdlib") -> Dataset:
    """Strip the corpus into ``target/corpus`` and write ``target/dataset.json``."""
    from mimiverse.index.scan import scan

    source_root, sources = corpus_sources(corpus_name)
    work = Path(tempfile.mkdtemp(prefix="search-build-", dir=target.parent))
    corpus = work / "corpus"
    stats: Counter[str] = Counter()
    originals: dict[str, str] = {}
    for path in sources:
        rel = path.relative_to(source_root).as_posix()
        try:
            text = path.read_bytes().decode("utf-8")
            ast.parse(text)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            stats["files_unparsable"] += 1
            continue
        stripped = strip_docstrings(text)
        tree = ast.parse(stripped)
        if has_docstring(tree) or stripped.count("\n") != text.count("\n"):
            raise AssertionError(f"stripping failed on {rel}")
        out = corpus / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(stripped.encode("utf-8"))
        originals[rel] = text
    # Leave out what the indexer's scan refuses, so every method sees the same files.
    accepted = {f.path for f in scan(corpus).files}
    for rel in sorted(set(originals) - accepted):
        (corpus / rel).unlink()
        del originals[rel]
        stats["files_refused_by_scan"] += 1
    stats["files"] = len(originals)

    per_file: dict[str, list[_Candidate]] = {}
    code_counts: Counter[str] = Counter()
    for rel, text in originals.items():
        stripped = (corpus / rel).read_text("utf-8")
        found, keys = _candidates(rel, text, stripped, stats)
        code_counts.update(keys)
        per_file[rel] = found
    text_counts = Counter(c.text.lower() for cs in per_file.values() for c in cs)
    for rel, found in per_file.items():
        kept = []
        for c in found:
            if text_counts[c.text.lower()] > 1:
                stats["dropped_duplicate_query"] += 1
            elif code_counts[c.code] > 1:
                stats["dropped_duplicate_code"] += 1
            else:
                kept.append(c)
        per_file[rel] = kept
    stats["candidates"] = sum(len(v) for v in per_file.values())

    rng = random.Random(SEED)
    order = sorted(per_file)
    rng.shuffle(order)
    queries: list[Query] = []
    for rel in order:
        found = per_file[rel]
        for c in rng.sample(found, min(PER_FILE, len(found))):
            if len(queries) < MAX_QUERIES:
                queries.append(
                    Query(len(queries), c.text, rel, c.node_name, c.def_line, c.end_line)
                )
    stats["queries"] = len(queries)
    payload = {
        "version": VERSION,
        "python": sys.version,
        corpus_name: str(source_root),
        "seed": SEED,
        "file_order": order + sorted(set(originals) - set(order)),
        "files": sorted(originals),
        "stats": dict(stats),
        "queries": [asdict(q) for q in queries],
    }
    (work / "dataset.json").write_text(json.dumps(payload, indent=1))
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    if log:
        print(f"built the search dataset in {target}: {dict(stats)}", flush=True)
    return load(target)


def load(target: Path) -> Dataset:
    """Read a built dataset."""
    payload = json.loads((target / "dataset.json").read_text())
    queries = [Query(**q) for q in payload["queries"]]
    _ORDER[target] = payload["file_order"]
    return Dataset(target / "corpus", queries, payload["files"], payload["stats"])


_ORDER: dict[Path, list[str]] = {}


def file_order(target: Path) -> list[str]:
    """Every corpus file in the seeded order (files with queries first)."""
    if target not in _ORDER:
        load(target)
    return _ORDER[target]


def dataset(rebuild: bool = False, corpus: str = "stdlib") -> tuple[Dataset, Path]:
    """The cached dataset, built first if missing (or ``rebuild``); and its cache folder."""
    target = cache_dir(corpus)
    if rebuild or not (target / "dataset.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        return build(target, corpus_name=corpus), target
    return load(target), target

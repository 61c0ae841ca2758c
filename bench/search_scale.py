"""Distractors for scale runs of ``search.py`` (BENCHMARKS.md: "Scale runs add installed
packages' sources until ~100k chunks").

The ``.py`` files of this interpreter's installed packages (``site-packages``, sorted by
path; test folders and ``test_*.py`` left out, as in the stdlib corpus) are copied under
``<corpus>/_installed/`` with every docstring stripped the same way, so they compete with
the targets on equal terms, until the corpus holds about ``target`` chunks (counted with
the indexer's own chunker). Queries stay the stdlib ones: the distractors only make the
index bigger and the search harder.
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

from search_dataset import SKIP_DIRS, python_sources, strip_docstrings

FOLDER = "_installed"


def installed_sources() -> list[Path]:
    """``.py`` files of the installed packages, in a stable order."""
    root = Path(sysconfig.get_paths()["purelib"])
    return python_sources(root, SKIP_DIRS - {"site-packages", "dist-packages"})


def count_chunks(root: Path) -> int:
    """Chunks the indexer's chunker cuts from every ``.py`` file under ``root``."""
    from mimiverse.index.chunk import chunk_file

    total = 0
    for path in root.rglob("*.py"):
        text = path.read_text("utf-8", "replace")
        total += len(chunk_file(path.relative_to(root).as_posix(), text, "python"))
    return total


def add_distractors(corpus: Path, target: int) -> tuple[int, int]:
    """Copy stripped installed sources into ``corpus`` until it holds ~``target`` chunks.

    Returns (files added, chunks now). Files that do not parse or decode are passed over.
    """
    from mimiverse.index.chunk import chunk_file

    chunks = count_chunks(corpus)
    site = Path(sysconfig.get_paths()["purelib"])
    added = 0
    for path in installed_sources():
        if chunks >= target:
            break
        try:
            text = path.read_text("utf-8")
            ast.parse(text)
            text = strip_docstrings(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            continue
        rel = Path(FOLDER) / path.relative_to(site)
        out = corpus / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, "utf-8")
        chunks += len(chunk_file(rel.as_posix(), text, "python"))
        added += 1
    return added, chunks

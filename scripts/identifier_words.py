"""Build ``src/mimiverse/index/data/identifier_words.txt``: the words code is made of.

Lower-case compounds such as ``readlines``, ``isdir`` or ``urlparse`` hide their words
from keyword search; ``mimiverse.index.tokens`` splits them with this list. A word is
listed with how often it appears as a *part* of a multi-part identifier (``read_lines``,
``isDir``, ``URLParser``) in the sources of the installed third-party packages (the
interpreter's ``site-packages``: never the CPython standard library, which is the search
benchmark's corpus). Words used at least ``--min-count`` times, 2–20 letters, are kept.

    .venv/bin/python scripts/identifier_words.py [--min-count 10]

Run it again only to refresh the list; the output is committed.
"""

from __future__ import annotations

import argparse
import collections
import sysconfig
from pathlib import Path

from mimiverse.index.tokens import split_identifier, words_in

OUT = Path(__file__).resolve().parent.parent / "src/mimiverse/index/data/identifier_words.txt"
SOURCES = (".py", ".pyi", ".js", ".ts", ".c", ".h", ".cpp", ".rs", ".go", ".java")


def count_parts(root: Path) -> collections.Counter[str]:
    """How often each word is one part of a multi-part identifier under ``root``."""
    parts: collections.Counter[str] = collections.Counter()
    for path in root.rglob("*"):
        if path.suffix not in SOURCES or not path.is_file():
            continue
        try:
            text = path.read_text("utf-8", "replace")
        except OSError:
            continue
        for word in words_in(text):
            pieces = split_identifier(word)
            if len(pieces) > 1:
                parts.update(pieces)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-count", type=int, default=10)
    args = parser.parse_args()
    root = Path(sysconfig.get_paths()["purelib"])
    parts = count_parts(root)
    kept = sorted(
        (
            (w, n)
            for w, n in parts.items()
            if n >= args.min_count and w.isalpha() and 2 <= len(w) <= 20
        ),
        key=lambda item: (-item[1], item[0]),
    )
    header = (
        "# Words of multi-part identifiers and how often each was seen as a part, from the\n"
        f"# installed packages' sources ({len(kept)} words, min count {args.min_count}).\n"
        "# Made by scripts/identifier_words.py; used by mimiverse.index.tokens.\n"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(header + "".join(f"{w} {n}\n" for w, n in kept), "utf-8")
    print(f"{len(kept)} words -> {OUT}")


if __name__ == "__main__":
    main()

"""Where lexical search loses, and what would help: variants of the lexical path measured on
the bench/search.py dataset, by monkeypatching module constants in this process only.

Query-time variants (one index): ``sqlite.WEIGHTS`` (bm25 column weights symbol, path,
context, body), ``tokens.STOPWORDS`` (query side), the per-file cap. Index-time variants
(a fresh index each): the chunker's ``max_lines``/``min_lines``. Prints one table row per
variant, MRR@10 / R@1 / R@10 over the same queries; the last line is a JSON object.

    .venv/bin/python bench/search_lexical_study.py [--files N] [--queries N] [--only a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from search import Scores, copy_corpus, emit_variants, first_hit, open_bench, subset
from search_dataset import Query, dataset

# Words of docstring first sentences that say little about which code is meant.
DOC_STOPWORDS = frozenset(
    [
        "return",
        "returns",
        "returned",
        "get",
        "gets",
        "set",
        "sets",
        "given",
        "new",
        "true",
        "false",
        "value",
        "values",
        "object",
        "objects",
        "method",
        "function",
        "specified",
        "using",
        "also",
        "all",
        "any",
        "none",
        "not",
        "one",
    ]
)


# Common programming abbreviations → the word a docstring would use.
ABBREVIATIONS = {
    "addr": "address", "arg": "argument", "args": "arguments", "attr": "attribute",
    "attrs": "attributes", "buf": "buffer", "cfg": "config", "cls": "class", "cmd": "command",
    "conn": "connection", "cur": "current", "db": "database", "dec": "decode", "del": "delete",
    "dir": "directory", "dirs": "directories", "dst": "destination", "elem": "element",
    "enc": "encode", "env": "environment", "err": "error", "exc": "exception",
    "ext": "extension", "fd": "descriptor", "fn": "function", "func": "function",
    "idx": "index", "info": "information", "init": "initialize", "len": "length",
    "lib": "library", "max": "maximum", "min": "minimum", "msg": "message", "num": "number",
    "obj": "object", "opt": "option", "opts": "options", "param": "parameter",
    "params": "parameters", "pat": "pattern", "pos": "position", "prev": "previous",
    "proc": "process", "prog": "program", "ref": "reference", "repr": "representation",
    "req": "request", "res": "result", "ret": "return", "sep": "separator", "seq": "sequence",
    "sock": "socket", "src": "source", "str": "string", "sys": "system", "tmp": "temporary",
    "val": "value", "var": "variable", "ws": "whitespace",
}  # fmt: skip


def compound_splitter(files: list[Path], min_count: int = 3) -> Callable[[str], list[str]]:
    """Split lower-case compounds (``urlparse`` → url, parse) into two parts that the corpus
    itself uses as parts of multi-part identifiers (at least ``min_count`` times, and more
    often than the compound itself)."""
    import collections
    import re

    from mimiverse.index import tokens

    parts: collections.Counter[str] = collections.Counter()
    for path in files:
        for word in tokens._WORD.findall(path.read_text("utf-8", "replace")):
            pieces = [p.lower() for p in tokens._PARTS.findall(word)]
            if len(pieces) > 1:
                parts.update(pieces)
    known = {w for w, n in parts.items() if n >= min_count and len(w) >= 2 and w.isalpha()}

    @functools.lru_cache(maxsize=200_000)
    def split(word: str) -> list[str]:
        if len(word) < 5 or not re.fullmatch(r"[a-z]+", word):
            return []
        best: list[str] = []
        score = parts[word]  # a word used as a part more often than its halves stays whole
        for i in range(2, len(word) - 1):
            head, tail = word[:i], word[i:]
            if head in known and tail in known and min(parts[head], parts[tail]) > score:
                best, score = [head, tail], min(parts[head], parts[tail])
        return best

    return split


def identifier_variant(
    split: Callable[[str], list[str]] | None, expand: bool
) -> Callable[[str], tuple[str, ...]]:
    """``tokens.identifier_tokens`` plus compound parts and/or abbreviation expansions."""
    from mimiverse.index import tokens

    original = tokens.identifier_tokens

    @functools.lru_cache(maxsize=200_000)
    def identifier_tokens(word: str) -> tuple[str, ...]:
        out = list(original(word))
        extra: list[str] = []
        for token in out[1:] or out:
            pieces = split(token) if split else []
            extra.extend(pieces)
            if expand:
                extra.extend(ABBREVIATIONS[t] for t in [token, *pieces] if t in ABBREVIATIONS)
        return (*out, *extra)

    return identifier_tokens


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``module.name`` for the duration of the block."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


async def score(indexer: Any, queries: list[Query], per_file: int = 3) -> Scores:
    """Lexical ranks of every query through ``Indexer.search``."""
    scores = Scores()
    for q in queries:
        result = await indexer.search(q.text, limit=10, mode="lexical", per_file=per_file)
        scores.ranks.append(first_hit(result.hits, q))
    return scores


async def fresh_index(
    src: Path, files: list[str], chunker: Callable[..., Any] | None = None
) -> tuple[Any, Path]:
    """A new corpus copy indexed lexically (optionally with a patched chunker)."""
    import mimiverse.index.indexer as indexer_module

    work = Path(tempfile.mkdtemp(prefix="mimi-lexstudy-"))
    copy_corpus(src, files, work / "corpus")
    bench = await open_bench(work / "corpus", work / "data", semantic=False)
    if chunker is not None:
        with patched(indexer_module, "chunk_file", chunker):
            await asyncio.to_thread(bench.indexer.sync)
    else:
        await asyncio.to_thread(bench.indexer.sync)
    return bench, work


async def study(args: argparse.Namespace) -> dict[str, Any]:
    """Run every selected variant; returns name → figures."""
    import mimiverse.index.stores.sqlite as sqlite_store
    import mimiverse.index.tokens as tokens
    from mimiverse.index.chunk import chunk_file

    ds, cache = dataset()
    files, queries = subset(ds, cache, args.files, args.queries)
    print(f"{len(files)} files, {len(queries)} queries", flush=True)
    only = set(filter(None, args.only.split(",")))
    out: dict[str, Any] = {}

    def want(name: str) -> bool:
        return not only or any(name.startswith(o) for o in only)

    bench, work = await fresh_index(ds.root, files)
    try:
        base_weights = sqlite_store.WEIGHTS
        weight_grid = [
            base_weights,
            (1.0, 1.0, 1.0, 1.0),
            (3.0, 1.0, 1.0, 1.0),
            (5.0, 1.0, 1.0, 1.0),
            (10.0, 1.0, 1.0, 1.0),
            (20.0, 3.0, 2.0, 1.0),
            (10.0, 0.0, 2.0, 1.0),
            (10.0, 3.0, 0.0, 1.0),
            (5.0, 1.0, 0.5, 1.0),
            (3.0, 0.5, 0.5, 1.0),
        ]
        for weights in weight_grid:
            name = "weights=" + ",".join(f"{w:g}" for w in weights)
            if want(name) or (weights == base_weights and want("baseline")):
                with patched(sqlite_store, "WEIGHTS", weights):
                    out[name] = (await score(bench.indexer, queries)).figures()
                print(f"  {name}: {out[name]}", flush=True)
        stop_variants = {
            "stopwords=none": frozenset(),
            "stopwords=+doc": tokens.STOPWORDS | DOC_STOPWORDS,
            "stopwords=+return": tokens.STOPWORDS | {"return", "returns", "returned"},
        }
        for name, words in stop_variants.items():
            if want(name):
                with patched(tokens, "STOPWORDS", words):
                    out[name] = (await score(bench.indexer, queries)).figures()
                print(f"  {name}: {out[name]}", flush=True)
        for per_file in (1, 2, 10):
            name = f"per_file={per_file}"
            if want(name):
                out[name] = (await score(bench.indexer, queries, per_file)).figures()
                print(f"  {name}: {out[name]}", flush=True)
    finally:
        bench.indexer.store.close()
        shutil.rmtree(work, ignore_errors=True)

    for max_lines, min_lines in ((40, 4), (60, 4), (120, 4), (80, 1), (80, 8)):
        name = f"chunks max_lines={max_lines},min_lines={min_lines}"
        if not want(name):
            continue
        chunker = functools.partial(chunk_file, max_lines=max_lines, min_lines=min_lines)
        bench, work = await fresh_index(ds.root, files, chunker)
        try:
            out[name] = (await score(bench.indexer, queries)).figures()
            out[name]["chunks"] = bench.indexer.status()["chunks"]
        finally:
            bench.indexer.store.close()
            shutil.rmtree(work, ignore_errors=True)
        print(f"  {name}: {out[name]}", flush=True)
    if want("identifiers"):
        import mimiverse.index.tokens as tokens_module

        split = compound_splitter([ds.root / f for f in files])
        for name, variant in {
            "identifiers +compound parts": identifier_variant(split, False),
            "identifiers +abbreviations": identifier_variant(None, True),
            "identifiers +both": identifier_variant(split, True),
        }.items():
            with patched(tokens_module, "identifier_tokens", variant):
                bench, work = await fresh_index(ds.root, files)
                try:
                    out[name] = (await score(bench.indexer, queries)).figures()
                finally:
                    bench.indexer.store.close()
                    shutil.rmtree(work, ignore_errors=True)
            print(f"  {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    """Parse arguments, run, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description="lexical search variants")
    parser.add_argument("--files", type=int, default=None, help="first N files (seeded)")
    parser.add_argument("--queries", type=int, default=None, help="at most N queries")
    parser.add_argument("--only", default="", help="comma-separated variant name prefixes")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):  # before usearch (see local_embed.preload_runtime)
        import onnxruntime  # noqa: F401
    results = asyncio.run(study(args))
    emit_variants("search_lexical_study", results)


if __name__ == "__main__":
    main()

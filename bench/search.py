"""Code search quality and speed: our index (lexical, semantic, hybrid) against plain BM25
and ripgrep, on a docstring-free copy of the CPython stdlib or, with ``--corpus numpy``, of
the installed NumPy (BENCHMARKS.md).

Data (``search_dataset.py``, cached in ``~/.cache/mimiverse-bench/``, a folder per
corpus): the stdlib (or NumPy) without tests, every docstring blanked (line numbers kept);
query = the first sentence of a function's original docstring, target = that function's
``def`` line to its end. A returned span is a hit when it contains the ``def`` line, covers
at least half of the target and is at most 3× its length. MRR@10 (primary), Recall@1,
Recall@10.

Each run copies the corpus to a temp folder and indexes it with the real ``Indexer``
(``build_indexer``/``build_gateway``, SQLite store, temp data dir, response cache off so
every query is encoded afresh; the chat/FIM models are never used, so never loaded).

Figures (last line, one JSON object):

- ``lexical``, ``semantic``, ``hybrid``: ``Indexer.search(query, limit=10, mode=…)``
  (default ``per_file=3``); ``semantic``/``hybrid`` need the gateway's ``embed`` route
  (``null`` otherwise, see ``semantic_available``).
- ``bm25_baseline``, ``ripgrep_baseline``: see ``search_baselines.py``; same chunks.
  ``ripgrep_count``: ripgrep ranked by occurrences instead of distinct terms.
- ``lexical_index_s``: cold ``Indexer.sync()`` of the copy (scan, chunk, FTS insert):
  nothing to lexically searchable. ``chunks``: chunks stored.
- ``embed_chunks_per_s``: chunks embedded by ``embed_pending()`` / its wall time
  (``embed_s``), the embed model with its default threads (every core).
- ``query_p50_ms``/``query_p95_ms``: hybrid ``Indexer.search`` end to end, one query at a
  time, after 5 warm-up queries; queries are encoded with 1 thread (a second gateway built
  with ``embedded_threads=1``, same model, swapped into the indexer after embedding:
  ``query_encode_threads``). Without an embed route hybrid is lexical only and
  ``query_mode_timed`` says "lexical". Also ``lexical_p50_ms``, ``semantic_p50_ms``,
  ``bm25_p50_ms``, ``ripgrep_p50_ms`` (and ``bm25_build_s``).
- ``incremental_ms``: median of 3: append a function with a unique name to one corpus
  file while the real watcher (``mimiverse.index.watch.watch`` → ``update_paths``, as
  ``IndexService`` does) runs, then poll a lexical search for the name every 2 ms: time
  from the write to the first search that returns it. ``incremental_direct_ms``: the same
  with ``update_paths`` called directly (no watcher, no debounce).
- ``files``, ``queries``, ``load1``, ``load_warning``, ``quick``.

``--quick``: files that hold queries, in the seeded order, up to 12,000 lines in all
(~35 files, ~600 chunks, ~110 queries: small files, few distractors, so its MRR runs
higher than the full run's and moves ±0.05 between changes; use it as a smoke test). The
full run indexes the whole corpus (730 files, ~17,400 chunks, 1000 queries); the embedded
bge-small embeds ~65 chunks/s on 2 cores, so it takes ~6 min (``--no-semantic``: ~2 min).
``--corpus numpy``: the same method and rules on NumPy's sources (its own dataset cache;
the ``--reuse-vectors`` cache is shared, keyed by chunk hash); ``--scale`` is stdlib only.

The 1-minute load average is checked at the start: above 1.5 a warning is printed and
``"load_warning": true`` is set (quality figures are unaffected, timings are not to be
trusted). ``--failures N`` prints N sampled lexical misses, ``--dump FILE`` writes every
query's ranks and top 10 per method, ``--keep`` keeps the indexed copy (for
``search_fusion_study.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import string
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _common import SEED, emit, load_check, percentile, rounded, table
from search_baselines import Bm25Baseline, RipgrepBaseline, StoredChunk
from search_dataset import CORPORA, Dataset, Query, dataset, file_order
from search_scale import add_distractors

QUICK_FILES = 150
QUICK_LINES = 12_000
"""About 600 chunks: the embedded bge-small embeds ~65 chunks/s on 2 cores."""
QUICK_QUERIES = 200


class SpanLike(Protocol):
    """Anything with a path and a 1-based inclusive line range."""

    @property
    def path(self) -> str:
        """Relative path."""
        ...

    @property
    def start_line(self) -> int:
        """First line."""
        ...

    @property
    def end_line(self) -> int:
        """Last line."""
        ...


# --- judging ------------------------------------------------------------------------------


def is_hit(span: SpanLike, query: Query) -> bool:
    """The hit rule: contains the ``def`` line, covers ≥ half the target, ≤ 3× its length."""
    if span.path != query.path or not span.start_line <= query.def_line <= span.end_line:
        return False
    target = query.end_line - query.def_line + 1
    overlap = min(span.end_line, query.end_line) - max(span.start_line, query.def_line) + 1
    return 2 * overlap >= target and span.end_line - span.start_line + 1 <= 3 * target


def first_hit(spans: Sequence[SpanLike], query: Query, limit: int = 10) -> int | None:
    """1-based rank of the first hit within ``limit``, or None."""
    for rank, span in enumerate(spans[:limit], start=1):
        if is_hit(span, query):
            return rank
    return None


@dataclass
class Scores:
    """Ranks of one method over the queries."""

    ranks: list[int | None] = field(default_factory=list)

    def figures(self) -> dict[str, float | None]:
        """``mrr10``, ``r1``, ``r10``."""
        n = len(self.ranks) or 1
        return {
            "mrr10": rounded(sum(1 / r for r in self.ranks if r) / n),
            "r1": rounded(sum(1 for r in self.ranks if r == 1) / n),
            "r10": rounded(sum(1 for r in self.ranks if r) / n),
        }


# --- the run ------------------------------------------------------------------------------


def subset(
    ds: Dataset, target: Path, files: int | None, queries: int | None, lines: int | None = None
) -> tuple[list[str], list[Query]]:
    """Corpus files in seeded order (all by default) and their queries.

    ``files`` caps the number of files; ``lines`` caps their total lines (a file that would
    pass the budget is skipped, so the quick corpus leans to small files). With a budget,
    only files that hold queries are taken (more queries per embedded chunk).
    """
    chosen: list[str] = []
    total = 0
    with_queries = {q.path for q in ds.queries}
    for rel in file_order(target):
        if files is not None and len(chosen) >= files:
            break
        if lines is not None and rel not in with_queries:
            continue
        if lines is not None:
            size = (ds.root / rel).read_bytes().count(b"\n")
            if total + size > lines:
                continue
            total += size
        chosen.append(rel)
    keep = set(chosen)
    picked = [q for q in ds.queries if q.path in keep]
    return sorted(chosen), picked[:queries] if queries else picked


def copy_corpus(src: Path, files: Sequence[str], dest: Path) -> None:
    """Copy ``files`` (relative) from ``src`` to ``dest`` with fresh mtimes."""
    for rel in files:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out)


def stored_chunks(db: Path) -> list[StoredChunk]:
    """Every chunk of the SQLite store (read-only connection)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, path, start_line, end_line, content FROM chunks").fetchall()
    finally:
        con.close()
    return [StoredChunk(*row) for row in rows]


def progress_printer(label: str) -> Callable[[str, int, int], None]:
    """A progress callback printing about every 10 %."""
    shown = [-1]

    def show(stage: str, done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            print(f"  {label} {stage}: {done}/{total}", flush=True)

    return show


@dataclass
class Bench:
    """One indexed corpus copy and what it needs."""

    root: Path
    data_dir: Path
    indexer: Any
    gateway: Any
    db: Path
    semantic: bool
    settings: Any = None
    extra_gateways: list[Any] = field(default_factory=list)


async def open_bench(root: Path, data_dir: Path, *, semantic: bool) -> Bench:
    """Gateway and indexer over ``root`` as ``mimiverse serve`` builds them."""
    # The gateway first: onnxruntime (the embed model) must be imported before usearch.
    from mimiverse.gateway.factory import build_gateway

    settings = bench_settings(root, data_dir)
    gateway = build_gateway(settings)
    from mimiverse.index.service import build_indexer, index_dir

    indexer = build_indexer(settings, gateway, root)
    has_embed = bool(gateway.router.routes.get("embed"))
    if semantic and not has_embed:
        print("no embed route in the gateway: semantic and hybrid-with-vectors skipped", flush=True)
    db = index_dir(settings, root) / "index.sqlite3"
    return Bench(root, data_dir, indexer, gateway, db, semantic and has_embed, settings)


def bench_settings(root: Path, data_dir: Path, **extra: Any) -> Any:
    """Settings for the bench: temp data dir, no preload, no response cache, no watcher."""
    from mimiverse.settings import Settings

    return Settings(data_dir=data_dir, embedded_preload=False, cache_store="off",
                    project_root=root, index_watch=False, **extra)  # fmt: skip


async def run_queries(
    search: Callable[[str], Awaitable[Sequence[SpanLike]]], queries: Sequence[Query], label: str
) -> tuple[Scores, list[float], list[list[SpanLike]]]:
    """Ranks, per-query wall times (ms) and returned spans of one method."""
    scores = Scores()
    times: list[float] = []
    returned: list[list[SpanLike]] = []
    began = time.perf_counter()
    for query in queries:
        t0 = time.perf_counter()
        spans = list(await search(query.text))
        times.append((time.perf_counter() - t0) * 1000)
        scores.ranks.append(first_hit(spans, query))
        returned.append(spans)
    took = time.perf_counter() - began
    print(f"  {label}: {len(queries)} queries in {took:.1f}s", flush=True)
    return scores, times, returned


def vector_cache_path(bench: Bench) -> Path:
    """Where ``--reuse-vectors`` keeps vectors: per model and token cut, keyed by chunk hash."""
    from search_dataset import cache_dir

    tokens = bench.settings.embedded_embed_max_tokens
    name = f"vectors-{bench.indexer.embed_model}-{tokens}.sqlite3".replace("/", "_")
    return cache_dir() / name


def import_vectors(db: Path, cache: Path, model: str, fresh: int) -> int:
    """Copy cached vectors of this index's chunks into it, except a seeded sample of
    ``fresh`` chunks, which are left to be embedded (so ``embed_chunks_per_s`` is still a
    measurement). Returns how many were copied."""
    if not cache.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        hashes = sorted({h for (h,) in conn.execute("SELECT content_hash FROM chunks")})
        leave = set(random.Random(SEED).sample(hashes, min(fresh, len(hashes))))
        conn.execute("ATTACH DATABASE ? AS cache", (str(cache),))
        rows = conn.execute(
            "SELECT content_hash, vector FROM cache.vectors WHERE model = ?", (model,)
        ).fetchall()
        wanted = set(hashes) - leave
        keep = [(h, model, v) for h, v in rows if h in wanted]
        with conn:
            conn.executemany("INSERT OR IGNORE INTO main.vectors VALUES (?, ?, ?)", keep)
    return len(keep)


def export_vectors(db: Path, cache: Path, model: str) -> None:
    """Add this index's vectors to the cache file."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(cache)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS vectors (content_hash TEXT NOT NULL, model TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (content_hash, model)) WITHOUT ROWID"
        )
        conn.execute("ATTACH DATABASE ? AS idx", (str(db),))
        with conn:
            conn.execute(
                "INSERT OR IGNORE INTO main.vectors SELECT content_hash, model, vector"
                " FROM idx.vectors WHERE model = ?",
                (model,),
            )


def indexer_search(indexer: Any, mode: str) -> Callable[[str], Awaitable[Sequence[SpanLike]]]:
    """``Indexer.search`` as a span-list function."""

    async def search(text: str) -> Sequence[SpanLike]:
        result = await indexer.search(text, limit=10, mode=mode)
        return list(result.hits)

    return search


def sync_search(
    fn: Callable[[str], Sequence[SpanLike]],
) -> Callable[[str], Awaitable[Sequence[SpanLike]]]:
    """A synchronous search as an awaitable one."""

    async def search(text: str) -> Sequence[SpanLike]:
        return fn(text)

    return search


def _probe_name(rng: random.Random) -> str:
    return "mimiprobe" + "".join(rng.choices(string.ascii_lowercase, k=12))


async def _searchable(indexer: Any, name: str, rel: str, deadline_s: float = 10.0) -> float:
    """Poll a lexical search for ``name`` until it returns ``rel``; seconds waited (inf)."""
    began = time.perf_counter()
    while time.perf_counter() - began < deadline_s:
        result = await indexer.search(name, limit=5, mode="lexical")
        if any(h.path == rel and name in h.content for h in result.hits):
            return time.perf_counter() - began
        await asyncio.sleep(0.002)
    return float("inf")


def _append(path: Path, name: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"\n\ndef {name}(value):\n    total = value + 1\n    return total * 2\n")


async def incremental(bench: Bench, rel: str, reps: int = 3) -> tuple[float, float]:
    """(watcher ms, direct update_paths ms), medians of ``reps``."""
    from mimiverse.index.watch import watch

    rng = random.Random(os.getpid())
    path = bench.root / rel
    direct: list[float] = []
    for _ in range(reps):
        name = _probe_name(rng)
        t0 = time.perf_counter()
        _append(path, name)
        await asyncio.to_thread(bench.indexer.update_paths, [path])
        wait = await _searchable(bench.indexer, name, rel)
        direct.append((time.perf_counter() - t0) * 1000 if wait != float("inf") else wait)

    stop = asyncio.Event()

    async def on_change(paths: list[Path]) -> None:
        await asyncio.to_thread(bench.indexer.update_paths, paths)

    task = asyncio.create_task(watch(bench.root, on_change, stop))
    await asyncio.sleep(1.0)  # inotify watches are set up in the background
    watched: list[float] = []
    for _ in range(reps):
        name = _probe_name(rng)
        t0 = time.perf_counter()
        _append(path, name)
        wait = await _searchable(bench.indexer, name, rel)
        watched.append((time.perf_counter() - t0) * 1000 if wait != float("inf") else wait)
        await asyncio.sleep(0.3)
    stop.set()
    try:
        await asyncio.wait_for(task, 5)
    except TimeoutError:
        task.cancel()
    return percentile(watched, 50), percentile(direct, 50)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole bench; returns the figures."""
    load1, busy = load_check()
    with contextlib.suppress(ImportError):  # before usearch (see local_embed.preload_runtime)
        import onnxruntime  # noqa: F401
    ds, cache = dataset(rebuild=args.rebuild, corpus=args.corpus)
    files_n = args.files if args.files is not None else (QUICK_FILES if args.quick else None)
    queries_n = (
        args.queries if args.queries is not None else (QUICK_QUERIES if args.quick else None)
    )
    lines_n = args.lines if args.lines is not None else (QUICK_LINES if args.quick else None)
    files, queries = subset(ds, cache, files_n, queries_n, lines_n)
    print(f"corpus: {len(files)} {args.corpus} files (docstrings stripped), "
          f"{len(queries)} queries; dataset cache {cache}", flush=True)  # fmt: skip

    work = Path(tempfile.mkdtemp(prefix="mimi-search-bench-"))
    figures: dict[str, Any] = {"bench": "search", "corpus": args.corpus, "quick": bool(args.quick)}
    try:
        root = work / "corpus"
        copy_corpus(ds.root, files, root)
        if args.scale:
            added, estimate = add_distractors(root, args.scale)
            figures["distractor_files"] = added
            print(f"scale: +{added} installed-package files (docstrings stripped), "
                  f"~{estimate} chunks", flush=True)  # fmt: skip
        bench = await open_bench(root, work / "data", semantic=not args.no_semantic)
        try:
            figures.update(await measure(bench, files, queries, args))
        finally:
            for gateway in [bench.gateway, *bench.extra_gateways]:
                await gateway.close()
            bench.indexer.store.close()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures["files"] = len(files)
    figures["queries"] = len(queries)
    figures["load1"] = round(load1, 2)
    figures["load_warning"] = busy
    return figures


async def measure(
    bench: Bench, files: list[str], queries: list[Query], args: argparse.Namespace
) -> dict[str, Any]:
    """Index, embed, search with every method, and time the incremental path."""
    indexer = bench.indexer
    out: dict[str, Any] = {}
    print("indexing (lexical) …", flush=True)
    t0 = time.perf_counter()
    report = await asyncio.to_thread(indexer.sync, progress_printer("sync"))
    out["lexical_index_s"] = rounded(time.perf_counter() - t0, 2)
    status = indexer.status()
    out["chunks"] = status["chunks"]
    print(f"  {status['files']} files, {status['chunks']} chunks in {out['lexical_index_s']} s"
          f" (skipped {len(report.skipped)})", flush=True)  # fmt: skip

    out["semantic_available"] = bench.semantic
    out["embed_chunks_per_s"] = None
    cache = vector_cache_path(bench) if bench.semantic and args.reuse_vectors else None
    if cache is not None:
        reused = import_vectors(bench.db, cache, indexer.embed_model, args.timed_embed)
        out["vectors_reused"] = reused
        print(f"reused {reused} vectors from {cache}; the rest are embedded (and timed)",
              flush=True)  # fmt: skip
    if bench.semantic:
        print(f"embedding {status['chunks']} chunks with {indexer.embed_model} …", flush=True)
        t0 = time.perf_counter()
        done = await indexer.embed_pending(progress=progress_printer("embed"))
        took = time.perf_counter() - t0
        out["embed_chunks_per_s"] = rounded(done / took if took else float("nan"), 1)
        out["embed_s"] = rounded(took, 1)
        out["embedded"] = done
        print(f"  {done} chunks in {took:.1f} s", flush=True)
        if cache is not None:
            export_vectors(bench.db, cache, indexer.embed_model)

    if bench.semantic:
        # Queries are encoded with 1 thread (BENCHMARKS.md): the same model id, so the same
        # vectors, from a second gateway built with embedded_threads=1.
        from mimiverse.gateway.factory import build_gateway

        query_gateway = build_gateway(
            bench_settings(bench.root, bench.data_dir, embedded_threads=1)
        )
        bench.extra_gateways.append(query_gateway)
        indexer.gateway = query_gateway
        out["query_encode_threads"] = 1
    print("searching …", flush=True)
    results: dict[str, Scores] = {}
    returned: dict[str, list[list[SpanLike]]] = {}
    # Hybrid first and timed (warm up on 5 queries first).
    for q in queries[:5]:
        await indexer.search(q.text, limit=10, mode="hybrid")
    scores, times, spans = await run_queries(indexer_search(indexer, "hybrid"), queries, "hybrid")
    out["query_mode_timed"] = "hybrid" if bench.semantic else "lexical"
    out["query_p50_ms"] = rounded(percentile(times, 50), 2)
    out["query_p95_ms"] = rounded(percentile(times, 95), 2)
    if bench.semantic:
        results["hybrid"], returned["hybrid"] = scores, spans
    for mode in ("lexical", "semantic") if bench.semantic else ("lexical",):
        s, t, spans = await run_queries(indexer_search(indexer, mode), queries, mode)
        results[mode], returned[mode] = s, spans
        out[f"{mode}_p50_ms"] = rounded(percentile(t, 50), 2)

    chunks = stored_chunks(bench.db)
    t0 = time.perf_counter()
    bm25 = Bm25Baseline(chunks)
    out["bm25_build_s"] = rounded(time.perf_counter() - t0, 2)
    s, t, spans = await run_queries(sync_search(bm25.search), queries, "bm25_baseline")
    results["bm25_baseline"], returned["bm25_baseline"] = s, spans
    out["bm25_p50_ms"] = rounded(percentile(t, 50), 2)
    if not args.no_ripgrep:
        rg = RipgrepBaseline(bench.root, chunks)
        by_count: dict[str, Sequence[SpanLike]] = {}

        def rg_search(text: str) -> list[SpanLike]:
            by_terms, by_count[text] = rg.search_both(text)
            return list(by_terms)

        s, t, spans = await run_queries(sync_search(rg_search), queries, "ripgrep_baseline")
        results["ripgrep_baseline"], returned["ripgrep_baseline"] = s, spans
        out["ripgrep_p50_ms"] = rounded(percentile(t, 50), 2)
        counted = Scores([first_hit(by_count[q.text], q) for q in queries])
        out["ripgrep_count"] = counted.figures()

    for name in ("lexical", "semantic", "hybrid", "bm25_baseline", "ripgrep_baseline"):
        out[name] = results[name].figures() if name in results else None

    print("incremental update …", flush=True)
    probe = queries[0].path if queries else files[0]
    watched, direct = await incremental(bench, probe)
    out["incremental_ms"] = rounded(watched, 1)
    out["incremental_direct_ms"] = rounded(direct, 1)

    if args.failures:
        show_failures(queries, results, returned, args.failures)
    if args.dump:
        dump(Path(args.dump), queries, results, returned)
    return out


def show_failures(
    queries: Sequence[Query],
    results: dict[str, Scores],
    returned: dict[str, list[list[SpanLike]]],
    count: int,
) -> None:
    """Print a seeded sample of lexical misses (rank > 1) with what came first instead."""
    misses = [i for i, r in enumerate(results["lexical"].ranks) if r != 1]
    rng = random.Random(7)
    for i in sorted(rng.sample(misses, min(count, len(misses)))):
        q = queries[i]
        others = {name: s.ranks[i] for name, s in results.items()}
        print(f"\n[{q.qid}] {q.text!r}\n  target {q.path}:{q.def_line}-{q.end_line} {q.symbol}"
              f"  ranks {others}")  # fmt: skip
        for rank, span in enumerate(returned["lexical"][i][:3], start=1):
            symbol = getattr(span, "symbol", "")
            print(f"  {rank}. {span.path}:{span.start_line}-{span.end_line} {symbol}")


def dump(
    path: Path,
    queries: Sequence[Query],
    results: dict[str, Scores],
    returned: dict[str, list[list[SpanLike]]],
) -> None:
    """Write every query's rank and top-10 spans under each method as JSON."""
    rows = []
    for i, q in enumerate(queries):
        rows.append(
            {
                "query": asdict(q),
                "ranks": {name: s.ranks[i] for name, s in results.items()},
                "top": {
                    name: [
                        [h.path, h.start_line, h.end_line, getattr(h, "symbol", "")]
                        for h in spans[i]
                    ]
                    for name, spans in returned.items()
                },
            }
        )
    path.write_text(json.dumps(rows, indent=1))
    print(f"per-query results written to {path}", flush=True)


def emit_variants(bench: str, results: dict[str, dict[str, Any]]) -> None:
    """A study's table of variants (MRR@10, R@1, R@10), then its JSON line."""
    rows = [[k, v["mrr10"], v["r1"], v["r10"]] for k, v in results.items()]
    print(table(["variant", "MRR@10", "R@1", "R@10"], rows))
    emit({"bench": bench, "variants": results})


def print_table(figures: dict[str, Any]) -> None:
    """The human-readable summary."""
    rows = []
    names = ("lexical", "semantic", "hybrid", "bm25_baseline", "ripgrep_baseline", "ripgrep_count")
    for name in names:
        f = figures.get(name)
        if f:
            rows.append([name, f["mrr10"], f["r1"], f["r10"]])
        else:
            rows.append([name, "-", "-", "-"])
    print()
    print(f"{figures['queries']} queries over {figures['files']} files, {figures['chunks']} chunks")
    print(table(["method", "MRR@10", "R@1", "R@10"], rows))
    speed = [
        ["lexical_index_s (cold sync)", figures.get("lexical_index_s")],
        ["embed_chunks_per_s", figures.get("embed_chunks_per_s")],
        [f"query_p50_ms ({figures.get('query_mode_timed')})", figures.get("query_p50_ms")],
        [f"query_p95_ms ({figures.get('query_mode_timed')})", figures.get("query_p95_ms")],
        ["incremental_ms (watcher)", figures.get("incremental_ms")],
        ["incremental_direct_ms", figures.get("incremental_direct_ms")],
        ["bm25_build_s (baseline)", figures.get("bm25_build_s")],
        ["load1 at start", figures.get("load1")],
    ]
    print()
    print(table(["figure", "value"], [[k, "-" if v is None else v] for k, v in speed]))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"≤ {QUICK_FILES} files of ≤ {QUICK_LINES} lines in all, ≤ {QUICK_QUERIES} queries",
    )
    parser.add_argument(
        "--corpus",
        choices=CORPORA,
        default="stdlib",
        help="what to index and query (default stdlib)",
    )
    parser.add_argument("--no-semantic", action="store_true", help="skip embedding (lexical only)")
    parser.add_argument("--no-ripgrep", action="store_true", help="skip the ripgrep baseline")
    parser.add_argument("--files", type=int, default=None, help="index the first N files (seeded)")
    parser.add_argument("--lines", type=int, default=None, help="cap the corpus at N lines")
    parser.add_argument("--queries", type=int, default=None, help="at most N queries")
    parser.add_argument("--failures", type=int, default=0, help="print N sampled lexical misses")
    parser.add_argument("--dump", default="", help="write per-query ranks and spans (JSON)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached dataset")
    parser.add_argument("--keep", action="store_true", help="keep the temp corpus and index")
    parser.add_argument(
        "--reuse-vectors",
        action="store_true",
        help="take vectors of unchanged chunks from earlier runs (a cache per model and token "
        "cut); only --timed-embed chunks and new ones are embedded (development runs)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="add installed packages' sources (docstrings stripped) until ~N chunks "
        "(BENCHMARKS.md scale run, e.g. 100000); queries stay the stdlib ones",
    )
    parser.add_argument(
        "--timed-embed", type=int, default=600, help="with --reuse-vectors: chunks left to embed"
    )
    args = parser.parse_args(argv)
    if args.scale and args.corpus != "stdlib":
        parser.error("--scale adds installed packages (NumPy among them): stdlib corpus only")
    figures = asyncio.run(run(args))
    print_table(figures)
    emit(figures)


if __name__ == "__main__":
    main()

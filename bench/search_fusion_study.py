"""How lexical and semantic rankings are fused: RRF weights and k, and a score blend,
measured on the bench/search.py dataset with one embedded index.

Each query's lexical and semantic top 50 are fetched once (``Indexer.search`` with
``limit=50, per_file=50``); every variant then re-fuses them offline with
``mimiverse.index.hybrid.fuse`` (or a min-max score blend) and caps 3 hits per file, top 10,
as ``Indexer.search`` does. ``rrf k=60 w=1,1`` is the shipped hybrid.

    .venv/bin/python bench/search.py --keep            # prints "kept /tmp/mimi-search-bench-…"
    .venv/bin/python bench/search_fusion_study.py --work /tmp/mimi-search-bench-…
    .venv/bin/python bench/search_fusion_study.py --quick   # builds and embeds its own subset
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from search import QUICK_LINES, Scores, copy_corpus, emit_variants, first_hit, open_bench, subset
from search_dataset import dataset

DEPTH = int(os.environ.get("FUSION_DEPTH", "50"))


def blend(lexical: list[Any], semantic: list[Any], alpha: float) -> list[Any]:
    """Min-max normalised scores, ``alpha`` × semantic + (1 − alpha) × lexical."""
    from mimiverse.index.hybrid import cap_per_file

    def norm(hits: list[Any]) -> dict[int, float]:
        if not hits:
            return {}
        scores = [h.scores.get("lexical", h.scores.get("semantic", h.score)) for h in hits]
        low, high = min(scores), max(scores)
        span = (high - low) or 1.0
        return {h.chunk_id: (s - low) / span for h, s in zip(hits, scores, strict=True)}

    lex, sem = norm(lexical), norm(semantic)
    by_id = {h.chunk_id: h for h in [*lexical, *semantic]}
    total = {i: alpha * sem.get(i, 0.0) + (1 - alpha) * lex.get(i, 0.0) for i in by_id}
    ranked = sorted(by_id.values(), key=lambda h: -total[h.chunk_id])
    return cap_per_file(ranked, 3, 10)


def filled(
    lexical: list[Any], semantic: list[Any], cosine: dict[int, float], kind: str, alpha: float
) -> list[Any]:
    """Fusion over the union of both lists with every candidate's exact cosine similarity
    (semantic scores filled in for lexical-only candidates; lexical-only ones of the
    semantic list score 0 lexically). ``kind``: ``rrf`` (ranks by cosine over the union,
    k=60) or ``convex`` (``alpha`` × min-max cosine + (1 − alpha) × BM25 / max BM25)."""
    from mimiverse.index.hybrid import cap_per_file

    by_id = {h.chunk_id: h for h in [*lexical, *semantic]}
    lex = {h.chunk_id: h.scores.get("lexical", h.score) for h in lexical}
    if kind == "rrf":
        sem_rank = {i: r for r, i in enumerate(sorted(by_id, key=lambda i: -cosine.get(i, -1)), 1)}
        lex_rank = {h.chunk_id: r for r, h in enumerate(lexical, 1)}
        total = {
            i: alpha / (60 + sem_rank[i]) + (1 - alpha) / (60 + lex_rank.get(i, 10**6))
            for i in by_id
        }
    else:
        top = max(lex.values(), default=1.0) or 1.0
        cos = [cosine.get(i, 0.0) for i in by_id]
        low, high = min(cos, default=0.0), max(cos, default=1.0)
        span = (high - low) or 1.0
        total = {
            i: alpha * (cosine.get(i, low) - low) / span + (1 - alpha) * lex.get(i, 0.0) / top
            for i in by_id
        }
    ranked = sorted(by_id.values(), key=lambda h: -total[h.chunk_id])
    return cap_per_file(ranked, 3, 10)


async def cosines(
    indexer: Any, text: str, hits: list[Any], heads: dict[int, Any], head_weight: float
) -> dict[int, float]:
    """Exact cosine similarity of the query with each hit's stored vector (plus
    ``head_weight`` × its head vector's, when head vectors are given)."""
    import numpy as np

    (vector,), _ = await indexer.gateway.embed([text], kind="query")
    q = np.asarray(vector, dtype=np.float32)
    ids = sorted({h.chunk_id for h in hits})
    out: dict[int, float] = {}
    for chunk_id, blob in indexer.store.chunk_vectors(indexer.embed_model, ids):
        out[chunk_id] = float(np.frombuffer(blob, dtype=np.float32) @ q)
        if chunk_id in heads:
            out[chunk_id] += head_weight * float(heads[chunk_id] @ q)
    return out


async def head_vectors(bench: Any, tokens: int) -> dict[int, Any]:
    """Every chunk's embedding cut at ``tokens`` (its path, context and first lines): a
    second, "head" vector per chunk, cached by chunk hash like ``--reuse-vectors``."""
    import sqlite3

    import numpy as np
    from search import bench_settings
    from search_dataset import cache_dir

    from mimiverse.gateway.factory import build_gateway
    from mimiverse.index.model import Chunk
    from mimiverse.index.stores.base import embed_text

    cache = cache_dir() / f"head-vectors-{tokens}.npz"
    known: dict[str, Any] = {}
    if cache.exists():
        data = np.load(cache)
        known = dict(zip(data["hashes"].tolist(), data["vectors"], strict=True))
    con = sqlite3.connect(bench.db)
    rows = con.execute(
        "SELECT id, path, start_line, end_line, language, kind, symbol, content, context,"
        " content_hash FROM chunks"
    ).fetchall()
    con.close()
    todo = [r for r in rows if r[9] not in known]
    if todo:
        gateway = build_gateway(
            bench_settings(bench.root, bench.data_dir, embedded_embed_max_tokens=tokens)
        )
        try:
            print(f"embedding {len(todo)} head texts ({tokens} tokens) …", flush=True)
            for start in range(0, len(todo), 256):
                part = todo[start : start + 256]
                texts = [embed_text(Chunk(*r[1:9], content_hash=r[9])) for r in part]
                vectors, _ = await gateway.embed(texts, kind="passage")
                for r, v in zip(part, vectors, strict=True):
                    known[r[9]] = np.asarray(v, dtype=np.float32)
        finally:
            await gateway.close()
        hashes = np.array(list(known))
        np.savez(cache, hashes=hashes, vectors=np.stack([known[h] for h in hashes]))
    return {r[0]: known[r[9]] for r in rows}


async def study(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch both rankings per query, then score every fusion variant."""
    from mimiverse.index.hybrid import fuse

    ds, cache = dataset()
    made: Path | None = None
    if args.work:
        work = Path(args.work)
        files = sorted(
            p.relative_to(work / "corpus").as_posix() for p in (work / "corpus").rglob("*.py")
        )
        keep = set(files)
        queries = [q for q in ds.queries if q.path in keep]
    else:
        lines = QUICK_LINES if args.quick else args.lines
        files, queries = subset(ds, cache, None, None, lines)
        made = work = Path(tempfile.mkdtemp(prefix="mimi-fusion-"))
        copy_corpus(ds.root, files, work / "corpus")
    bench = await open_bench(work / "corpus", work / "data", semantic=True)
    out: dict[str, Any] = {}
    try:
        indexer = bench.indexer
        await asyncio.to_thread(indexer.sync)
        await asyncio.to_thread(indexer.open_vectors)
        print(
            f"{len(files)} files, {len(queries)} queries; embedding what is missing …", flush=True
        )
        await indexer.embed_pending()
        heads = await head_vectors(bench, args.head_tokens) if args.head_tokens else {}
        pairs = []
        for q in queries:
            lex = await indexer.search(q.text, limit=DEPTH, mode="lexical", per_file=DEPTH)
            sem = await indexer.search(q.text, limit=DEPTH, mode="semantic", per_file=DEPTH)
            cos = await cosines(indexer, q.text, [*lex.hits, *sem.hits], heads, args.head_weight)
            pairs.append((q, lex.hits, sem.hits, cos))
        if args.save:
            import pickle

            Path(args.save).write_bytes(pickle.dumps(pairs))
            print(f"candidates saved to {args.save}", flush=True)
        variants: dict[str, Any] = {}
        for k in (60, 30, 10):
            for wl in (1.0, 0.7, 0.5, 0.3):
                variants[f"rrf k={k} w=lex {wl:g},sem 1"] = ("rrf", k, wl)
        for alpha in (0.5, 0.7, 0.8):
            variants[f"blend alpha={alpha:g}"] = ("blend", alpha, 0.0)
        for alpha in (0.5, 0.6, 0.7):
            variants[f"filled rrf w_sem={alpha:g}"] = ("filled-rrf", alpha, 0.0)
        for alpha in (0.4, 0.5, 0.6, 0.7, 0.8):
            variants[f"filled convex alpha={alpha:g}"] = ("filled-convex", alpha, 0.0)
        variants["lexical only"] = ("rrf", 60, None)
        variants["semantic only"] = ("rrf", 60, 0.0)
        for name, (kind, p, wl) in variants.items():
            scores = Scores()
            for q, lex_hits, sem_hits, cos in pairs:
                if kind.startswith("filled"):
                    fused = filled(lex_hits, sem_hits, cos, kind.split("-")[1], float(p))
                elif kind == "blend":
                    fused = blend(lex_hits, sem_hits, float(p))
                elif wl is None:
                    fused = fuse({"lexical": lex_hits}, limit=10, per_file=3, k=int(p))
                elif wl == 0.0:
                    fused = fuse({"semantic": sem_hits}, limit=10, per_file=3, k=int(p))
                else:
                    fused = fuse(
                        {"lexical": lex_hits, "semantic": sem_hits}, limit=10, per_file=3,
                        weights={"lexical": wl, "semantic": 1.0}, k=int(p),
                    )  # fmt: skip
                scores.ranks.append(first_hit(fused, q))
            out[name] = scores.figures()
            print(f"  {name}: {out[name]}", flush=True)
    finally:
        for gateway in [bench.gateway, *bench.extra_gateways]:
            await gateway.close()
        bench.indexer.store.close()
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return out


def main() -> None:
    """Parse arguments, run, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description="fusion variants")
    parser.add_argument("--work", default="", help="a folder kept by bench/search.py --keep")
    parser.add_argument("--quick", action="store_true", help="its own small embedded subset")
    parser.add_argument("--lines", type=int, default=40_000, help="corpus lines without --work")
    parser.add_argument("--save", default="", help="pickle each query's candidates here")
    parser.add_argument("--head-tokens", type=int, default=0, help="add head vectors of N tokens")
    parser.add_argument("--head-weight", type=float, default=1.0, help="their weight in cosine")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):  # before usearch (see local_embed.preload_runtime)
        import onnxruntime  # noqa: F401
    results = asyncio.run(study(args))
    emit_variants("search_fusion_study", results)


if __name__ == "__main__":
    main()

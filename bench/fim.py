"""Inline completions while typing: latency per keystroke, and line-level quality.

    flock /tmp/mimi-bench.lock .venv/bin/python bench/fim.py --quick   # ~1 minute
    flock /tmp/mimi-bench.lock .venv/bin/python bench/fim.py           # ~8 functions

Typing: a real function from a real CPython stdlib file is removed from its file and
typed back character by character at 75 ms a key (a newline brings its indentation with
it, as an editor's auto-indent does). As an editor would, every keystroke (re)starts a
debounce timer (``--debounce-ms``); when it fires, a completion request goes out for the
text as it is then; a keystroke makes earlier answers stale. The typist pauses at every
line start and, seeded, after some other keys; at a pause the figure is the time from
the last keystroke to the suggestion for the text on screen. Requests go in-process to
``Completer`` (the engine behind ``POST /api/ai/fim``) over the embedded backend
(Qwen2.5-Coder-0.5B Q4_K_M, ``--threads`` threads, 2 slots), with one editor session.

Runs, in order: the typing run with KV-prefix reuse (llama.cpp ``cache_prompt`` on, as
shipped), then the same typing without it (``cache_prompt`` off; fewer pauses, each costs
seconds); ``cold_p50_ms`` is the first request of each function (a new file: nothing of
the prompt is cached). Quality: at each pause of the first run the suggestion is compared
with the real rest of the line (exact match, and edit similarity 1 − Levenshtein /
longer length); the prefix-only baseline (the same text before the cursor, no suffix, no
related snippets, its own session) is asked at the same points in the same run, after
the timed typing, untimed.

``overhead_ratio``: at up to 8 warm points, a one-off engine request (fresh response
cache) over the raw runtime call with the very prompt the engine sent, both on a warm KV
cache, order alternating; median of the per-point ratios.

Related snippets come from a symbol map (the index's ``SymbolMap``) of the typed file's
neighbours in its folder; the typed file itself is indexed without the function.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from _common import (
    SEED,
    CpuWatch,
    emit,
    load_check,
    median,
    parsed_stdlib_files,
    percentile,
    rounded,
    stdlib_root,
    table,
)

from mimiverse.complete.context import Budget
from mimiverse.complete.engine import Completer, CompletionRequest, Suggestion
from mimiverse.complete.related import Related
from mimiverse.gateway import weights
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.settings import Settings
from mimiverse.testing import gateway_with

GOAL_P50_MS = 400.0
GOAL_P95_MS = 900.0


@dataclass
class Target:
    """A function to type: its file, where it sits, and the file without it."""

    path: str
    name: str
    text: str
    start: int
    end: int

    @property
    def body(self) -> str:
        """The text typed."""
        return self.text[self.start : self.end]


@dataclass
class Pause:
    """One measured pause."""

    target: str
    typed: int
    prefix: str
    suffix: str
    truth: str
    latency_ms: float
    suggestion: str
    source: str
    cold: bool = False


@dataclass
class Run:
    """The pauses of one typing run and its request counts."""

    pauses: list[Pause] = field(default_factory=list)
    requests: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def pick_targets(count: int, max_chars: int, seed: int) -> list[Target]:
    """Functions (4-30 lines, 150+ chars) from seeded stdlib files, one per file."""
    root = stdlib_root()
    rng = random.Random(seed)
    out: list[Target] = []
    for path, text, tree in parsed_stdlib_files(rng, root):
        if len(out) >= count:
            break
        lines = text.splitlines(keepends=True)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        candidates = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None
            and 4 <= node.end_lineno - node.lineno + 1 <= 30
            and not node.decorator_list
        ]
        rng.shuffle(candidates)
        for node in candidates:
            assert node.end_lineno is not None
            start = starts[node.lineno - 1] + node.col_offset
            end = starts[node.end_lineno - 1] + len(lines[node.end_lineno - 1].rstrip("\n"))
            body = text[start:end]
            if len(body) < 150 or "\t" in body or '"""' in body[:max_chars] or "'''" in body:
                continue
            out.append(Target(path.relative_to(root).as_posix(), node.name, text, start, end))
            break
    return out


def truth_line(target: Target, typed: int) -> str:
    """The real rest of the line after ``typed`` characters of the function."""
    rest = target.text[target.start + typed :]
    return rest.split("\n", 1)[0].rstrip()


def keystrokes(body: str, limit: int) -> list[int]:
    """Offsets after each keystroke; a newline and the next line's indentation are one key."""
    out: list[int] = []
    i = 0
    end = min(len(body), limit)
    while i < end:
        i += 1
        if body[i - 1] == "\n":
            while i < len(body) and body[i] in " \t":
                i += 1
        out.append(i)
    return out


def levenshtein(a: str, b: str) -> int:
    """Edit distance (lines are short: the plain dynamic programme is enough here)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    """1 − Levenshtein / longer length (1.0 for two empty strings)."""
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def first_line(text: str) -> str:
    """A suggestion's first line, as the line-level comparison sees it."""
    return text.split("\n", 1)[0].rstrip()


class Editor:
    """A simulated editor: debounce, stale answers dropped, one session."""

    def __init__(self, completer: Completer, session: str, debounce_s: float) -> None:
        self.completer = completer
        self.session = session
        self.debounce_s = debounce_s
        self.version = 0
        self.answer: tuple[int, Suggestion, float] | None = None
        self.arrived = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self.requests = 0
        self.sources: dict[str, int] = {}

    def keystroke(self, request: CompletionRequest) -> None:
        """The text changed: restart the debounce timer for ``request``."""
        self.version += 1
        self.answer = None
        self.arrived.clear()
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = asyncio.create_task(self._send(self.version, request))

    async def _send(self, version: int, request: CompletionRequest) -> None:
        await asyncio.sleep(self.debounce_s)
        self.requests += 1
        suggestion = await self.completer.complete(request)
        self.sources[suggestion.source] = self.sources.get(suggestion.source, 0) + 1
        if version == self.version:
            self.answer = (version, suggestion, time.perf_counter())
            self.arrived.set()

    async def close(self) -> None:
        """Let the last request finish."""
        if self._timer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer


async def type_target(
    completer: Completer,
    target: Target,
    *,
    session: str,
    key_s: float,
    debounce_s: float,
    max_chars: int,
    rng: random.Random,
    pause_rate: float,
    max_pauses: int,
    run: Run,
) -> None:
    """Type ``target`` into its file, measuring at pauses."""
    editor = Editor(completer, session, debounce_s)
    body = target.body
    before, after = target.text[: target.start], target.text[target.end :]
    first = True
    measured = 0
    for typed in keystrokes(body, max_chars):
        request = CompletionRequest(
            prefix=before + body[:typed],
            suffix=after,
            path=target.path,
            language="python",
            session=session,
        )
        last_key = time.perf_counter()
        editor.keystroke(request)
        line = body[:typed].rsplit("\n", 1)
        at_line_start = len(line) == 2 and not line[1].strip()
        pause = first or at_line_start or rng.random() < pause_rate
        if pause and measured < max_pauses:
            try:
                await asyncio.wait_for(editor.arrived.wait(), timeout=60)
            except TimeoutError:
                continue
            assert editor.answer is not None
            _, suggestion, arrived = editor.answer
            run.pauses.append(
                Pause(
                    target.path,
                    typed,
                    request.prefix,
                    request.suffix,
                    truth_line(target, typed),
                    (arrived - last_key) * 1000,
                    suggestion.text,
                    suggestion.source,
                    cold=first,
                )
            )
            measured += 1
            first = False
            await asyncio.sleep(0.2)  # reading the suggestion
        else:
            await asyncio.sleep(max(0.0, key_s - (time.perf_counter() - last_key)))
    await editor.close()
    run.requests += editor.requests
    for name, count in editor.sources.items():
        run.sources[name] = run.sources.get(name, 0) + count


def symbol_map(targets: list[Target], neighbours: int) -> Any:
    """A SymbolMap over each target's file (without the function) and a few neighbours."""
    from mimiverse.index.symbols import SymbolMap

    root = stdlib_root()
    symbols = SymbolMap()
    for target in targets:
        symbols.update(
            target.path, target.text[: target.start] + target.text[target.end :], "python"
        )
        folder = (root / target.path).parent
        for sibling in sorted(folder.glob("*.py"))[:neighbours]:
            rel = sibling.relative_to(root).as_posix()
            if rel != target.path:
                try:
                    symbols.update(rel, sibling.read_text("utf-8"), "python")
                except (OSError, UnicodeDecodeError):
                    continue
    return symbols


async def load_backend(path: Path, threads: int, cache_prompt: bool) -> EmbeddedBackend:
    """The embedded FIM backend as `mimiverse serve` builds it (2 slots, 4096 each)."""
    backend = EmbeddedBackend(
        "embedded-fim",
        path,
        tasks=("fim",),
        context_length=4096,
        parallel=2,
        threads=threads,
        model_id=weights.FIM_05B.key,
        cache_prompt=cache_prompt,
    )
    await backend.start()
    return backend


async def typing_run(
    backend: EmbeddedBackend,
    targets: list[Target],
    symbols: Any,
    args: argparse.Namespace,
    *,
    max_pauses: int,
    session: str,
) -> Run:
    """Type every target through a fresh completer on ``backend``."""
    gateway = gateway_with(backend)
    completer = Completer(
        gateway, budget=budget_of(args), related=Related(stdlib_root(), lambda: symbols)
    )
    rng = random.Random(args.seed)
    run = Run()
    try:
        for target in targets:
            await type_target(
                completer,
                target,
                session=session,
                key_s=args.key_ms / 1000,
                debounce_s=args.debounce_ms / 1000,
                max_chars=args.chars,
                rng=rng,
                pause_rate=args.pause_rate,
                max_pauses=max_pauses,
                run=run,
            )
            print(
                f"  typed {target.path}:{target.name}  pauses so far {len(run.pauses)}", flush=True
            )
    finally:
        await completer.sessions.close()
    return run


async def no_reuse(
    backend: EmbeddedBackend, symbols: Any, pauses: list[Pause], args: argparse.Namespace
) -> list[float]:
    """Latency at the first warm pauses with ``cache_prompt`` off: debounce plus one request
    that computes its whole prompt (in-between keystrokes are not replayed: each would hold
    the model for as long, since prompt processing cannot be interrupted)."""
    gateway = gateway_with(backend)
    completer = Completer(
        gateway, budget=budget_of(args), related=Related(stdlib_root(), lambda: symbols)
    )
    out: list[float] = []
    for p in [p for p in pauses if not p.cold][: args.no_reuse_pauses]:
        request = CompletionRequest(
            prefix=p.prefix, suffix=p.suffix, path=p.target, language="python"
        )
        began = time.perf_counter()
        await asyncio.sleep(args.debounce_ms / 1000)
        await completer.complete(request)
        out.append((time.perf_counter() - began) * 1000)
    await completer.sessions.close()
    return out


def budget_of(args: argparse.Namespace) -> Budget:
    """The shipped budget, with the options' overrides."""
    budget = Budget()
    return Budget(
        prefix_tokens=budget.prefix_tokens,
        suffix_tokens=args.suffix_tokens
        if args.suffix_tokens is not None
        else budget.suffix_tokens,
        context_tokens=args.context_tokens
        if args.context_tokens is not None
        else budget.context_tokens,
        line_tokens=budget.line_tokens,
        block_tokens=args.block_tokens or budget.block_tokens,
    )


async def baseline(
    backend: EmbeddedBackend, pauses: list[Pause], args: argparse.Namespace
) -> list[str]:
    """Prefix-only suggestions at the same points (no suffix, no snippets), untimed."""
    gateway = gateway_with(backend)
    completer = Completer(gateway, budget=budget_of(args))
    out: list[str] = []
    for p in pauses:
        request = CompletionRequest(
            prefix=p.prefix, suffix="", path=p.target, language="python",
            session="baseline", context=False,
        )  # fmt: skip
        out.append((await completer.complete(request)).text)
    await completer.sessions.close()
    return out


async def overhead(
    backend: EmbeddedBackend, pauses: list[Pause], args: argparse.Namespace
) -> list[float]:
    """Per point: a one-off request through the engine (fresh response cache) over the
    raw runtime call with the very prompt the engine sent, both on a warm KV cache
    (one raw 1-token call first), order alternating. The engine may stop earlier (its
    stop rules), which counts in its favour, as it does for the user."""
    from mimiverse.gateway.base import FimRequest

    sent: list[FimRequest] = []
    original = backend.fim_stream

    def recording(request: FimRequest) -> Any:
        sent.append(request)
        return original(request)

    backend.fim_stream = recording  # type: ignore[method-assign]
    ratios: list[float] = []
    try:
        for i, p in enumerate([p for p in pauses if not p.cold][: args.overhead_points]):
            request = CompletionRequest(
                prefix=p.prefix, suffix=p.suffix, path=p.target, language="python",
                context=False,
            )  # fmt: skip
            sent.clear()
            await Completer(gateway_with(backend), budget=budget_of(args)).complete(request)
            fim = sent[-1]
            prompt, stop = backend.fim_prompt(fim)
            body: dict[str, Any] = {
                "prompt": prompt, "max_tokens": fim.max_tokens, "temperature": 0.0,
                "stop": stop, "cache_prompt": True,
            }  # fmt: skip
            if fim.n_indent:
                body["n_indent"] = fim.n_indent
            engine = backend._server

            async def raw(b: dict[str, Any] = body, e: Any = engine) -> float:
                began = time.perf_counter()
                await asyncio.to_thread(e.handle_completions, b)
                return time.perf_counter() - began

            async def ours(r: CompletionRequest = request) -> float:
                began = time.perf_counter()
                await Completer(gateway_with(backend), budget=budget_of(args)).complete(r)
                return time.perf_counter() - began

            await raw({**body, "max_tokens": 1})
            if i % 2:
                t_raw, t_ours = await raw(), await ours()
            else:
                t_ours, t_raw = await ours(), await raw()
            ratios.append(t_ours / t_raw)
    finally:
        backend.fim_stream = original  # type: ignore[method-assign]
    return ratios


def quality(pauses: list[Pause], suggestions: list[str]) -> tuple[float, float]:
    """Exact-match rate and mean edit similarity of first lines against the truth."""
    if not pauses:
        return float("nan"), float("nan")
    exact = [first_line(s) == p.truth for p, s in zip(pauses, suggestions, strict=True)]
    sims = [similarity(first_line(s), p.truth) for p, s in zip(pauses, suggestions, strict=True)]
    return sum(exact) / len(exact), sum(sims) / len(sims)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load1, busy = load_check()
    settings = Settings()
    model = weights.ensure(weights.FIM_05B, settings.model_path)
    targets = pick_targets(args.functions, args.chars, args.seed)
    print(f"{len(targets)} functions: " + ", ".join(f"{t.path}:{t.name}" for t in targets))
    symbols = symbol_map(targets, args.neighbours)
    watch = CpuWatch([os.getpid()])  # the model runs in this process
    mark = watch.mark()
    began = time.perf_counter()

    print("typing with KV-prefix reuse …", flush=True)
    backend = await load_backend(model, args.threads, cache_prompt=True)
    try:
        ours = await typing_run(
            backend, targets, symbols, args, max_pauses=args.pauses, session="ours"
        )
        print("prefix-only baseline at the same points …", flush=True)
        base = await baseline(backend, ours.pauses, args)
        print("engine overhead against the raw runtime …", flush=True)
        ratios = await overhead(backend, ours.pauses, args)
    finally:
        await backend.close()

    print("the same pauses without KV-prefix reuse …", flush=True)
    backend = await load_backend(model, args.threads, cache_prompt=False)
    try:
        naive = await no_reuse(backend, symbols, ours.pauses, args)
    finally:
        await backend.close()
    elapsed = time.perf_counter() - began
    foreign = watch.foreign(mark)

    warm = [p.latency_ms for p in ours.pauses if not p.cold]
    cold = [p.latency_ms for p in ours.pauses if p.cold]
    warm_naive = naive
    em, sim = quality(ours.pauses, [p.suggestion for p in ours.pauses])
    em_base, sim_base = quality(ours.pauses, base)

    rows = [
        [p.target.rsplit("/", 1)[-1], p.typed, round(p.latency_ms), p.source,
         first_line(p.suggestion)[:30], b[:30], p.truth[:30]]
        for p, b in zip(ours.pauses, base, strict=True)
    ]  # fmt: skip
    print(table(["file", "typed", "ms", "source", "ours", "prefix-only", "truth"], rows))
    print(f"requests sent {ours.requests}, answered by source {ours.sources}")
    p50, p95 = percentile(warm, 50), percentile(warm, 95)
    reliable = not busy and foreign < 0.1 * elapsed * 2
    return {
        "bench": "fim",
        "typing_p50_ms": rounded(p50, 1),
        "typing_p95_ms": rounded(p95, 1),
        "typing_no_reuse_p50_ms": rounded(percentile(warm_naive, 50), 1),
        "typing_no_reuse_p95_ms": rounded(percentile(warm_naive, 95), 1),
        "cold_p50_ms": rounded(median(cold), 1),
        "overhead_ratio": rounded(median(ratios)),
        "exact_match": rounded(em),
        "edit_similarity": rounded(sim),
        "baseline_exact_match": rounded(em_base),
        "baseline_edit_similarity": rounded(sim_base),
        "pauses": len(warm),
        "no_reuse_pauses": len(warm_naive),
        "functions": len(targets),
        "requests": ours.requests,
        "sources": ours.sources,
        "threads": args.threads,
        "budget": vars(budget_of(args)),
        "load1": round(load1, 2),
        "load_warning": busy,
        "foreign_cpu_s": round(foreign, 1),
        "reliable": reliable,
        "goals_met": (p50 <= GOAL_P50_MS and p95 <= GOAL_P95_MS and sim > sim_base)
        if reliable
        else None,
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print the JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 functions, ~1 minute")
    parser.add_argument("--functions", type=int, help="functions typed (2 quick, 8 full)")
    parser.add_argument("--chars", type=int, help="characters typed per function (160 / 320)")
    parser.add_argument("--pauses", type=int, default=1000, help="most pauses per function")
    parser.add_argument("--no-reuse-pauses", type=int, help="pauses timed without reuse (4 / 12)")
    parser.add_argument("--pause-rate", type=float, default=0.1, help="chance of a pause per key")
    parser.add_argument("--key-ms", type=float, default=75.0, help="time between keystrokes")
    parser.add_argument("--debounce-ms", type=float, default=25.0, help="editor debounce")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--neighbours", type=int, default=12, help="sibling files indexed")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--overhead-points", type=int, default=8, help="points timed raw vs ours")
    parser.add_argument("--suffix-tokens", type=int, help="override the suffix budget")
    parser.add_argument("--context-tokens", type=int, help="override the related-snippet budget")
    parser.add_argument("--block-tokens", type=int, help="override the multi-line token limit")
    args = parser.parse_args(argv)
    args.functions = args.functions or (2 if args.quick else 8)
    args.chars = args.chars or (160 if args.quick else 320)
    args.no_reuse_pauses = args.no_reuse_pauses or (4 if args.quick else 12)
    figures = asyncio.run(main_async(args))
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

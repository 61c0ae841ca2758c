"""The agent: well-formed tool calls of the chat model, and small bug-fix tasks solved.

    flock /tmp/mimi-bench.lock .venv/bin/python bench/agent.py --quick  # ~13 min
    flock /tmp/mimi-bench.lock .venv/bin/python bench/agent.py          # ~1.5 h

``wellformed_tool_call_rate``: each prompt of ``agent_data/prompts.toml`` opens a fresh
session on a git copy of its fixture repo and asks for one model step
(``AgentService.probe_step``: nothing runs). Well-formed = the reply parsed into a known
tool (or ``finish``) whose arguments validate against that tool's schema.

``tasks_solved`` / ``tasks_total``: each ``agent_data/tasks/<name>/`` is a tiny Python repo
whose tests fail because of one small bug. It is copied (without ``task.toml``) to a temp
dir and committed to git; the agent runs the task's request with auto-approve; solved =
the task's ``check`` exits 0 afterwards. ``task.toml``'s ``fix`` is the reference fix
(``tests/bench/test_agent_data.py`` proves each task fails before it and passes after).

The model is the embedded chat model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, in-process), or
an OpenAI-compatible server with ``--model-url``. On 2 idle cores a step takes 15-25 s
(a ~1,400-token prompt, then schema-constrained decoding).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cores, emit, load_check, median, rounded, table

DATA = Path(__file__).resolve().parent / "agent_data"
QUICK_PROMPTS = 10
QUICK_TASKS = ("temperature", "client")
GOAL_WELLFORMED = 0.95


@dataclass(frozen=True)
class Prompt:
    """One user request, asked of a fresh session on a fixture repo."""

    id: str
    repo: str
    prompt: str
    expect: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """A fixture repo with one bug, the user's request, and how to tell it is fixed."""

    name: str
    root: Path
    task: str
    check: str
    difficulty: str
    fix: tuple[dict[str, str], ...]


def load_prompts(path: Path = DATA / "prompts.toml") -> list[Prompt]:
    """The prompts, in file order."""
    rows = tomllib.loads(path.read_text("utf-8"))["prompt"]
    return [Prompt(r["id"], r["repo"], r["prompt"], tuple(r.get("expect", ()))) for r in rows]


def load_tasks(names: tuple[str, ...] | None = None) -> list[Task]:
    """The task fixtures (all, or ``names``), sorted by name."""
    tasks = []
    for toml in sorted((DATA / "tasks").glob("*/task.toml")):
        if names is not None and toml.parent.name not in names:
            continue
        spec = tomllib.loads(toml.read_text("utf-8"))
        tasks.append(
            Task(
                toml.parent.name,
                toml.parent,
                spec["task"],
                spec["check"],
                spec.get("difficulty", ""),
                tuple(spec.get("fix", ())),
            )
        )
    return tasks


def copy_repo(source: Path, dest: Path, *, git: bool = True) -> Path:
    """``source`` copied to ``dest`` without ``task.toml`` or caches, committed to git."""
    skip = shutil.ignore_patterns("task.toml", "__pycache__", ".pytest_cache")
    shutil.copytree(source, dest, ignore=skip)
    if git:
        for cmd in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "config", "user.name", "mimiverse-bench"],
            ["git", "config", "user.email", "bench@localhost"],
            ["git", "add", "-A"],
            ["git", "commit", "-q", "-m", "initial"],
        ):
            subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def apply_fix(root: Path, fix: tuple[dict[str, str], ...]) -> None:
    """Apply the reference fix; ValueError unless each ``search`` occurs exactly once."""
    for edit in fix:
        path = root / edit["path"]
        text = path.read_text("utf-8")
        if text.count(edit["search"]) != 1:
            raise ValueError(f"{edit['path']}: the fix's search text must occur exactly once")
        path.write_text(text.replace(edit["search"], edit["replace"]), "utf-8")


def run_check(root: Path, check: str, timeout_s: float = 120.0) -> tuple[bool, str]:
    """Run ``check`` in ``root`` (``python`` = this interpreter): passed, and its output."""
    argv = shlex.split(check)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MIMI_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        done = subprocess.run(
            argv, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:.0f}s"
    return done.returncode == 0, done.stdout + done.stderr


# --- the model and the agent ----------------------------------------------------------------


def build_settings(args: argparse.Namespace, data_dir: Path) -> Any:
    """Settings for the bench: temp data dir (the usual models dir), memory cache, no embedder."""
    from mimiverse.settings import EndpointSettings, Settings

    common: dict[str, Any] = {
        "data_dir": data_dir,
        "models_dir": Settings().model_path,  # assembled GGUFs are reused, not rebuilt
        "project_root": data_dir,
        "cache_store": "memory",
        "embedded_embed": False,
        "embedded_chat_threads": args.threads or cores(),
        "agent_max_steps": args.max_steps,
        "agent_max_wall_s": args.task_wall_s,
        "agent_auto_approve": True,
    }
    if args.model_url:
        endpoint = EndpointSettings(
            name="bench-chat",
            kind="openai",
            url=args.model_url,
            model=args.model,
            tasks=["chat"],
            tools=args.native_tools,
            timeout_s=600,
        )
        return Settings(**common, embedded=False, endpoints=[endpoint])
    return Settings(**common)


async def probe_prompts(service: Any, prompts: list[Prompt], work: Path) -> list[dict[str, Any]]:
    """One probed step per prompt; a dict per prompt (ok, reason, tools, seconds)."""
    roots: dict[str, Path] = {}
    rows = []
    for n, prompt in enumerate(prompts, 1):
        if prompt.repo not in roots:
            roots[prompt.repo] = copy_repo(DATA / "tasks" / prompt.repo, work / f"p-{prompt.repo}")
        session = service.create(roots[prompt.repo], title=prompt.id, auto_approve=False)
        t0 = time.perf_counter()
        probe = await service.probe_step(session.id, prompt.prompt)
        seconds = time.perf_counter() - t0
        tools = [call.name for call in probe.calls]
        rows.append(
            {
                "id": prompt.id,
                "ok": probe.wellformed,
                "reason": probe.reason,
                "text": probe.text,
                "tools": tools,
                "expect": prompt.expect,
                "seconds": seconds,
            }
        )
        mark = "ok " if probe.wellformed else "BAD"
        shown = ", ".join(tools) if probe.wellformed else probe.reason[:90]
        print(
            f"  [{mark}] {n:2}/{len(prompts)} {prompt.id:<24} {seconds:5.1f}s  {shown}", flush=True
        )
    return rows


async def solve_tasks(
    service: Any, tasks: list[Task], work: Path, *, verbose: bool = False
) -> list[dict[str, Any]]:
    """Run the agent on each task, then its check; a dict per task."""
    rows = []
    for task in tasks:
        root = copy_repo(task.root, work / f"t-{task.name}")
        session = service.create(root, title=task.name, auto_approve=True)
        t0 = time.perf_counter()
        try:
            outcome = await service.run(session.id, task.task)
            status, steps, answer = outcome.status, outcome.steps, outcome.answer
        except Exception as exc:  # a crash is a failed task, and the run goes on
            status, steps, answer = "crashed", 0, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        solved, output = run_check(root, task.check)
        trail, malformed = trail_of(session.log.events)
        rows.append(
            {
                "task": task.name,
                "difficulty": task.difficulty,
                "status": status,
                "steps": steps,
                "malformed": malformed,
                "seconds": seconds,
                "solved": solved,
            }
        )
        verdict = "SOLVED" if solved else "not solved"
        print(f"  {task.name}: {verdict} ({status}, {steps} steps, {seconds:.0f}s)", flush=True)
        print(f"    calls: {trail}", flush=True)
        print(f"    answer: {' '.join(answer.split())[:200]}", flush=True)
        if not solved:
            print(f"    check: {pytest_summary(output)}", flush=True)
        if verbose:
            print_details(session.log.events, root)
    return rows


def trail_of(events: list[Any]) -> tuple[str, int]:
    """The tools a run called in order (failed calls marked ✗), and its malformed replies."""
    names, malformed = [], 0
    for event in events:
        if event.kind == "observation":
            names.append(event.data.get("name", "?") + ("" if event.data.get("ok") else "✗"))
        elif event.kind == "error" and "raw" in event.data:
            names.append("(malformed)")
            malformed += 1
    return ", ".join(names) or "(none)", malformed


def print_details(events: list[Any], root: Path) -> None:
    """Each tool call with its arguments and result, then the repo's final ``git diff``."""
    for event in events:
        if event.kind == "tool_call":
            print(f"      → {event.data['name']} {json.dumps(event.data['arguments'])[:300]}")
        elif event.kind == "observation":
            print(f"        {' '.join(event.data['text'].split())[:200]}")
    diff = subprocess.run(["git", "diff"], cwd=root, capture_output=True, text=True).stdout
    print("      " + "\n      ".join(diff.splitlines()[:60] or ["(no diff)"]))


def pytest_summary(output: str) -> str:
    """pytest's last line that counts tests (else the output's last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    counted = [line for line in lines if " failed" in line or " passed" in line or "error" in line]
    return (counted or lines or ["(no output)"])[-1][:200]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from mimiverse.agent.service import AgentService
    from mimiverse.agent.store import AgentStore
    from mimiverse.gateway.factory import build_gateway

    load1, busy = load_check()
    prompts = load_prompts()
    tasks = load_tasks(tuple(args.task) if args.task else QUICK_TASKS if args.quick else None)
    if args.quick:
        prompts = prompts[:: max(1, len(prompts) // QUICK_PROMPTS)][:QUICK_PROMPTS]
    prompts = [] if args.tasks_only else prompts
    tasks = [] if args.prompts_only else tasks

    work = Path(tempfile.mkdtemp(prefix="mimi-bench-agent-"))
    settings = build_settings(args, work / "data")
    gateway = build_gateway(settings)
    await gateway.start(preload=False)
    service = AgentService(settings, gateway, store=AgentStore.memory())
    model = args.model_url or "embedded Qwen2.5-Coder-1.5B-Instruct Q4_K_M"
    print(f"model: {model}; tool mode {settings.agent_tool_mode}; max {args.max_steps} steps")
    try:
        probes = await probe_prompts(service, prompts, work) if prompts else []
        solved = await solve_tasks(service, tasks, work, verbose=args.verbose) if tasks else []
    finally:
        await service.close()
        await gateway.close()
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, Any] = {"bench": "agent"}
    if probes:
        report_probes(probes)
        good = sum(p["ok"] for p in probes)
        figures["wellformed_tool_call_rate"] = rounded(good / len(probes))
        figures["prompts"] = len(probes)
        figures["probe_p50_s"] = rounded(median([p["seconds"] for p in probes]), 2)
        figures["first_tools"] = dict(Counter(p["tools"][0] for p in probes if p["ok"]))
    if solved:
        columns = ["task", "difficulty", "status", "steps", "malformed", "seconds", "solved"]
        print("\n" + table(columns, [[r[c] for c in columns] for r in solved]))
        figures["tasks_solved"] = sum(r["solved"] for r in solved)
        figures["tasks_total"] = len(solved)
        figures["task_steps_p50"] = rounded(median([r["steps"] for r in solved]), 1)
        figures["task_p50_s"] = rounded(median([r["seconds"] for r in solved]), 1)
        figures["task_malformed_steps"] = sum(r["malformed"] for r in solved)
    figures.update(
        model=args.model_url or "embedded",
        max_steps=args.max_steps,
        quick=args.quick,
        load1=round(load1, 2),
        load_warning=busy,
    )
    if "wellformed_tool_call_rate" in figures:
        figures["goal_met"] = figures["wellformed_tool_call_rate"] >= GOAL_WELLFORMED
    return figures


def report_probes(probes: list[dict[str, Any]]) -> None:
    """The failures with their reasons, and which tools the first steps called."""
    bad = [p for p in probes if not p["ok"]]
    print(f"\nwell-formed: {len(probes) - len(bad)}/{len(probes)}")
    for p in bad:
        print(f"  {p['id']}: {p['reason']}")
        print(f"    reply: {' '.join(p['text'].split())[:240]!r}")
    counts = Counter(name for p in probes if p["ok"] for name in p["tools"])
    rows = [[name, n] for name, n in counts.most_common()]
    print(
        "\ntools called (all calls of well-formed first steps):\n" + table(["tool", "calls"], rows)
    )
    matched = sum(bool(set(p["tools"]) & set(p["expect"])) for p in probes if p["ok"])
    print(f"first step called an expected tool: {matched}/{len(probes) - len(bad)} (informational)")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(
            "Slow on 2 cores (15-25 s a model step): --quick takes ~13 minutes, the full run "
            "(65 prompts, 15 tasks of up to --max-steps steps) ~1.5 hours."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_PROMPTS} prompts, 2 tasks (~13 min)"
    )
    parser.add_argument("--prompts-only", action="store_true", help="only the well-formed rate")
    parser.add_argument("--tasks-only", action="store_true", help="only the bug-fix tasks")
    parser.add_argument("--task", action="append", help="run only this task (repeatable)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each task's calls and final diff"
    )
    parser.add_argument("--max-steps", type=int, default=12, help="model steps per task")
    parser.add_argument("--task-wall-s", type=float, default=900.0, help="seconds per task")
    parser.add_argument("--threads", type=int, default=0, help="chat model threads (0: all cores)")
    parser.add_argument("--model-url", help="an OpenAI-compatible server (…/v1) instead")
    parser.add_argument("--model", default="default", help="model id sent to --model-url")
    parser.add_argument(
        "--native-tools", action="store_true", help="--model-url supports OpenAI tool calls"
    )
    args = parser.parse_args(argv)
    if args.prompts_only and args.tasks_only:
        parser.error("--prompts-only and --tasks-only exclude each other")
    emit(asyncio.run(main_async(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

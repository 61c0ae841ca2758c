"""`mimiverse doctor`: what works, what does not, and the exact command that fixes it."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mimiverse.errors import MimiError
from mimiverse.gateway import weights
from mimiverse.settings import Settings


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _sqlite() -> Check:
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
        return Check("store: sqlite", "ok", f"SQLite {sqlite3.sqlite_version} with FTS5")
    except sqlite3.OperationalError:
        return Check(
            "store: sqlite", "fail", f"SQLite {sqlite3.sqlite_version} lacks FTS5",
            "use a Python built against a SQLite with FTS5 (Debian's python3 has it)",
        )  # fmt: skip
    finally:
        con.close()


def _redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("store: redis", "ok", "not configured (in-process cache and limits)")
    try:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            client.ping()
        finally:
            client.close()
        return Check("store: redis", "ok", f"{settings.redis_url} answers")
    except Exception as exc:
        return Check(
            "store: redis", "fail", f"{settings.redis_url}: {exc}",
            "apt-get install -y redis-server && redis-server --bind 127.0.0.1 --port 6379 --save '' --daemonize yes",
        )  # fmt: skip


def _sandbox(settings: Settings) -> Check:
    from mimiverse.errors import SandboxError
    from mimiverse.workspace.sandbox import Sandbox

    try:
        sandbox = Sandbox.from_settings(settings, settings.project_root.expanduser().resolve())
    except SandboxError as exc:
        return Check(
            "sandbox", "warn", "bubblewrap not installed (needed to run agent commands)",
            "apt-get install -y bubblewrap",
        )  if "bubblewrap" in exc.message else Check("sandbox", "warn", exc.message)  # fmt: skip
    about = sandbox.describe()
    status = "warn" if sandbox.unsafe else "ok"
    detail = f"{about['isolation']}; limits by {about['limits']}; network {'on' if about['network'] else 'off'}"
    return Check("sandbox", status, detail)


def _runtime() -> Check:
    if importlib.util.find_spec("xllamacpp") is None:
        return Check("runtime: xllamacpp", "fail", "not installed", "pip install xllamacpp")
    import xllamacpp

    return Check(
        "runtime: xllamacpp",
        "ok",
        f"{xllamacpp.__version__}; {xllamacpp.get_system_info().strip()}",
    )


def _weights(settings: Settings) -> list[Check]:
    checks = []
    for model in weights.BUNDLED.values():
        s = weights.status(model, settings.model_path)
        if not s["parts_ok"]:
            checks.append(Check(f"weights: {model.key}", "fail", str(s["parts"]), str(s["fix"])))
        elif not s["verified"]:
            checks.append(Check(
                f"weights: {model.key}", "warn", "parts installed; assembled on first start",
                f"mimiverse doctor --load  (assembles {s['file']})",
            ))  # fmt: skip
        else:
            checks.append(Check(f"weights: {model.key}", "ok", f"verified {s['file']}"))
    return checks


async def run_checks(settings: Settings, *, load: bool = False) -> list[Check]:
    """Every check, in report order."""
    from mimiverse.gateway.factory import build_gateway

    checks = [_runtime(), *_weights(settings), _sqlite(), _redis(settings), _sandbox(settings)]
    try:
        gw = build_gateway(settings)
    except MimiError as exc:
        checks.append(Check("gateway", "fail", exc.message, "fix the setting named above"))
        return checks
    try:
        if load:
            for endpoint in gw.router.endpoints.values():
                start = getattr(endpoint.backend, "start", None)
                if start is not None:
                    try:
                        await start()
                    except MimiError as exc:
                        checks.append(Check(f"load: {endpoint.name}", "fail", exc.message))
        await gw.router.check_all()
        for endpoint in gw.router.endpoints.values():
            caps = endpoint.backend.capabilities
            tasks = ",".join(t for t in ("chat", "fim", "embed", "rerank") if caps.supports(t))
            detail = f"{endpoint.backend.kind} · {endpoint.backend.model} · {tasks} · {endpoint.health_detail}"
            fix = "" if endpoint.healthy else _endpoint_fix(endpoint.backend.kind)
            checks.append(
                Check(
                    f"endpoint: {endpoint.name}", "ok" if endpoint.healthy else "fail", detail, fix
                )
            )
        checks.extend(completion_budget(settings, gw.router.routes.get("fim", [])))
        for task, route in gw.router.routes.items():
            if not route:
                checks.append(Check(
                    f"route: {task}", "warn", "no endpoint serves this task",
                    "add an [[endpoints]] entry with tasks = [\"" + task + "\"] to mimiverse.toml",
                ))  # fmt: skip
    finally:
        await asyncio.shield(gw.close())
    return checks


def completion_budget(settings: Settings, route: Sequence[Any]) -> list[Check]:
    """Whether each FIM endpoint's context holds what completions may send and generate."""
    from mimiverse.complete.service import budget_of

    budget = budget_of(settings)
    need = budget.total_tokens()
    checks = []
    for endpoint in route:
        have = endpoint.backend.capabilities.context_length
        name = f"complete: {endpoint.name}"
        if have >= need:
            checks.append(Check(name, "ok", f"context {have} tokens holds the budget ({need})"))
            continue
        raise_it = (
            "MIMI_EMBEDDED_FIM_CTX"
            if endpoint.backend.kind == "embedded"
            else f"context_length of endpoint '{endpoint.name}'"
        )
        checks.append(Check(
            name, "fail",
            f"context is {have} tokens but a completion may need {need} (prefix "
            f"{budget.prefix_tokens} + typing {budget.middle_tokens()} + suffix "
            f"{budget.suffix_tokens} + related {budget.context_tokens} + generated "
            f"{max(budget.line_tokens, budget.block_tokens)} + template): long files will fail",
            f"raise {raise_it} to at least {need}, or lower MIMI_COMPLETE_PREFIX_TOKENS, "
            "MIMI_COMPLETE_SUFFIX_TOKENS or MIMI_COMPLETE_CONTEXT_TOKENS",
        ))  # fmt: skip
    return checks


def _endpoint_fix(kind: str) -> str:
    return {
        "embedded": "pip install -e '.[models]'  (or bash scripts/setup)",
        "ollama": "start Ollama: ollama serve  (and ollama pull <model>)",
        "openai": "start the server at the endpoint's url, or fix url/api_key_env",
    }.get(kind, "")

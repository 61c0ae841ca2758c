"""`mimiverse agent "task"`: a live terminal view of the agent, with per-hunk approval.

In-process by default (embedded models, the data dir's store); ``--url`` drives a running
`mimiverse serve` through its HTTP API and SSE events instead. Either way the same events
are rendered, and each proposed hunk is shown and approved or rejected at the prompt
(``y`` yes, ``n`` no, ``a`` all remaining, ``d`` reject the rest) unless ``--yes``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from mimiverse.agent.events import Event
from mimiverse.settings import Settings

console = Console(highlight=False)
Decide = Callable[[str, list[str], list[str]], Awaitable[None]]
"""(changeset id, approved hunk ids, rejected hunk ids)."""

EXIT_CODES = {"done": 0, "stuck": 3, "budget": 4, "failed": 1, "cancelled": 130}


async def run_agent(
    settings: Settings, task: str, *, root: Path, auto_approve: bool, url: str = ""
) -> int:
    """Run ``task`` on ``root`` and render its events; the exit code reflects the outcome."""
    if url:
        return await _remote(url.rstrip("/"), task, auto_approve)
    from mimiverse.agent.service import AgentService
    from mimiverse.gateway.factory import build_gateway

    gateway = build_gateway(settings)
    await gateway.start(preload=False)
    service = AgentService(settings, gateway)
    try:
        await service.connect()
        session = service.create(root, auto_approve=auto_approve)
        console.print(f"[dim]session {session.id} · {escape(str(session.root))}[/dim]")
        after = session.log.last_seq
        service.start(session.id, task)

        async def decide(changeset_id: str, yes: list[str], no: list[str]) -> None:
            if yes:
                service.decide(changeset_id, approve=yes)
            if no:
                service.decide(changeset_id, reject=no)

        return await render(session.log.follow(after), decide, auto_approve)
    finally:
        await service.close()
        await gateway.close()


async def render(events: AsyncIterator[Event], decide: Decide, auto_approve: bool) -> int:
    """Print each event; ask about each proposed hunk. Returns the exit code."""
    status = "failed"
    async for event in events:
        data = event.data
        kind = event.kind
        if kind == "plan":
            console.print("[bold]Plan[/bold]")
            for n, step in enumerate(data.get("steps", []), 1):
                console.print(f"  {n}. {escape(str(step))}")
        elif kind == "step_started":
            console.rule(f"[dim]step {data['step']}/{data['max_steps']}[/dim]", style="dim")
        elif kind == "model_text":
            console.print(f"[italic]{escape(str(data.get('text', '')))}[/italic]")
        elif kind == "tool_call":
            args = json.dumps(data.get("arguments", {}), ensure_ascii=False)
            console.print(f"[cyan]→ {data['name']}[/cyan] [dim]{escape(_clip(args, 200))}[/dim]")
        elif kind == "observation":
            colour = "green" if data.get("ok") else "red"
            console.print(f"[{colour}]{escape(_clip(str(data.get('text', '')), 600))}[/{colour}]")
        elif kind == "output":
            sys.stdout.write(str(data.get("text", "")))
            sys.stdout.flush()
        elif kind == "proposed_diff":
            await _review(data, decide, auto_approve)
        elif kind == "changeset_applied":
            console.print(
                f"[green]applied {data['id']}: {', '.join(data.get('files', []))}[/green]"
            )
        elif kind == "test_result":
            verdict = "[green]tests pass[/green]" if data.get("passed") else "[red]tests fail[/red]"
            console.print(
                f"{verdict} [dim]{escape(str(data.get('command', '')))} {data.get('counts', {})}[/dim]"
            )
        elif kind == "context_summarised":
            console.print(
                f"[dim]folded {data.get('folded_steps')} old steps to fit the context[/dim]"
            )
        elif kind == "error":
            console.print(f"[yellow]! {escape(str(data.get('message', '')))}[/yellow]")
        elif kind == "answer":
            console.rule()
            console.print(escape(str(data.get("text", ""))))
        elif kind == "session_finished":
            status = str(data.get("status", "failed"))
            usage = data.get("usage", {})
            console.print(
                f"[dim]{status} · {data.get('steps')} steps · {usage.get('total_tokens', 0)} tokens"
                f" · {data.get('seconds')} s[/dim]"
            )
            break
    return EXIT_CODES.get(status, 1)


async def _review(data: dict[str, Any], decide: Decide, auto_approve: bool) -> None:
    changeset_id = str(data["id"])
    console.print(
        f"[bold]Proposed changes {changeset_id}[/bold]: {', '.join(data.get('files', []))}"
    )
    if auto_approve:
        console.print(Syntax(str(data.get("diff", "")), "diff", theme="ansi_dark"))
        return
    yes: list[str] = []
    no: list[str] = []
    rest: str | None = None
    for hunk in data.get("hunks", []):
        hunk_id = str(hunk["id"])
        if rest is not None:
            (yes if rest == "y" else no).append(hunk_id)
            continue
        body = "\n".join(
            [f"--- {hunk['path']}", f"+++ {hunk['path']}", str(hunk["header"]), *hunk["lines"]]
        )
        console.print(Syntax(body, "diff", theme="ansi_dark"))
        answer = await _ask(f"apply hunk {hunk_id}? [y]es [n]o [a]ll rest [d]rop rest ")
        if answer in ("a", "d"):
            rest = "y" if answer == "a" else "n"
            answer = rest
        (yes if answer == "y" else no).append(hunk_id)
    await decide(changeset_id, yes, no)


async def _ask(question: str) -> str:
    while True:
        try:
            text = (await asyncio.to_thread(console.input, question)).strip().lower()[:1]
        except EOFError:
            return "n"
        if text in ("y", "n", "a", "d"):
            return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _remote(url: str, task: str, auto_approve: bool) -> int:
    """Drive a running server: create a session, send the task, follow its SSE events."""
    import httpx

    from mimiverse.mcp.auth import api_token

    headers = {"Authorization": f"Bearer {api_token(Settings())}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as client:
        created = await client.post("/api/agent/sessions", json={"auto_approve": auto_approve})
        created.raise_for_status()
        session_id = created.json()["id"]
        sent = await client.post(
            f"/api/agent/sessions/{session_id}/messages", json={"content": task}
        )
        sent.raise_for_status()
        events_url = sent.json()["events_url"]

        async def decide(changeset_id: str, yes: list[str], no: list[str]) -> None:
            if yes:
                await client.post(
                    f"/api/agent/changesets/{changeset_id}/approve", json={"hunks": yes}
                )
            if no:
                await client.post(
                    f"/api/agent/changesets/{changeset_id}/reject", json={"hunks": no}
                )

        async def events() -> AsyncIterator[Event]:
            async with client.stream("GET", events_url) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        raw = json.loads(line[6:])
                        yield Event(
                            kind=raw["kind"], data=raw["data"], session_id=raw["session_id"],
                            seq=raw["seq"], at=raw["at"],
                        )  # fmt: skip

        return await render(events(), decide, auto_approve)

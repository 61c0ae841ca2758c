"""The agent end to end with the embedded Qwen2.5-Coder-1.5B (in-process, JSON mode).

The model works on a tiny repo whose test fails; the test plays the user and approves
every proposal. A 1.5B model may not find the fix, so the test asserts the plumbing the
real model must drive either way: schema-constrained calls that parse, tools that run,
and — once it edits — a real diff, an approval, an apply and a sandboxed test run. Whether
it solved the task is printed (the benchmark counts that: bench/agent.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mimiverse.agent.service import AgentService
from mimiverse.agent.store import AgentStore
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.settings import Settings
from mimiverse.testing import gateway_with

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


@pytest.fixture
async def real_agent(
    models_dir: Path, make_settings: Callable[..., Settings], project: Path
) -> AsyncIterator[AgentService]:
    from mimiverse.gateway import weights

    gguf = weights.ensure(weights.CHAT_15B, models_dir)
    backend = EmbeddedBackend(
        "embedded-chat", gguf, tasks=("chat",), context_length=8192, parallel=1, threads=2
    )
    await backend.start()
    gateway = gateway_with(backend)
    for endpoint in gateway.router.routes["chat"]:
        endpoint.timeout_s = 600  # as the factory sets it: 2 shared cores are slow
    await gateway.start(preload=False)
    settings = make_settings(project_root=project, agent_max_steps=6, agent_fix_rounds=1)
    store = AgentStore(settings.data_dir / "mimiverse.sqlite3")
    service = AgentService(settings, gateway, store)
    yield service
    await service.close()
    await gateway.close()
    store.close()


async def test_embedded_model_drives_the_whole_loop(
    real_agent: AgentService, project: Path
) -> None:
    session = real_agent.create(project)
    proposals: list[str] = []

    async def approve() -> None:
        async for event in session.log.follow(0):
            if event.kind == "proposed_diff":
                proposals.append(event.data["diff"])
                real_agent.decide(event.data["id"], all=True)

    watcher = asyncio.create_task(approve())
    outcome = await real_agent.run(
        session.id,
        "The test tests/test_calc.py::test_add fails. Read calc.py, fix the bug in add() "
        "with edit_file, then run the tests.",
    )
    await watcher
    events = [e for e in session.log.events if e.kind != "output"]
    story = [(e.kind, e.data.get("name", "")) for e in events]
    print("\n".join(f"{k} {n}" for k, n in story))
    print("outcome:", outcome.status, outcome.answer)

    calls = [e for e in events if e.kind == "tool_call" and not e.data.get("auto")]
    malformed = [e for e in events if e.kind == "error" and "not a usable" in e.data["message"]]
    assert calls, story
    assert len(malformed) <= len(calls) // 4, malformed  # schema-constrained: nearly all parse
    observations = [e for e in events if e.kind == "observation"]
    assert any(o.data["ok"] for o in observations)
    assert events[0].kind == "session_started" and events[-1].kind == "session_finished"
    if any(c.data["name"] == "edit_file" for c in calls) and proposals:
        assert proposals[0].startswith("---") and "+" in proposals[0]
        applied = [e for e in events if e.kind == "changeset_applied"]
        tests = [e for e in events if e.kind == "test_result"]
        assert applied, story
        if outcome.status == "done":  # an answer after an apply comes after a test run
            assert tests and tests[-1].data["command"], story
    solved = "a + b" in (project / "calc.py").read_text()
    print("solved:", solved)

"""The agent loop with the scripted fake model: real tools, real sandbox, real store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mimiverse.agent.events import Event
from mimiverse.agent.service import AgentService
from mimiverse.testing import FakeBackend

from .conftest import CALC, step


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events if e.kind != "output"]


async def approve_when_proposed(agent: AgentService, session_id: str) -> list[str]:
    """Approve every proposal of a session as it arrives (what a user or the IDE does)."""
    approved = []
    async for event in agent.get(session_id).log.follow(0):
        if event.kind == "proposed_diff":
            approved.append(event.data["id"])
            agent.decide(event.data["id"], all=True)
    return approved


async def test_fixes_failing_test_with_approval_and_sandboxed_tests(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    fake_model.enqueue(
        step("read_file", plan=["read calc.py", "fix add", "run tests"], path="calc.py")
    )
    fake_model.enqueue(
        step("edit_file", path="calc.py", search="return a - b", replace="return a + b")
    )
    fake_model.enqueue(step("run_tests"))
    fake_model.enqueue(step("finish", answer="add() subtracted; it adds now and the tests pass."))
    session = agent.create(project)
    watcher = asyncio.create_task(approve_when_proposed(agent, session.id))
    outcome = await agent.run(session.id, "tests/test_calc.py::test_add fails, fix it")
    approved = await watcher

    assert outcome.status == "done", outcome.answer
    assert "adds now" in outcome.answer
    assert (project / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    events = session.log.events
    seen = kinds(events)
    for kind in ("session_started", "plan", "tool_call", "observation", "proposed_diff",
                 "changeset_decided", "changeset_applied", "test_result", "answer",
                 "session_finished"):  # fmt: skip
        assert kind in seen, (kind, seen)
    assert seen.index("proposed_diff") < seen.index("changeset_applied") < seen.index("test_result")
    proposal = next(e for e in events if e.kind == "proposed_diff")
    assert (
        "-    return a - b" in proposal.data["diff"]
        and "+    return a + b" in proposal.data["diff"]
    )
    assert approved == [proposal.data["id"]]
    result = next(e for e in events if e.kind == "test_result")
    assert result.data["passed"] is True
    # The edit waited for approval: the observation of edit_file says it is a proposal.
    edit_obs = [e for e in events if e.kind == "observation" and e.data["name"] == "edit_file"]
    assert edit_obs and edit_obs[0].data["ok"]
    # Every event was stored: a new service replays the same story.
    replay = AgentService(agent.settings, agent.gateway, agent.store).get(session.id)
    assert kinds(replay.log.events) == seen


async def test_bad_calls_become_observations_and_nothing_is_written(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    fake_model.enqueue(step("edit_file", path="calc.py", search="return a ** b", replace="x"))
    fake_model.enqueue(step("read_file", path="../outside.txt"))
    fake_model.enqueue(step("read_file", paht="calc.py"))
    fake_model.enqueue("this is not JSON at all")
    fake_model.enqueue(step("finish", answer="gave up"))
    session = agent.create(project)
    outcome = await agent.run(session.id, "break things")

    assert outcome.status == "done"
    assert (project / "calc.py").read_text() == CALC
    observations = [e.data for e in session.log.events if e.kind == "observation"]
    assert [o["ok"] for o in observations] == [False, False]
    assert (
        "not found in calc.py" in observations[0]["text"]
        and "return a * b" in observations[0]["text"]
    )
    assert "outside" in observations[1]["text"]
    errors = [e.data["message"] for e in session.log.events if e.kind == "error"]
    assert any("paht" in m or "path" in m for m in errors), errors
    assert any("JSON" in m for m in errors), errors
    # The corrective messages went back to the model.
    last_request = fake_model.calls[-1]
    text = str(last_request.messages)  # type: ignore[attr-defined]
    assert "could not be used" in text


def script_two_attempts(fake_model: FakeBackend, second: str) -> None:
    """A wrong first fix, then ``second`` as the fix round's attempt."""
    fake_model.enqueue(
        step("edit_file", path="calc.py", search="return a - b", replace="return a + b + 1")
    )
    fake_model.enqueue(step("finish", answer="fixed"))
    fake_model.enqueue(step("edit_file", path="calc.py", search="return a + b + 1", replace=second))
    fake_model.enqueue(step("finish", answer="fixed now"))


async def test_auto_fix_round_then_stuck_with_explanation(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    script_two_attempts(fake_model, "return a + b - 1")  # fix round 1: still wrong
    session = agent.create(project, auto_approve=True)
    outcome = await agent.run(session.id, "fix add")

    assert outcome.status == "stuck"
    assert "auto-fix" in outcome.answer and "test_add" in outcome.answer
    results = [e.data for e in session.log.events if e.kind == "test_result"]
    assert [r["passed"] for r in results] == [False, False]
    # The failure was fed back to the model before its second attempt.
    assert any("still fail" in str(c.messages) for c in fake_model.calls[2:3])  # type: ignore[attr-defined]


async def test_auto_fix_round_succeeds(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    script_two_attempts(fake_model, "return a + b")
    session = agent.create(project, auto_approve=True)
    outcome = await agent.run(session.id, "fix add")
    assert outcome.status == "done", outcome.answer
    results = [e.data["passed"] for e in session.log.events if e.kind == "test_result"]
    assert results == [False, True]
    assert "a + b" in (project / "calc.py").read_text()


async def test_changes_applied_mid_run_are_tested_before_the_answer(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    """A draft settled by another tool (here git_status) still gets a test run at finish."""
    fake_model.enqueue(
        step("edit_file", path="calc.py", search="return a - b", replace="return a + b")
    )
    fake_model.enqueue(step("git_status"))
    fake_model.enqueue(step("finish", answer="fixed and the tests pass"))
    session = agent.create(project, auto_approve=True)
    outcome = await agent.run(session.id, "fix add")

    assert outcome.status == "done", outcome.answer
    seen = kinds(session.log.events)
    assert seen.index("changeset_applied") < seen.index("test_result") < seen.index("answer")
    results = [e.data["passed"] for e in session.log.events if e.kind == "test_result"]
    assert results == [True]


async def test_rejected_changes_are_not_written_and_the_model_hears_it(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    fake_model.enqueue(step("edit_file", path="calc.py", search="return a - b", replace="return 0"))
    fake_model.enqueue(step("run_tests"))
    fake_model.enqueue(step("finish", answer="ok, leaving it"))
    session = agent.create(project)

    async def reject_all() -> None:
        async for event in session.log.follow(0):
            if event.kind == "proposed_diff":
                agent.decide(event.data["id"], all=False)

    watcher = asyncio.create_task(reject_all())
    outcome = await agent.run(session.id, "change add")
    await watcher
    assert outcome.status == "done"
    assert (project / "calc.py").read_text() == CALC
    obs = [
        e.data
        for e in session.log.events
        if e.kind == "observation" and e.data["name"] == "run_tests"
    ]
    assert obs and "rejected" in obs[0]["text"]


async def test_step_budget_stops_with_explanation(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    agent.settings.agent_max_steps = 3
    for _ in range(5):
        fake_model.enqueue(step("list_dir", path="."))
    fake_model.enqueue(step("read_file", path="calc.py"))
    session = agent.create(project)
    outcome = await agent.run(session.id, "look around")
    assert outcome.status in ("budget", "stuck")
    assert outcome.steps <= 3
    finished = session.log.events[-1]
    assert finished.kind == "session_finished" and finished.data["status"] == outcome.status


async def test_session_resumes_from_store_with_its_history(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    fake_model.enqueue(step("finish", answer="hello"))
    session = agent.create(project)
    await agent.run(session.id, "first task")
    fresh = AgentService(agent.settings, agent.gateway, agent.store)
    again = fresh.get(session.id)
    assert [e.message["content"] for e in again.history.entries if e.pinned] == ["first task"]
    fake_model.enqueue(step("finish", answer="second"))
    outcome = await fresh.run(session.id, "second task")
    assert outcome.answer == "second"
    sent = str(fake_model.calls[-1].messages)  # type: ignore[attr-defined]
    assert "first task" in sent and "second task" in sent


async def test_a_repeated_read_only_call_is_pointed_out(
    agent: AgentService, fake_model: FakeBackend, project: Path
) -> None:
    fake_model.enqueue(step("read_file", path="calc.py"))
    fake_model.enqueue(step("read_file", path="calc.py"))
    fake_model.enqueue(step("finish", answer="read twice"))
    session = agent.create(project)
    await agent.run(session.id, "read calc.py")
    texts = [e.data["text"] for e in session.log.events if e.kind == "observation"]
    assert "same call in step 1" not in texts[0] and "same call in step 1" in texts[1]

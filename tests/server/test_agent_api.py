"""The agent over HTTP: sessions, messages, SSE and WebSocket events, changeset review."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mimiverse.server.app import create_app
from mimiverse.settings import McpServerSettings, Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.agent.conftest import CALC, TEST_CALC, step

ECHO_SERVER = Path(__file__).parents[1] / "mcp" / "servers" / "echo_server.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return root


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend("fake-chat")


@pytest.fixture
def make_app(
    fake: FakeBackend, make_settings: Callable[..., Settings], repo: Path
) -> Callable[..., Any]:
    def build(**overrides: Any) -> Any:
        settings = make_settings(
            project_root=repo, index_on_start=False, embedded=False, **overrides
        )
        return create_app(settings, gateway_with(fake))

    return build


@pytest.fixture
async def client(make_app: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


async def wait_for(client: httpx.AsyncClient, session_id: str, kind: str) -> dict[str, Any]:
    """Poll the stored events until one of ``kind`` appears.

    (httpx's ASGI transport buffers whole responses, so live SSE is read after the run.)
    """
    url = f"/api/agent/sessions/{session_id}/events"
    for _ in range(600):
        events = (await client.get(url, params={"follow": "false"})).json()["events"]
        found = [e for e in events if e["kind"] == kind]
        if found:
            return found[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event")


async def sse_events(
    client: httpx.AsyncClient, url: str, on: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    """Follow an SSE stream to its session_finished event, calling ``on`` for each event."""
    seen = []
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            seen.append(event)
            result = on(event)
            if asyncio.iscoroutine(result):
                await result
            if event["kind"] == "session_finished":
                break
    return seen


async def test_task_review_and_apply_over_http(
    client: httpx.AsyncClient, fake: FakeBackend, repo: Path
) -> None:
    fake.enqueue(step("read_file", plan=["read", "fix", "test"], path="calc.py"))
    fake.enqueue(step("edit_file", path="calc.py", search="return a - b", replace="return a + b"))
    fake.enqueue(step("run_tests"))
    fake.enqueue(step("finish", answer="fixed add"))
    created = await client.post("/api/agent/sessions", json={"title": "fix"})
    assert created.status_code == 201
    session_id = created.json()["id"]
    sent = await client.post(
        f"/api/agent/sessions/{session_id}/messages", json={"content": "fix add"}
    )
    assert sent.status_code == 202

    proposal = await wait_for(client, session_id, "proposed_diff")
    assert (repo / "calc.py").read_text() == CALC  # nothing written before approval
    changeset_id = proposal["data"]["id"]
    shown = (await client.get(f"/api/agent/changesets/{changeset_id}")).json()
    assert "+    return a + b" in shown["diff"]
    [hunk] = shown["files"][0]["hunks"]
    approved = await client.post(
        f"/api/agent/changesets/{changeset_id}/approve", json={"hunks": [hunk["id"]]}
    )
    assert approved.status_code == 200, approved.text
    await wait_for(client, session_id, "session_finished")
    events = await sse_events(client, sent.json()["events_url"], lambda e: None)
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "session_finished" and events[-1]["data"]["status"] == "done"
    assert "changeset_applied" in kinds and "test_result" in kinds
    assert (repo / "calc.py").read_text() == CALC.replace("a - b", "a + b")

    listed = (await client.get("/api/agent/changesets", params={"session_id": session_id})).json()
    [changeset] = listed["changesets"]
    assert changeset["status"] == "applied"
    undone = await client.post(f"/api/agent/changesets/{changeset['id']}/undo")
    assert undone.status_code == 200 and (repo / "calc.py").read_text() == CALC
    replay = (
        await client.get(f"/api/agent/sessions/{session_id}/events", params={"follow": "false"})
    ).json()
    assert [e["kind"] for e in replay["events"] if e["kind"] != "output"][-1] == "changeset_undone"


async def test_bad_requests_name_the_fix(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    missing = await client.get("/api/agent/sessions/ses_nope")
    assert (
        missing.status_code == 404
        and "POST /api/agent/sessions" in missing.json()["error"]["message"]
    )
    session_id = (await client.post("/api/agent/sessions", json={})).json()["id"]
    empty = await client.post(f"/api/agent/sessions/{session_id}/messages", json={"content": ""})
    assert empty.status_code == 400 and "content" in empty.json()["error"]["message"]
    extra = await client.post("/api/agent/sessions", json={"tittle": "x"})
    assert extra.status_code == 400 and "tittle" in extra.json()["error"]["message"]
    fake.enqueue(step("list_dir", path="."), delay_s=0.5)
    fake.enqueue(step("finish", answer="done"))
    first = await client.post(
        f"/api/agent/sessions/{session_id}/messages", json={"content": "look"}
    )
    assert first.status_code == 202
    busy = await client.post(
        f"/api/agent/sessions/{session_id}/messages", json={"content": "again"}
    )
    assert busy.status_code == 409 and "cancel" in busy.json()["error"]["message"]
    assert (await client.post(f"/api/agent/sessions/{session_id}/cancel")).json() == {
        "cancelled": True
    }
    unknown = await client.post("/api/agent/changesets/cs_nope/approve", json={})
    assert unknown.status_code == 404


def test_websocket_streams_stored_then_live_events(
    make_app: Callable[..., Any], fake: FakeBackend
) -> None:
    fake.enqueue(step("finish", answer="hi"))
    with TestClient(make_app(), base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as tc:
        session_id = tc.post("/api/agent/sessions", json={}).json()["id"]
        with tc.websocket_connect(f"ws://127.0.0.1/api/agent/sessions/{session_id}/ws") as ws:
            tc.post(f"/api/agent/sessions/{session_id}/messages", json={"content": "say hi"})
            kinds = []
            while not kinds or kinds[-1] != "session_finished":
                kinds.append(ws.receive_json()["kind"])
        assert kinds[0] == "session_started" and "answer" in kinds


async def test_agent_uses_tools_of_a_real_stdio_mcp_server(
    make_app: Callable[..., Any], fake: FakeBackend
) -> None:
    server = McpServerSettings(name="echo", command=[sys.executable, str(ECHO_SERVER)])
    app = make_app(mcp_servers=[server])
    fake.enqueue(step("echo__add", a=2, b=3))
    fake.enqueue(step("finish", answer="2 + 3 = 5"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            session_id = (await client.post("/api/agent/sessions", json={})).json()["id"]
            sent = await client.post(
                f"/api/agent/sessions/{session_id}/messages", json={"content": "add 2 and 3"}
            )
            events = await sse_events(client, sent.json()["events_url"], lambda e: None)
    observation = next(e for e in events if e["kind"] == "observation")
    assert observation["data"]["name"] == "echo__add" and observation["data"]["ok"]
    assert "5" in observation["data"]["text"]

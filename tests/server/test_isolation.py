"""Acceptance for per-user projects (issue 6): in auth=accounts one user reaches nothing of
another's — projects, index, agent sessions, events (JSON, SSE, WebSocket), changesets —
and an agent session works only inside the project it was made for. Team projects are
shared by the team's members, and only while they are members.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mimiverse.gateway.base import Capabilities
from mimiverse.server.app import accounts_of
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend
from tests.agent.conftest import step
from tests.server.test_projects import accounts_app, add_user, client_for

SECRET_A = "alice_zebraquokka"
SECRET_B = "bob_walrusnarwhal"
SECRET_TEAM = "core_pangolinheron"


def source(secret: str) -> str:
    return f"def {secret}():\n    return '{secret}'\n"


@dataclass
class World:
    app: Any
    client: httpx.AsyncClient
    chat: FakeBackend
    ws: Path
    alice: dict[str, str]
    bob: dict[str, str]
    carol: dict[str, str]


@pytest.fixture
def chat() -> FakeBackend:
    return FakeBackend("fake-chat", capabilities=Capabilities(chat=True))


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], tmp_path: Path, chat: FakeBackend
) -> Callable[[], Any]:
    """alice and carol (team core) and bob, each with an API token; alice's and bob's
    project ``app`` holds a file with their own secret. The app runs its lifespan (the
    per-project index registry) inside the test's task."""

    @asynccontextmanager
    async def running() -> AsyncIterator[World]:
        app = accounts_app(make_settings, tmp_path, chat)
        alice, carol = add_user(app, "alice", "core"), add_user(app, "carol", "core")
        bob = add_user(app, "bob")
        async with app.router.lifespan_context(app), client_for(app) as client:
            ws = tmp_path / "ws"
            for name, headers, secret in (("alice", alice, SECRET_A), ("bob", bob, SECRET_B)):
                made = await client.post("/api/projects", json={"name": "app"}, headers=headers)
                assert made.status_code == 201, made.text
                (ws / "users" / name / "app" / "secret.py").write_text(source(secret))
            yield World(app, client, chat, ws, alice, bob, carol)

    return running


def error_of(resp: httpx.Response) -> str:
    assert resp.status_code == 404, (resp.status_code, resp.text)
    return str(resp.json()["error"]["message"])


async def events_of(
    client: httpx.AsyncClient, session_id: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    url = f"/api/agent/sessions/{session_id}/events"
    resp = await client.get(url, params={"follow": "false"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["events"])


async def wait_for(
    client: httpx.AsyncClient, session_id: str, headers: dict[str, str], kind: str
) -> dict[str, Any]:
    for _ in range(400):
        found = [e for e in await events_of(client, session_id, headers) if e["kind"] == kind]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event in {session_id}")


async def test_bob_cannot_list_or_search_alices_projects(world: Callable[[], Any]) -> None:
    async with world() as w:
        c = w.client
        refs = [p["ref"] for p in (await c.get("/api/projects", headers=w.bob)).json()["projects"]]
        assert refs == ["bob/app"]

        def search(who: dict[str, str], project: str | None) -> Any:
            body = {"query": SECRET_A, "mode": "lexical", "project": project}
            return c.post("/api/codebase/search", json=body, headers=who)

        own = await search(w.alice, "alice/app")
        assert own.status_code == 200, own.text
        assert [r["path"] for r in own.json()["results"]] == ["secret.py"]
        assert own.json()["project"] == "alice/app" and "root" not in own.json()["status"]

        missing = error_of(await search(w.bob, "alice/nothing"))
        for ref in ("alice/app", "bob/../alice/app", "alice/app/..", "team:core/app"):
            assert error_of(await search(w.bob, ref)) == missing.replace("alice/nothing", ref)
        for own_ref in (None, "bob/app"):  # his own index knows nothing of hers
            mine = await search(w.bob, own_ref)
            assert mine.status_code == 200 and mine.json()["results"] == []
        found = await c.post(
            "/api/codebase/search", json={"query": SECRET_B, "mode": "lexical"}, headers=w.bob
        )
        assert found.json()["project"] == "bob/default" and found.json()["results"] == []

        for path, params in (
            ("/api/codebase/status", {}),
            ("/api/codebase/definitions", {"name": SECRET_A}),
            ("/api/codebase/references", {"name": SECRET_A}),
            ("/api/codebase/repomap", {}),
        ):
            theirs = await c.get(path, params={**params, "project": "alice/app"}, headers=w.bob)
            assert error_of(theirs) == missing.replace("alice/nothing", "alice/app")
            ours = await c.get(path, params={**params, "project": "alice/app"}, headers=w.alice)
            assert ours.status_code == 200, (path, ours.text)
        defs = await c.get(
            "/api/codebase/definitions", params={"name": SECRET_A, "project": "bob/app"},
            headers=w.bob,
        )  # fmt: skip
        assert defs.json()["definitions"] == []
        status = (await c.get("/api/codebase/status", headers=w.alice)).json()
        assert status["project"] == "alice/default" and "root" not in status


async def test_bob_cannot_reach_alices_session_events_or_changesets(
    world: Callable[[], Any],
) -> None:
    async with world() as w:
        c, chat = w.client, w.chat
        created = await c.post(
            "/api/agent/sessions", json={"project": "alice/app"}, headers=w.alice
        )
        assert created.status_code == 201, created.text
        session = created.json()
        sid = session["id"]
        assert session["project"] == "alice/app" and "root" not in session
        chat.enqueue(step("edit_file", path="secret.py", search=f"return '{SECRET_A}'",
                          replace=f"return '{SECRET_A}!'"))  # fmt: skip
        chat.enqueue(step("finish", answer="changed"))
        sent = await c.post(
            f"/api/agent/sessions/{sid}/messages", json={"content": "edit"}, headers=w.alice
        )
        assert sent.status_code == 202, sent.text
        proposal = await wait_for(c, sid, w.alice, "proposed_diff")
        cs = proposal["data"]["id"]
        secret_file = w.ws / "users" / "alice" / "app" / "secret.py"

        # Sessions: the same 404 as for one that does not exist, whatever bob does.
        gone = error_of(await c.get("/api/agent/sessions/ses_nope", headers=w.bob))
        same = gone.replace("ses_nope", sid)
        base = f"/api/agent/sessions/{sid}"
        refused = [
            await c.get(base, headers=w.bob),
            await c.post(f"{base}/messages", json={"content": "cat secret.py"}, headers=w.bob),
            await c.post(f"{base}/cancel", headers=w.bob),
            await c.get(f"{base}/events", params={"follow": "false"}, headers=w.bob),
            await c.get(f"{base}/events", headers=w.bob),  # SSE
        ]
        assert [error_of(r) for r in refused] == [same] * len(refused)
        async with c.stream("GET", f"{base}/events", headers=w.bob) as sse:
            assert sse.status_code == 404
            assert SECRET_A not in (await sse.aread()).decode()
        on_her = await c.post("/api/agent/sessions", json={"project": "alice/app"}, headers=w.bob)
        assert on_her.status_code == 404 and "no project 'alice/app'" in on_her.text
        listed = (await c.get("/api/agent/sessions", headers=w.bob)).json()["sessions"]
        assert listed == []
        assert [s["id"] for s in (await c.get("/api/agent/sessions", headers=w.alice)).json()[
            "sessions"]] == [sid]  # fmt: skip

        # Changesets: invisible, and no decision of bob's reaches them.
        nope = error_of(await c.get("/api/agent/changesets/cs_nope", headers=w.bob))
        same_cs = nope.replace("cs_nope", cs)
        assert (await c.get("/api/agent/changesets", headers=w.bob)).json()["changesets"] == []
        by_session = await c.get("/api/agent/changesets", params={"session_id": sid},
                                 headers=w.bob)  # fmt: skip
        assert error_of(by_session) == same
        for action in ("approve", "reject", "apply", "undo"):
            resp = await c.post(f"/api/agent/changesets/{cs}/{action}", json={}, headers=w.bob)
            assert error_of(resp) == same_cs, action
        assert error_of(await c.get(f"/api/agent/changesets/{cs}", headers=w.bob)) == same_cs
        assert secret_file.read_text() == source(SECRET_A)
        hers = (await c.get(base, headers=w.alice)).json()
        assert hers["status"] == "waiting_approval" and hers["waiting_for"] == [cs]
        assert not chat.scripts  # bob's message never reached the model

        # alice decides through the API; applying and undoing are audited.
        assert (await c.post(f"{base}/cancel", headers=w.alice)).json() == {"cancelled": True}
        decided = await c.post(f"/api/agent/changesets/{cs}/approve", json={}, headers=w.alice)
        assert decided.status_code == 200, decided.text
        applied = await c.post(f"/api/agent/changesets/{cs}/apply", headers=w.alice)
        assert applied.status_code == 200, applied.text
        assert f"'{SECRET_A}!'" in secret_file.read_text()
        undone = await c.post(f"/api/agent/changesets/{cs}/undo", headers=w.alice)
        assert undone.status_code == 200 and secret_file.read_text() == source(SECRET_A)
        audit = accounts_of(w.app).audit
        [entry] = audit.entries(action="changeset_applied")
        assert (entry["actor"], entry["target"]) == ("alice", cs)
        assert entry["detail"] == {"project": "alice/app", "files": ["secret.py"]}
        [entry] = audit.entries(action="changeset_undone")
        assert (entry["actor"], entry["target"], entry["ip"]) == ("alice", cs, "127.0.0.1")
        changes = [e for e in audit.entries(limit=1000) if e["action"].startswith("changeset")]
        assert [e["actor"] for e in changes] == ["alice", "alice"]


async def test_a_session_works_only_inside_its_own_project(world: Callable[[], Any]) -> None:
    """bob's session is bound to his root: reads of alice's file by absolute path or by
    '..' are refused, and a command there cannot see her folder."""
    async with world() as w:
        c, chat = w.client, w.chat
        created = await c.post("/api/agent/sessions", json={}, headers=w.bob)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert created.json()["project"] == "bob/default"
        target = w.ws / "users" / "alice" / "app" / "secret.py"
        tries = [
            str(target),
            "../../alice/app/secret.py",
            "../../../users/alice/app/secret.py",
            "../app/../../alice/app/secret.py",
        ]
        for path in tries:
            chat.enqueue(step("read_file", path=path))
        chat.enqueue(step("run_command", command=f"cat {target}; ls {target.parent}"))
        chat.enqueue(step("finish", answer="done"))
        sent = await c.post(
            f"/api/agent/sessions/{sid}/messages", json={"content": "read it"}, headers=w.bob
        )
        assert sent.status_code == 202
        await wait_for(c, sid, w.bob, "session_finished")
        events = await events_of(c, sid, w.bob)
        seen = [e["data"] for e in events if e["kind"] == "observation"]
        reads = [o for o in seen if o["name"] == "read_file"]
        assert len(reads) == len(tries)
        for observation in reads:
            assert not observation["ok"] and "outside the project" in observation["text"]
        [command] = [o for o in seen if o["name"] == "run_command"]
        assert SECRET_A not in command["text"]
        assert SECRET_A not in json.dumps(events)
        # What bob's model saw: nothing of alice's either.
        assert all(SECRET_A not in json.dumps(getattr(r, "messages", "")) for r in chat.calls)


async def test_team_projects_are_shared_and_leaving_the_team_ends_access(
    world: Callable[[], Any],
) -> None:
    async with world() as w:
        c = w.client
        made = await c.post("/api/projects", json={"name": "app", "team": "core"}, headers=w.alice)
        assert made.json()["ref"] == "team:core/app"
        (w.ws / "teams" / "core" / "app" / "shared.py").write_text(source(SECRET_TEAM))

        def refs(resp: httpx.Response) -> list[str]:
            return [p["ref"] for p in resp.json()["projects"]]

        assert "team:core/app" in refs(await c.get("/api/projects", headers=w.carol))
        assert "team:core/app" in refs(await c.get("/api/projects", headers=w.alice))
        assert "team:core/app" not in refs(await c.get("/api/projects", headers=w.bob))
        created = await c.post(
            "/api/agent/sessions", json={"project": "team:core/app"}, headers=w.carol
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        base = f"/api/agent/sessions/{sid}"
        assert (await c.get(base, headers=w.alice)).json()["project"] == "team:core/app"
        error_of(await c.get(base, headers=w.bob))
        search = {"query": SECRET_TEAM, "mode": "lexical", "project": "team:core/app"}
        hits = await c.post("/api/codebase/search", json=search, headers=w.carol)
        assert [r["path"] for r in hits.json()["results"]] == ["shared.py"]
        error_of(await c.post("/api/codebase/search", json=search, headers=w.bob))

        carol_id = accounts_of(w.app).user_by_name("carol")["id"]
        accounts_of(w.app).remove_member("core", carol_id)
        assert "team:core/app" not in refs(await c.get("/api/projects", headers=w.carol))
        error_of(await c.get(base, headers=w.carol))
        error_of(await c.post(f"{base}/messages", json={"content": "hi"}, headers=w.carol))
        error_of(await c.get(f"{base}/events", params={"follow": "false"}, headers=w.carol))
        error_of(await c.post("/api/codebase/search", json=search, headers=w.carol))
        error_of(
            await c.post("/api/agent/sessions", json={"project": "team:core/app"}, headers=w.carol)
        )
        assert (await c.get("/api/agent/sessions", headers=w.carol)).json()["sessions"] == []
        assert (await c.get(base, headers=w.alice)).status_code == 200  # still hers to use


def test_websocket_streams_nothing_of_another_users_session(
    make_settings: Callable[..., Settings], tmp_path: Path, chat: FakeBackend
) -> None:
    app = accounts_app(make_settings, tmp_path, chat)
    alice, bob = add_user(app, "alice"), add_user(app, "bob")
    chat.enqueue(step("finish", answer=f"the secret is {SECRET_A}"))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as tc:
        sid = tc.post("/api/agent/sessions", json={}, headers=alice).json()["id"]
        url = f"ws://127.0.0.1/api/agent/sessions/{sid}/ws"
        with tc.websocket_connect(url, headers=alice) as ws:
            tc.post(f"/api/agent/sessions/{sid}/messages", json={"content": "hi"}, headers=alice)
            kinds: list[str] = []
            while not kinds or kinds[-1] != "session_finished":
                kinds.append(ws.receive_json()["kind"])
        assert "answer" in kinds  # alice herself is served

        with tc.websocket_connect(url, headers=bob) as ws:
            refusal = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 4404
        assert refusal["error"]["type"] == "not_found" and SECRET_A not in json.dumps(refusal)
        with pytest.raises(WebSocketDisconnect) as anonymous, tc.websocket_connect(url):
            pass
        assert anonymous.value.code == 4401


async def test_sessions_from_before_ownership_follow_their_folder(
    world: Callable[[], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A store from before the owner/project columns gains them on open; its sessions are
    visible to whoever may use their folder, and to nobody else."""
    import sqlite3

    data = make_settings().data_dir
    data.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "ws" / "users" / "alice" / "app"
    with sqlite3.connect(data / "mimiverse.sqlite3") as db:
        db.execute(
            "CREATE TABLE agent_sessions (id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
            "updated_at REAL NOT NULL, root TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', "
            "status TEXT NOT NULL DEFAULT 'idle', state TEXT NOT NULL DEFAULT '{}')"
        )
        db.execute(
            "INSERT INTO agent_sessions VALUES ('ses_old', 1, 1, ?, 'old', 'done', '{}')",
            (str(root.resolve()),),
        )
    db.close()
    async with world() as w:
        c = w.client
        theirs = (await c.get("/api/agent/sessions", headers=w.alice)).json()["sessions"]
        assert [(s["id"], s["owner"], s["project"]) for s in theirs] == [("ses_old", "", "")]
        assert (await c.get("/api/agent/sessions", headers=w.bob)).json()["sessions"] == []
        error_of(await c.get("/api/agent/sessions/ses_old", headers=w.bob))
        assert (await c.get("/api/agent/sessions/ses_old", headers=w.alice)).status_code == 200


async def test_what_a_run_applies_after_approval_is_audited(world: Callable[[], Any]) -> None:
    async with world() as w:
        c, chat = w.client, w.chat
        sid = (await c.post("/api/agent/sessions", json={}, headers=w.alice)).json()["id"]
        chat.enqueue(step("create_file", path="notes.md", content="hello\n"))
        chat.enqueue(step("finish", answer="written"))
        await c.post(f"/api/agent/sessions/{sid}/messages", json={"content": "x"}, headers=w.alice)
        proposal = await wait_for(c, sid, w.alice, "proposed_diff")
        cs = proposal["data"]["id"]
        decided = await c.post(f"/api/agent/changesets/{cs}/approve", json={}, headers=w.alice)
        assert decided.status_code == 200, decided.text
        await wait_for(c, sid, w.alice, "session_finished")
        [entry] = accounts_of(w.app).audit.entries(action="changeset_applied")
        assert (entry["actor"], entry["target"]) == ("alice", cs)
        assert entry["detail"]["by"] == "agent run" and entry["detail"]["files"] == ["notes.md"]

"""/mcp in auth=accounts: each caller works on their own projects, and nobody else's.

A real uvicorn server (in a thread) with users alice and bob, each with a project holding
a secret file, driven by the official MCP client over streamable HTTP.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, MCPError
from mimiverse.server.app import accounts_of, create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.conftest import free_port

ALICE_SECRET = "ALICE-SECRET-7f3a"
BOB_SECRET = "BOB-SECRET-91c2"
SERVER_SECRET = "SERVER-SECRET-d4e0"
PASSWORD = "correct horse battery"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
STREAMS = {"Accept": "application/json, text/event-stream"}


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    """alice, bob (mcp scope); alice-api, bob-api (api scope only)."""
    cookie: str
    """bob's session cookie value."""
    roots: dict[str, Path]
    """alice/app, bob/default: the project folders."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One accounts-mode server for the module, on a real socket."""
    base = tmp_path_factory.mktemp("mcp-isolation")
    server_project = base / "server-project"
    server_project.mkdir()
    (server_project / "server.txt").write_text(SERVER_SECRET)
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("MIMI_")]:
            mp.delenv(name)
        mp.setenv("MIMI_CONFIG", str(base / "absent.toml"))
        settings = Settings(
            auth="accounts",
            data_dir=base / "data",
            project_root=server_project,
            embedded=False,
            index_on_start=False,
        )
    app = create_app(settings, gateway_with(FakeBackend()))
    accounts = accounts_of(app)
    tokens: dict[str, str] = {}
    roots: dict[str, Path] = {}
    for name, secret, project in (("alice", ALICE_SECRET, "app"), ("bob", BOB_SECRET, "default")):
        user = accounts.create_user(name, PASSWORD)
        tokens[name], _ = accounts.create_token(user["id"], "mcp", scopes=["mcp"])
        principal = accounts.authenticate_token(tokens[name])
        assert principal is not None
        root = app.state.workspaces.project(principal, None).root
        if project != "default":
            root = app.state.workspaces.create(principal, project).root
        (root / f"{name}.py").write_text(f"TOKEN = {secret!r}\n")
        roots[f"{name}/{project}"] = root
    for name in ("alice", "bob"):
        user = accounts.user_by_name(name)
        tokens[f"{name}-api"], _ = accounts.create_token(user["id"], "api only", scopes=["api"])
    cookie, _ = accounts.login("bob", PASSWORD)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}/mcp", tokens, cookie, roots)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
async def connect(served: Served) -> AsyncIterator[Callable[..., Client]]:
    """``connect(user, project=None, mode="auto", header=False)``: the SDK client as ``user``."""
    clients: list[httpx2.AsyncClient] = []

    def factory(
        user: str, project: str | None = None, mode: str = "auto", header: bool = False
    ) -> Client:
        headers = {"Authorization": f"Bearer {served.tokens[user]}"}
        url = served.url
        if project is not None and header:
            headers["X-Mimi-Project"] = project
        elif project is not None:
            url += f"?project={project}"
        http = httpx2.AsyncClient(headers=headers)
        clients.append(http)
        return Client(streamable_http_client(url, http_client=http), mode=mode)

    yield factory
    for http in clients:
        await http.aclose()


def raw(served: Served, user: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    """One POST to /mcp as ``user`` (a token name), outside any MCP client."""
    sent = {**STREAMS, "Authorization": f"Bearer {served.tokens[user]}", **headers}
    return httpx.post(served.url, json=body, headers=sent, timeout=30)


def messages(exc: BaseException) -> str:
    """The MCP errors' messages in ``exc`` (the client raises them inside exception groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(messages(e) for e in exc.exceptions)
    return str(exc) if isinstance(exc, MCPError) else ""


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}


# --- who may use /mcp at all ------------------------------------------------------------------


def test_a_cookie_session_is_refused_on_mcp(served: Served) -> None:
    cookie = {"Cookie": f"mimi_session={served.cookie}"}
    me = httpx.get(served.url.replace("/mcp", "/api/auth/me"), headers=cookie)
    assert me.status_code == 200, me.text  # a good session, but not for MCP
    resp = httpx.post(served.url, json=INIT, headers={**STREAMS, **cookie})
    assert resp.status_code == 401
    assert "bearer token" in resp.json()["error"]["message"]


def test_a_token_without_the_mcp_scope_is_403(served: Served) -> None:
    resp = raw(served, "bob-api", INIT)
    assert resp.status_code == 403
    assert "'mcp' scope" in resp.json()["error"]["message"]


def test_no_credentials_is_401(served: Served) -> None:
    assert httpx.post(served.url, json=INIT, headers=STREAMS).status_code == 401


# --- resources ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_caller_lists_and_reads_only_their_own_project(
    connect: Callable[..., Client], mode: str
) -> None:
    async with connect("bob", mode=mode) as bob:
        listed = {r.name for r in (await bob.list_resources()).resources}
        assert listed == {"bob.py"}
        read = await bob.read_resource("mimiverse://files/bob.py")
        assert BOB_SECRET in read.contents[0].text  # type: ignore[union-attr]
    async with connect("alice", "alice/app", mode=mode) as alice:
        listed = {r.name for r in (await alice.list_resources()).resources}
        assert listed == {"alice.py"}
        read = await alice.read_resource("mimiverse://files/alice.py")
        assert ALICE_SECRET in read.contents[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("header", [False, True])
async def test_naming_another_users_project_is_refused(
    connect: Callable[..., Client], served: Served, header: bool
) -> None:
    with pytest.raises(BaseException) as refused:
        async with connect("bob", "alice/app", header=header) as bob:
            await bob.list_resources()
    assert "no project 'alice/app' that you may use" in messages(refused.value)
    headers = {"X-Mimi-Project": "alice/app"} if header else {}
    url_project = {} if header else {"project": "alice/app"}
    resp = httpx.post(
        served.url,
        params=url_project,
        json=INIT,
        headers={**STREAMS, "Authorization": f"Bearer {served.tokens['bob']}", **headers},
    )
    assert resp.status_code == 404
    assert ALICE_SECRET not in resp.text


async def test_resource_uris_that_leave_the_project_are_refused(
    connect: Callable[..., Client], served: Served
) -> None:
    alice_file = served.roots["alice/app"] / "alice.py"
    escapes = [
        "mimiverse://files/../../alice/app/alice.py",
        "mimiverse://files/%2E%2E/%2E%2E/alice/app/alice.py",
        f"file://{alice_file}",
        f"mimiverse://files/{alice_file}",
    ]
    async with connect("bob") as bob:
        for uri in escapes:
            with pytest.raises(MCPError, match="outside the project") as refused:
                await bob.read_resource(uri)
            assert ALICE_SECRET not in str(refused.value)


# --- tools ----------------------------------------------------------------------------------


async def test_tools_cannot_reach_another_users_files(
    connect: Callable[..., Client], served: Served
) -> None:
    alice_file = served.roots["alice/app"] / "alice.py"
    async with connect("bob") as bob:
        own = await bob.call_tool("read_file", {"path": "bob.py"})
        assert not own.is_error and BOB_SECRET in own.content[0].text  # type: ignore[union-attr]
        for path in ("../../alice/app/alice.py", str(alice_file), "../alice/app"):
            tool = "list_dir" if path.endswith("app") else "read_file"
            got = await bob.call_tool(tool, {"path": path})
            text = got.content[0].text  # type: ignore[union-attr]
            assert got.is_error and "outside the project" in text, text
            assert ALICE_SECRET not in text
        for mode in ("text", "hybrid"):
            found = await bob.call_tool("search_code", {"query": ALICE_SECRET, "mode": mode})
            assert ALICE_SECRET not in str(found.structured_content)
            assert "alice.py" not in found.content[0].text  # type: ignore[union-attr]
        mine = await bob.call_tool("search_code", {"query": BOB_SECRET, "mode": "text"})
        assert "bob.py" in mine.content[0].text  # type: ignore[union-attr]


async def test_the_servers_own_project_is_nobodys_in_accounts_mode(
    connect: Callable[..., Client],
) -> None:
    async with connect("alice") as alice:
        found = await alice.call_tool("search_code", {"query": SERVER_SECRET, "mode": "text"})
        assert "server.txt" not in found.content[0].text  # type: ignore[union-attr]
        listed = {r.name for r in (await alice.list_resources()).resources}
        assert "server.txt" not in listed
    with pytest.raises(BaseException) as refused:
        async with connect("alice", "local/server-project") as alice:
            await alice.list_resources()
    assert "no project 'local/server-project'" in messages(refused.value)


async def test_an_mcp_edit_is_a_changeset_only_its_owner_sees(
    connect: Callable[..., Client], served: Served
) -> None:
    async with connect("alice", "alice/app", mode="legacy") as alice:
        edit = {"path": "alice.py", "search": "TOKEN", "replace": "KEY"}
        result = await alice.call_tool("edit_file", edit)
    assert not result.is_error and result.structured_content is not None, result.content
    changeset = result.structured_content["changeset"]["id"]
    api = served.url.removesuffix("/mcp") + "/api/agent"

    def get(user: str, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {served.tokens[user]}"}
        return httpx.get(api + path, headers=headers, timeout=30)

    assert get("bob-api", f"/changesets/{changeset}").status_code == 404
    seen = get("alice-api", f"/changesets/{changeset}")
    assert seen.status_code == 200, seen.text
    sessions = get("alice-api", "/sessions").json()["sessions"]
    mine = [s for s in sessions if s["id"] == seen.json()["session_id"]]
    assert [s["project"] for s in mine] == ["alice/app"]
    theirs = {s["id"] for s in get("bob-api", "/sessions").json()["sessions"]}
    assert seen.json()["session_id"] not in theirs


# --- sessions -------------------------------------------------------------------------------


def open_session(served: Served, user: str, project: str | None = None) -> str:
    """Initialize a handshake-era session as ``user``; its mcp-session-id."""
    params = {"project": project} if project else {}
    resp = httpx.post(
        served.url,
        params=params,
        json=INIT,
        headers={**STREAMS, "Authorization": f"Bearer {served.tokens[user]}"},
    )
    assert resp.status_code == 200, resp.text
    session_id = resp.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    sent = raw(served, user, done, **{"mcp-session-id": session_id}, **_project_header(project))
    assert sent.status_code == 202, sent.text
    return session_id


def _project_header(project: str | None) -> dict[str, str]:
    return {"X-Mimi-Project": project} if project else {}


def test_another_user_cannot_reuse_a_session_id(served: Served) -> None:
    session_id = open_session(served, "alice", "alice/app")
    read = tool_call("read_file", {"path": "alice.py"})
    stolen = raw(served, "bob", read, **{"mcp-session-id": session_id})
    assert stolen.status_code == 404
    assert ALICE_SECRET not in stolen.text
    assert "not yours" in stolen.json()["error"]["message"]
    also = raw(served, "bob", read, **{"mcp-session-id": session_id, "X-Mimi-Project": "alice/app"})
    assert also.status_code == 404 and ALICE_SECRET not in also.text

    owner = raw(
        served, "alice", read, **{"mcp-session-id": session_id}, **_project_header("alice/app")
    )
    assert owner.status_code == 200 and ALICE_SECRET in owner.text


def test_a_session_stays_on_its_project(served: Served) -> None:
    session_id = open_session(served, "alice", "alice/app")
    read = tool_call("read_file", {"path": "alice.py"})
    switched = raw(served, "alice", read, **{"mcp-session-id": session_id})  # default project
    assert switched.status_code == 409
    assert "works on project 'alice/app'" in switched.json()["error"]["message"]


def test_an_unknown_or_ended_session_id_is_404(served: Served) -> None:
    read = tool_call("read_file", {"path": "bob.py"})
    assert raw(served, "bob", read, **{"mcp-session-id": "0" * 32}).status_code == 404
    session_id = open_session(served, "bob")
    ended = httpx.delete(
        served.url,
        headers={"Authorization": f"Bearer {served.tokens['bob']}", "mcp-session-id": session_id},
    )
    assert ended.status_code == 200
    assert raw(served, "bob", read, **{"mcp-session-id": session_id}).status_code == 404

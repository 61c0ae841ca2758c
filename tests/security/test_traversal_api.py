"""Every path-taking HTTP entry point against the traversal corpus, in-process.

Paths: the codebase search's ``filters.path``, the files API (tree, content read and
save, create, both fields of rename, delete, upload's folder and file names), MCP
``resources/read`` (the resources module directly, and over a real MCP session at /mcp),
and two fields that are only labels and never opened (FIM's ``path``/``files[].path``,
the repo map's ``focus``: for those the check is that nothing leaks). Project references
(agent sessions, codebase search and status, the files API, MCP's ``?project=``,
``Workspaces.project``) and project names get the corpus plus reference-shaped escapes
such as ``alice/../../etc``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, MCPError
from mimiverse.accounts.principal import Principal
from mimiverse.errors import MimiError
from mimiverse.mcp import resources
from mimiverse.mcp.auth import api_token
from mimiverse.server.app import accounts_of, create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from mimiverse.workspace.paths import Workspace
from tests.security.traversal_corpus import CASES, Arena, Case

PASSWORD = "correct horse battery staple"
REF_CASES: tuple[Case, ...] = (
    *(
        Case(f"ref:{name}", "project-ref", ref)
        for name, ref in (
            ("up", "../x"),
            ("owner-then-up", "alice/../../etc"),
            ("owner-dotdot", "alice/.."),
            ("sideways", "alice/../bob/app"),
            ("up-to-own", "../alice/default"),
            ("dots", "alice/./../.."),
            ("team-up", "team:../x"),
            ("team-deep", "team:core/../../x"),
            ("encoded", "alice/%2e%2e"),
            ("encoded-deep", "alice/%2e%2e%2f%2e%2e%2fetc"),
            ("backslash", "alice\\..\\..\\etc"),
            ("absolute", "/etc"),
            ("double-slash", "alice//etc"),
            ("through-own", "alice/default/../../bob/app"),
            ("lookalike", "alice/．．"),
            ("home", "~alice/default"),
            ("nul", "alice/default\x00"),
            ("local-up", "local/../outside"),
            ("someone-elses", "bob/app"),
            ("a-team-not-joined", "team:secret/app"),
            ("symlinked-project", "alice/escape"),
            ("symlinked-team-project", "team:core/escape"),
            ("symlinked-team-root", "team:linked/sub"),
        )
    ),
    *CASES,
)
"""Project references that must never name a folder the caller may not use."""
OWN_ROOT = "workspaces/users/alice/"
"""Where alice's new projects go (relative to the arena's base)."""


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return Arena(tmp_path / "arena")


# --- auth=local: the project_root, its index, MCP ------------------------------------------


@dataclass
class Local:
    app: FastAPI
    settings: Settings


@contextlib.asynccontextmanager
async def served(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``app``, inside its lifespan (entered in the test's task:
    the MCP session manager's task group must be left in the task that entered it)."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client,
    ):
        yield client


@pytest.fixture
def local(arena: Arena, make_settings: Callable[..., Settings]) -> Local:
    """auth=local over the arena's project; its lifespan indexes it (lexical is enough)."""
    settings = make_settings(
        project_root=arena.root, index_on_start=True, index_watch=False, rate_limits=False
    )
    return Local(create_app(settings, gateway_with(FakeBackend("fake"))), settings)


Send = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Endpoint:
    """One path field of one route; ``refuses``: False for a label that is never opened.

    ``skip``: corpus categories that are not an attack on this field (for a glob matched
    against the index, or a new project's name, ``link_dir`` is just a name); they must
    still leak nothing.
    """

    id: str
    send: Send
    refuses: bool = True
    skip: frozenset[str] = frozenset()


ENDPOINTS = (
    Endpoint(
        "codebase.search.filters.path",
        lambda c, p: c.post(
            "/api/codebase/search",
            json={"query": "add secret canary", "mode": "lexical", "filters": {"path": p}},
        ),
        skip=frozenset({"symlink"}),
    ),
    Endpoint(
        "ai.fim.path",
        lambda c, p: c.post(
            "/api/ai/fim",
            json={"prefix": "def f(", "suffix": "", "path": p, "files": [{"path": p, "text": "x"}]},
        ),
        refuses=False,
    ),
    Endpoint(
        "codebase.repomap.focus",
        lambda c, p: c.get("/api/codebase/repomap", params={"focus": p}),
        refuses=False,
    ),
    Endpoint("files.tree.path", lambda c, p: c.get("/api/files/tree", params={"path": p})),
    Endpoint("files.content.get", lambda c, p: c.get("/api/files/content", params={"path": p})),
    Endpoint(
        "files.content.put",
        lambda c, p: c.put("/api/files/content", json={"path": p, "content": "pwned"}),
    ),
    Endpoint(
        "files.create.file", lambda c, p: c.post("/api/files", json={"path": p, "content": "x"})
    ),
    Endpoint(
        "files.create.dir", lambda c, p: c.post("/api/files", json={"path": p, "kind": "dir"})
    ),
    Endpoint(
        "files.rename.path",
        lambda c, p: c.post("/api/files/rename", json={"path": p, "to": "moved.txt"}),
    ),
    Endpoint(
        "files.rename.to",
        lambda c, p: c.post("/api/files/rename", json={"path": "calc.py", "to": p}),
    ),
    Endpoint(
        "files.delete.path",
        lambda c, p: c.delete("/api/files", params={"path": p, "recursive": "true"}),
    ),
    Endpoint(
        "files.upload.dir",
        lambda c, p: c.post(
            "/api/files/upload", params={"dir": p}, files=[("files", ("pwned.txt", b"pwned"))]
        ),
    ),
    Endpoint(
        "files.upload.name",
        lambda c, p: c.post("/api/files/upload", files=[("files", (p, b"pwned"))]),
        # The multipart parser keeps what follows a file name's last backslash (old
        # browsers sent 'C:\\dir\\name'): these arrive as plain names inside the root.
        skip=frozenset({"absolute-windows", "unc"}),
    ),
)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_path_fields_of_routes(endpoint: Endpoint, local: Local, arena: Arena) -> None:
    problems: list[str] = []
    async with served(local.app) as client:
        for case in CASES:
            resp = await endpoint.send(client, case.text(arena))
            problems += arena.check(case, resp.text)
            problems += _refused(endpoint, case, resp)
    assert not problems, "\n".join(problems)


def _refused(endpoint: Endpoint, case: Case, resp: httpx.Response) -> list[str]:
    """What is wrong with ``resp`` as the answer to ``case`` (a refusal, or no 5xx)."""
    if case.category in endpoint.skip:
        return []
    if endpoint.refuses and not (
        resp.status_code == 400 and "relative to the project root" in resp.text
    ):
        return [f"{case.id}: not refused: {resp.status_code} {resp.text[:300]}"]
    if not endpoint.refuses and resp.status_code >= 500:
        return [f"{case.id}: server error {resp.status_code} {resp.text[:300]}"]
    return []


async def test_the_search_control_finds_plain_unicode_paths(local: Local) -> None:
    body = {"query": "Résumé", "mode": "lexical", "filters": {"path": "docs/*.md"}}
    async with served(local.app) as client:
        resp = await client.post("/api/codebase/search", json=body)
    assert resp.status_code == 200, resp.text
    assert [r["path"] for r in resp.json()["results"]] == ["docs/résumé.md"]


URIS: tuple[Callable[[str], str], ...] = (
    lambda p: f"mimiverse://files/{p}",
    lambda p: f"file://{p}" if p.startswith("/") else f"file:///{p}",
)


async def test_mcp_resources_module_refuses_every_way_out(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    problems: list[str] = []
    for case in CASES:
        for uri in (make(case.text(arena)) for make in URIS):
            try:
                got = resources.read_file(workspace, uri, lambda text: text)
            except MimiError as exc:
                problems += arena.check(case, exc.message)
                if exc.status != 400:
                    problems.append(f"{case.id}: {uri!r} is a {exc.status}: {exc.message}")
            else:
                problems.append(f"{case.id}: {uri!r} was read: {got.text[:200]!r}")
    assert not problems, "\n".join(problems)
    good = resources.read_file(workspace, "mimiverse://files/docs/résumé.md", lambda t: t)
    assert good.text == "# Résumé\n"


async def test_mcp_over_http_refuses_every_way_out(local: Local, arena: Arena) -> None:
    """One real MCP session at /mcp (bearer token), every case as a resources/read."""
    headers = {"Authorization": f"Bearer {api_token(local.settings)}"}
    transport = httpx2.ASGITransport(app=local.app)
    problems: list[str] = []
    async with (
        served(local.app),
        httpx2.AsyncClient(transport=transport, headers=headers) as http,
        Client(
            streamable_http_client("http://127.0.0.1/mcp", http_client=http), mode="legacy"
        ) as client,
    ):
        good = await client.read_resource("mimiverse://files/docs/r%C3%A9sum%C3%A9.md")
        assert good.contents[0].text == "# Résumé\n"  # type: ignore[union-attr]
        for case in CASES:
            uri = URIS[0](case.text(arena))
            try:
                got = await client.read_resource(uri)
            except MCPError as exc:
                problems += arena.check(case, str(exc), json.dumps(exc.error.data or {}))
            else:
                problems.append(f"{case.id}: {uri!r} was read: {got!r:.200}")
            read_file = await client.call_tool("read_file", {"path": case.text(arena)})
            text = read_file.content[0].text  # type: ignore[union-attr]
            problems += arena.check(case, text)
            if not read_file.is_error or "relative to the project root" not in text:
                problems.append(f"{case.id}: read_file over MCP was not refused: {text[:200]!r}")
    assert not problems, "\n".join(problems)


# --- auth=accounts: project references ---------------------------------------------------


@dataclass
class Accounts:
    app: FastAPI
    alice: Principal
    token: str


@pytest.fixture
def accounts(arena: Arena, make_settings: Callable[..., Settings]) -> Accounts:
    """auth=accounts with alice (team core) and bob (bob/app, team secret), in the arena."""
    settings = make_settings(
        auth="accounts",
        workspaces_dir=arena.base / "workspaces",
        project_root=arena.root,
        index_on_start=False,
        rate_limits=False,
    )
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    users = accounts_of(app)
    alice = users.create_user("alice", PASSWORD)
    bob = users.create_user("bob", PASSWORD)
    users.create_team("core")
    users.add_member("core", alice["id"])
    users.create_team("secret")
    users.add_member("secret", bob["id"])
    raw, _ = users.create_token(alice["id"], "t")
    bob_raw, _ = users.create_token(bob["id"], "t")
    alice_p, bob_p = users.authenticate_token(raw), users.authenticate_token(bob_raw)
    assert alice_p is not None and bob_p is not None
    workspaces = app.state.workspaces
    workspaces.project(alice_p, None)  # alice's default project exists before the snapshot
    workspaces.create(bob_p, "app")
    workspaces.create(bob_p, "app", team="secret")
    users.create_team("linked")
    users.add_member("linked", alice["id"])
    alice_p = users.authenticate_token(raw)  # now in team linked too
    assert alice_p is not None
    base = arena.base / "workspaces"
    (base / "users" / "alice" / "escape").symlink_to(arena.outside, target_is_directory=True)
    (base / "teams" / "core").mkdir(parents=True)
    (base / "teams" / "core" / "escape").symlink_to(arena.outside, target_is_directory=True)
    (base / "teams" / "linked").symlink_to(arena.outside, target_is_directory=True)
    arena.before = arena.snapshot()
    return Accounts(app, alice_p, raw)


REF_ENDPOINTS = (
    Endpoint(
        "agent.sessions.project", lambda c, r: c.post("/api/agent/sessions", json={"project": r})
    ),
    Endpoint(
        "codebase.search.project",
        lambda c, r: c.post("/api/codebase/search", json={"query": "x", "project": r}),
    ),
    Endpoint(
        "codebase.status.project", lambda c, r: c.get("/api/codebase/status", params={"project": r})
    ),
    Endpoint("files.tree.project", lambda c, r: c.get("/api/files/tree", params={"project": r})),
    Endpoint(
        "files.content.put.project",
        lambda c, r: c.put(
            "/api/files/content", json={"project": r, "path": "pwned.txt", "content": "x"}
        ),
    ),
    Endpoint(
        "projects.create.name",
        lambda c, r: c.post("/api/projects", json={"name": r}),
        skip=frozenset({"symlink"}),
    ),
    Endpoint(
        "mcp.project",
        lambda c, r: c.post(
            "/mcp",
            params={"project": r},
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Accept": "application/json, text/event-stream"},
        ),
    ),
)


@pytest.mark.parametrize("endpoint", REF_ENDPOINTS, ids=lambda e: e.id)
async def test_project_references_never_leave_the_callers_roots(
    endpoint: Endpoint, accounts: Accounts, arena: Arena
) -> None:
    problems: list[str] = []
    async with served(accounts.app, Authorization=f"Bearer {accounts.token}") as client:
        for case in REF_CASES:
            resp = await endpoint.send(client, case.text(arena))
            if case.category in endpoint.skip:  # a plain name: a new folder in alice's root
                problems += arena.check(case, resp.text, allowed=OWN_ROOT)
                arena.before = arena.snapshot()
                continue
            problems += arena.check(case, resp.text)
            if resp.status_code not in (400, 404, 409, 422):
                problems.append(f"{case.id}: answered {resp.status_code}: {resp.text[:300]}")
            if str(arena.base) in resp.text.replace(json.dumps(case.text(arena))[1:-1], ""):
                problems.append(f"{case.id}: the answer shows a server path: {resp.text[:300]}")
        sessions = await client.get("/api/agent/sessions")
    assert not problems, "\n".join(problems)
    assert sessions.status_code == 200 and sessions.json()["sessions"] == []


async def test_workspaces_project_refuses_every_reference(accounts: Accounts, arena: Arena) -> None:
    workspaces = accounts.app.state.workspaces
    problems: list[str] = []
    for case in REF_CASES:
        try:
            project = workspaces.project(accounts.alice, case.text(arena))
        except MimiError as exc:
            problems += arena.check(case, exc.message)
        else:
            problems.append(f"{case.id}: named {project!r}")
    assert not problems, "\n".join(problems)
    assert workspaces.project(accounts.alice, "alice/default").name == "default"
    assert {p.ref for p in workspaces.projects(accounts.alice)} == {"alice/default"}


async def test_no_project_is_made_through_a_symlinked_root(
    accounts: Accounts, arena: Arena
) -> None:
    async with served(accounts.app, Authorization=f"Bearer {accounts.token}") as client:
        resp = await client.post("/api/projects", json={"name": "app", "team": "linked"})
        again = await client.post("/api/projects", json={"name": "escape"})
    assert resp.status_code == 409 and "symlink" in resp.json()["error"]["message"]
    assert again.status_code == 409  # the planted link is not followed to make it
    assert not arena.check(CASES[0], resp.text, again.text)

"""GET/POST /api/projects: each caller's own projects and their teams', in both auth modes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimiverse.gateway.base import Capabilities
from mimiverse.server.app import accounts_of, create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

PASSWORD = "correct horse battery"


def accounts_app(
    make_settings: Callable[..., Settings], tmp_path: Path, chat: FakeBackend | None = None
) -> Any:
    """An auth=accounts app over real SQLite and folders in ``tmp_path`` and fake models
    (chat and embeddings on separate endpoints, so indexing never eats scripted replies)."""
    (tmp_path / "proj").mkdir(exist_ok=True)
    settings = make_settings(
        auth="accounts", project_root=tmp_path / "proj", workspaces_dir=tmp_path / "ws",
        index_on_start=False, index_watch=False, embedded=False, rate_limits=False,
    )  # fmt: skip
    embed = FakeBackend("fake-embed", capabilities=Capabilities(embed=True))
    chat = chat or FakeBackend("fake-chat", capabilities=Capabilities(chat=True))
    return create_app(settings, gateway_with(chat, embed))


def add_user(app: Any, name: str, *teams: str) -> dict[str, str]:
    """A member with an API token, in ``teams`` (made when missing): their request headers."""
    accounts = accounts_of(app)
    user = accounts.create_user(name, PASSWORD)
    for team in teams:
        if team not in {t["slug"] for t in accounts.teams()}:
            accounts.create_team(team)
        accounts.add_member(team, user["id"])
    raw, _ = accounts.create_token(user["id"], "test")
    return {"Authorization": f"Bearer {raw}"}


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Any:
    return accounts_app(make_settings, tmp_path)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def test_create_and_list_own_projects(
    app: Any, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = add_user(app, "alice")
    assert (await client.get("/api/projects", headers=alice)).json() == {"projects": []}
    made = await client.post("/api/projects", json={"name": "App"}, headers=alice)
    assert made.status_code == 201, made.text
    assert made.json() == {"ref": "alice/app", "owner": "alice", "name": "app", "shared": False}
    assert (tmp_path / "ws" / "users" / "alice" / "app").is_dir()
    listed = (await client.get("/api/projects", headers=alice)).json()["projects"]
    assert [p["ref"] for p in listed] == ["alice/app"]
    assert "root" not in listed[0]  # server paths are nobody's business
    again = await client.post("/api/projects", json={"name": "app"}, headers=alice)
    assert again.status_code == 409 and "exists already" in again.json()["error"]["message"]


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "has space", "x" * 33, "-dash"])
async def test_project_names_are_validated(
    app: Any, client: httpx.AsyncClient, tmp_path: Path, name: str
) -> None:
    alice = add_user(app, "alice")
    resp = await client.post("/api/projects", json={"name": name}, headers=alice)
    assert resp.status_code == 400, resp.text
    assert "lower-case letters" in resp.json()["error"]["message"]
    users = tmp_path / "ws" / "users"
    assert not users.exists() or [p.name for p in users.iterdir()] in ([], ["alice"])
    assert not (tmp_path / "ws" / "evil").exists()


async def test_bad_bodies_and_anonymous_callers_are_refused(
    app: Any, client: httpx.AsyncClient
) -> None:
    alice = add_user(app, "alice")
    empty = await client.post("/api/projects", json={"name": ""}, headers=alice)
    extra = await client.post("/api/projects", json={"name": "a", "owner": "bob"}, headers=alice)
    assert empty.status_code == 400 and extra.status_code == 400
    assert "owner" in extra.json()["error"]["message"]
    assert (await client.get("/api/projects")).status_code == 401
    assert (await client.post("/api/projects", json={"name": "x"})).status_code == 401


async def test_team_projects_are_visible_to_members_only(
    app: Any, client: httpx.AsyncClient
) -> None:
    alice, carol = add_user(app, "alice", "core"), add_user(app, "carol", "core")
    bob = add_user(app, "bob")
    made = await client.post("/api/projects", json={"name": "app", "team": "core"}, headers=alice)
    assert made.status_code == 201, made.text
    assert made.json() == {"ref": "team:core/app", "owner": "team:core", "name": "app",
                           "shared": True}  # fmt: skip
    await client.post("/api/projects", json={"name": "mine"}, headers=alice)

    def refs(resp: httpx.Response) -> list[str]:
        return [p["ref"] for p in resp.json()["projects"]]

    assert refs(await client.get("/api/projects", headers=alice)) == ["alice/mine", "team:core/app"]
    assert refs(await client.get("/api/projects", headers=carol)) == ["team:core/app"]
    assert refs(await client.get("/api/projects", headers=bob)) == []
    outsider = await client.post("/api/projects", json={"name": "x", "team": "core"}, headers=bob)
    assert outsider.status_code == 404 and "not in a team 'core'" in outsider.text


async def test_local_mode_serves_the_one_project_root(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    root = tmp_path / "myproj"
    root.mkdir()
    settings = make_settings(project_root=root, index_on_start=False, embedded=False)
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    async with client_for(app) as client:
        listed = (await client.get("/api/projects")).json()
        assert listed == {"projects": [{"ref": "local/myproj", "owner": "local",
                                        "name": "myproj", "shared": False}]}  # fmt: skip
        made = await client.post("/api/projects", json={"name": "other"})
    assert made.status_code == 400 and "auth=local serves one project" in made.text
    assert not (tmp_path / "other").exists()

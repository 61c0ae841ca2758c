"""The codebase API in-process: search modes, status, symbols, bad input, live updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimiverse.gateway.base import Capabilities
from mimiverse.index.service import IndexService, build_indexer
from mimiverse.server.app import create_app
from mimiverse.testing import FakeBackend, Script, gateway_with

USERS = """class UserStore:
    def get_user_name(self, uid):
        name = self.names[uid]
        name = name.strip()
        return name.title()

    def count(self):
        total = len(self.names)
        total += 0
        return total


def delete_user(store, uid):
    store.drop(uid)
    store.flush()
    store.log("deleted", uid)
    return True
"""
PARSE = """import json


def parse_config(text):
    data = json.loads(text)
    data.setdefault("debug", False)
    data.setdefault("name", "app")
    return data
"""
FILES = {
    "app/users.py": USERS,
    "app/parse.py": PARSE,
    "README.md": "# Project\n\nHow users are stored.\n",
}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The index store: "" for SQLite, else a real PostgreSQL + pgvector's URL."""
    return str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else ""


@pytest.fixture(params=["embed-only"])
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, make_settings: Any, store_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, IndexService]]:
    """The codebase API over each store and a fake embedder (``embed+rerank``: and a fake
    reranker)."""
    root = tmp_path / "project"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    settings = make_settings(project_root=root, index_on_start=False, index_postgres_url=store_url)
    backends = [FakeBackend("fake-embed", capabilities=Capabilities(embed=True))]
    if request.param == "embed+rerank":
        backends.append(FakeBackend("fake-rerank", capabilities=Capabilities(rerank=True)))
    gw = gateway_with(*backends)
    service = IndexService(build_indexer(settings, gw), watch=False)
    await service.start()
    await asyncio.wait_for(service.ready.wait(), 30)
    await service.indexer.embed_pending()
    app = create_app(settings, gw)
    app.state.index = service
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as c:
        yield c, service
    await service.close()
    await gw.close()


async def test_lexical_search_shape(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, _ = api
    body = (
        await client.post("/api/codebase/search", json={"query": "user name", "mode": "lexical"})
    ).json()
    top = body["results"][0]
    assert top["path"] == "app/users.py" and top["symbol"].startswith("UserStore")
    assert top["start_line"] <= 2 and top["end_line"] >= 5
    assert "name = self.names[uid]" in top["snippet"]
    assert top["ranks"] == {"lexical": 1}


async def test_hybrid_fuses_both_methods(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, _ = api
    body = (await client.post("/api/codebase/search", json={"query": "parse config"})).json()
    assert body["mode"] == "hybrid"
    assert body["status"]["vectors_complete"] == 1.0
    assert any(set(r["ranks"]) == {"lexical", "semantic"} for r in body["results"])
    assert body["results"][0]["symbol"] == "parse_config"


async def test_filters(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, _ = api
    md = {"query": "users", "mode": "lexical", "filters": {"language": "markdown"}}
    assert [
        r["path"] for r in (await client.post("/api/codebase/search", json=md)).json()["results"]
    ] == ["README.md"]
    glob = {"query": "user", "mode": "lexical", "filters": {"path": "app/*.py", "kind": "function"}}
    results = (await client.post("/api/codebase/search", json=glob)).json()["results"]
    assert [r["symbol"] for r in results] == ["delete_user"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "   "}, 400, "query is empty"),
        ({"query": "x" * 100_000}, 400, "the limit is 2000"),
        ({"query": "a", "filters": {"path": "../etc/*"}}, 400, "leaves the project"),
        ({"query": "a", "filters": {"path": "/etc/passwd"}}, 400, "relative to the project root"),
        (
            {"query": "a", "filters": {"language": "klingon"}},
            400,
            "unknown language 'klingon': use one of",
        ),
        ({"query": "a", "mode": "vibes"}, 400, "mode"),
    ],
)
async def test_bad_input_is_4xx_naming_the_fix(
    api: tuple[httpx.AsyncClient, IndexService], body: dict[str, Any], status: int, fragment: str
) -> None:
    client, _ = api
    resp = await client.post("/api/codebase/search", json=body)
    assert resp.status_code == status
    assert fragment in resp.json()["error"]["message"]


async def test_status(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, _ = api
    status = (await client.get("/api/codebase/status")).json()
    assert status["ready"] is True and status["files"] == 3
    assert status["chunks"] >= 4 and status["embedded"] == status["chunks"]


async def test_symbols_api(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, _ = api
    defs = (await client.get("/api/codebase/definitions", params={"name": "delete_user"})).json()
    assert defs["definitions"][0]["path"] == "app/users.py" and defs["definitions"][0]["line"] == 13
    refs = (await client.get("/api/codebase/references", params={"name": "loads"})).json()
    assert refs["references"][0]["path"] == "app/parse.py"
    repo = (await client.get("/api/codebase/repomap", params={"budget": 200})).json()
    assert "app/users.py:" in repo["map"]
    bad = await client.get("/api/codebase/repomap", params={"budget": 1})
    assert bad.status_code == 400


async def test_changed_file_is_searchable(api: tuple[httpx.AsyncClient, IndexService]) -> None:
    client, service = api
    path = service.indexer.root / "app/new.py"
    path.write_text("def frobnicate_widgets(w):\n    return w\n")
    await service.on_change([path])
    body = {"query": "frobnicate widgets", "mode": "lexical"}
    results = (await client.post("/api/codebase/search", json=body)).json()["results"]
    assert results[0]["symbol"] == "frobnicate_widgets"
    path.unlink()
    await service.on_change([path])
    results = (await client.post("/api/codebase/search", json=body)).json()["results"]
    assert all(r["path"] != "app/new.py" for r in results)
    defs = (
        await client.get("/api/codebase/definitions", params={"name": "frobnicate_widgets"})
    ).json()
    assert defs["definitions"] == []


async def test_index_off_is_503(make_settings: Any) -> None:
    app = create_app(make_settings(index_on_start=False), gateway_with(FakeBackend()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as c:
        resp = await c.get("/api/codebase/status")
    assert resp.status_code == 503 and "MIMI_PROJECT_ROOT" in resp.json()["error"]["message"]


@pytest.mark.parametrize("api", ["embed+rerank"], indirect=True)
async def test_rerank_reorders_when_an_endpoint_serves_it(
    api: tuple[httpx.AsyncClient, IndexService],
) -> None:
    client, _ = api
    body = {"query": "parse the config text", "mode": "hybrid"}
    found = (await client.post("/api/codebase/search", json=body)).json()
    assert found["reranked"] is True
    top = found["results"][0]
    assert top["symbol"] == "parse_config"
    assert top["ranks"]["rerank"] == 1 and "rerank" in top["scores"]
    plain = (await client.post("/api/codebase/search", json={**body, "rerank": False})).json()
    assert plain["reranked"] is False
    assert all("rerank" not in r["ranks"] for r in plain["results"])


@pytest.mark.parametrize("api", ["embed+rerank"], indirect=True)
async def test_a_failing_reranker_keeps_the_fused_order(
    api: tuple[httpx.AsyncClient, IndexService],
) -> None:
    client, service = api
    from mimiverse.errors import UpstreamError

    assert service.indexer.gateway is not None
    reranker = service.indexer.gateway.router.endpoints["fake-rerank"].backend
    assert isinstance(reranker, FakeBackend)
    reranker.default = Script(fail_before=UpstreamError("reranker down"))
    found = (await client.post("/api/codebase/search", json={"query": "parse config"})).json()
    assert found["reranked"] is False
    assert found["results"][0]["symbol"] == "parse_config"


async def test_rerank_without_an_endpoint_is_a_400_naming_the_fix(
    api: tuple[httpx.AsyncClient, IndexService],
) -> None:
    client, _ = api
    body = {"query": "parse config", "rerank": True}
    resp = await client.post("/api/codebase/search", json=body)
    assert resp.status_code == 400
    assert "no endpoint serves the rerank task" in resp.json()["error"]["message"]
    default = (await client.post("/api/codebase/search", json={"query": "parse config"})).json()
    assert default["reranked"] is False

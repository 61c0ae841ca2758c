"""Login, cookies, CSRF, brute force, scopes and default-deny, over the real app (ASGI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimiverse.errors import ConfigError
from mimiverse.server.app import accounts_of, create_app
from mimiverse.server.auth import is_guarded
from mimiverse.server.routes.auth import setup_code
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

PASSWORD = "correct horse battery"
ORIGIN = "http://127.0.0.1"


@pytest.fixture
def build(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Any]:
    (tmp_path / "proj").mkdir(exist_ok=True)

    def factory(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "auth": "accounts", "project_root": tmp_path / "proj", "index_on_start": False,
            "embedded": False,
        }  # fmt: skip
        values.update(overrides)
        return create_app(make_settings(**values), gateway_with(FakeBackend("fake")))

    return factory


@pytest.fixture
async def app(build: Callable[..., Any]) -> Any:
    application = build()
    accounts_of(application).create_user("alice", PASSWORD, role="admin")
    accounts_of(application).create_user("bob", PASSWORD)
    return application


def client_for(app: Any, base: str = ORIGIN, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, **kwargs)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def login(client: httpx.AsyncClient, user: str = "alice", **headers: str) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"username": user, "password": PASSWORD}, headers=headers
    )


async def test_every_api_route_refuses_anonymous_callers(
    app: Any, client: httpx.AsyncClient
) -> None:
    """Default-deny: each /api, /v1 and /mcp route answers 401 without credentials."""
    checked = 0
    routes = [(m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item]
    for method, path in [*routes, ("POST", "/mcp"), ("GET", "/metrics")]:
        if not is_guarded(path):
            continue
        url = path.replace("{", "").replace("}", "")
        resp = await client.request(method, url, json={})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.headers["www-authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 30
    assert (await client.get("/api/health")).status_code == 200
    status = (await client.get("/api/auth/status")).json()
    assert status == {"auth": "accounts", "setup_required": False, "user": None}


async def test_cookie_flags_rotation_and_logout(app: Any, client: httpx.AsyncClient) -> None:
    first = await login(client)
    assert first.status_code == 200, first.text
    cookie = first.headers["set-cookie"]
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # plain http: a Secure cookie would never come back
    old = client.cookies["mimi_session"]
    me = (await client.get("/api/auth/me")).json()
    assert me["username"] == "alice" and me["via"] == "session" and me["csrf"]
    second = await login(client, Origin=ORIGIN)
    assert client.cookies["mimi_session"] != old  # a new session id at every login
    assert accounts_of(app).authenticate_session(old) is None  # and the old one ended
    csrf = second.json()["csrf"]
    out = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200 and "mimi_session" not in client.cookies
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_secure_cookie_behind_an_https_proxy(
    build: Callable[..., Any], tmp_path: Path
) -> None:
    application = build(trust_proxy_headers=True)
    accounts_of(application).create_user("alice", PASSWORD)
    async with client_for(application) as c:
        resp = await login(c, **{"X-Forwarded-Proto": "https"})
    assert "secure" in resp.headers["set-cookie"].lower()
    untrusted = build(
        data_dir=tmp_path / "other"
    )  # without trust_proxy_headers the header is ignored
    accounts_of(untrusted).create_user("alice", PASSWORD)
    async with client_for(untrusted) as c:
        resp = await login(c, **{"X-Forwarded-Proto": "https"})
    assert "secure" not in resp.headers["set-cookie"].lower()


async def test_csrf_cross_origin_and_missing_token_are_refused(client: httpx.AsyncClient) -> None:
    csrf = (await login(client)).json()["csrf"]
    body = {"name": "editor"}
    evil = await client.post(
        "/api/auth/tokens",
        json=body,
        headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf},
    )
    assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]["message"]
    site = await client.post(
        "/api/auth/tokens",
        json=body,
        headers={"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf},
    )
    assert site.status_code == 403
    missing = await client.post("/api/auth/tokens", json=body, headers={"Origin": ORIGIN})
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["error"]["message"]
    wrong = await client.post("/api/auth/tokens", json=body, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    ok = await client.post(
        "/api/auth/tokens", json=body, headers={"Origin": ORIGIN, "X-CSRF-Token": csrf}
    )
    assert ok.status_code == 201, ok.text
    # a cross-origin login (login CSRF) is refused too
    assert (await login(client, Origin="https://evil.example")).status_code == 403


async def test_brute_force_is_throttled_and_the_window_passes(build: Callable[..., Any]) -> None:
    # argon2 makes each failure take ~0.1-0.5 s: the window must outlast five of them
    application = build(rate_limit_login="5 per 8 seconds")
    accounts_of(application).create_user("alice", PASSWORD)
    async with client_for(application) as c:
        codes = []
        for _ in range(20):
            resp = await c.post(
                "/api/auth/login", json={"username": "alice", "password": "wrong password!"}
            )
            codes.append(resp.status_code)
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        throttled = await login(c)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        await asyncio.sleep(int(throttled.headers["retry-after"]) + 0.2)
        assert (await login(c)).status_code == 200
    failures = accounts_of(application).audit.entries(action="login", limit=50)
    assert sum(not e["ok"] for e in failures) == 5  # throttled attempts never reach a check


async def test_tokens_scopes_and_admin_routes(app: Any, client: httpx.AsyncClient) -> None:
    bob = accounts_of(app).user_by_name("bob")
    raw, _ = accounts_of(app).create_token(bob["id"], "editor", scopes=["v1"])
    bearer = {"Authorization": f"Bearer {raw}"}
    assert (await client.get("/v1/models", headers=bearer)).status_code == 200
    denied = await client.get("/api/auth/me", headers=bearer)
    assert denied.status_code == 403 and "'api' scope" in denied.json()["error"]["message"]
    raw_api, _ = accounts_of(app).create_token(bob["id"], "cli")
    api = {"Authorization": f"Bearer {raw_api}"}
    assert (await client.get("/api/auth/me", headers=api)).json()["username"] == "bob"
    assert (await client.get("/api/admin/users", headers=api)).status_code == 403
    assert (await client.get("/metrics", headers=api)).status_code == 403
    bad = await client.get("/api/auth/me", headers={"Authorization": "Bearer mimi_nope"})
    assert bad.status_code == 401
    # the admin manages users, teams and reads the audit log
    csrf = (await login(client)).json()["csrf"]
    head = {"X-CSRF-Token": csrf}
    users = (await client.get("/api/admin/users")).json()["users"]
    assert {u["username"] for u in users} == {"alice", "bob"}
    made = await client.post(
        "/api/admin/users", json={"username": "carol", "password": PASSWORD}, headers=head
    )
    assert made.status_code == 201, made.text
    carol = made.json()["id"]
    team = await client.post("/api/admin/teams", json={"slug": "core"}, headers=head)
    assert team.status_code == 201
    joined = await client.put(f"/api/admin/teams/core/members/{carol}", headers=head)
    assert joined.json()["members"] == ["carol"]
    promoted = await client.patch(f"/api/admin/users/{carol}", json={"role": "admin"}, headers=head)
    assert promoted.json()["role"] == "admin"
    entries = (await client.get("/api/admin/audit")).json()["entries"]
    actions = [e["action"] for e in entries]
    for action in ("user_updated", "team_member_added", "team_created", "user_created", "login",
                   "token_created"):  # fmt: skip
        assert action in actions, actions
    revoke = await client.delete("/api/auth/tokens/nope", headers=head)
    assert revoke.status_code == 404


async def test_first_admin_by_setup_code(build: Callable[..., Any]) -> None:
    application = build()
    settings = application.state.settings
    async with client_for(application) as c:
        assert (await c.get("/api/auth/status")).json()["setup_required"] is True
        body = {"username": "root", "password": PASSWORD, "setup_code": "guess"}
        assert (await c.post("/api/auth/setup", json=body)).status_code == 403
        body["setup_code"] = setup_code(settings)
        made = await c.post("/api/auth/setup", json=body)
        assert made.status_code == 201, made.text
        assert made.json()["user"]["role"] == "admin"
        again = await c.post("/api/auth/setup", json={**body, "username": "eve"})
        assert again.status_code == 403 and "setup is done" in again.json()["error"]["message"]


async def test_local_mode_trusts_loopback_only(build: Callable[..., Any]) -> None:
    application = build(auth="local")
    async with client_for(application) as c:
        me = (await c.get("/api/auth/me")).json()
        assert me["username"] == "local" and me["role"] == "admin"
        rebinding = await c.get("/api/auth/me", headers={"Host": "evil.example"})
        assert rebinding.status_code == 403 and "ALLOWED_HOSTS" in rebinding.text
        cross = await c.post("/api/cache/clear", headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        placeholder = {"Authorization": "Bearer unused"}  # what OpenAI SDKs insist on sending
        assert (await c.get("/v1/models", headers=placeholder)).status_code == 200
        assert (await c.post("/mcp", json={}, headers=placeholder)).status_code == 401
    remote = httpx.ASGITransport(app=application, client=("192.0.2.7", 5000))
    async with httpx.AsyncClient(transport=remote, base_url=ORIGIN) as c:
        resp = await c.get("/api/auth/me")
        assert resp.status_code == 401 and "loopback" in resp.json()["error"]["message"]
        assert (
            await c.get("/v1/models", headers={"Authorization": "Bearer unused"})
        ).status_code == 401


def test_production_mode_refuses_unsafe_settings(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings(env="production", host="0.0.0.0", session_secret="changeme"))
    problems = caught.value.details["problems"]
    assert any("well-known" in p for p in problems)
    assert any("auth=local" in p for p in problems) and any("HTTPS" in p for p in problems)
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(make_settings(env="production", session_secret="k3y-Z9!aQ"))
    with pytest.raises(ConfigError, match="not set"):
        create_app(make_settings(env="production"))
    fine = make_settings(
        env="production", host="0.0.0.0", auth="accounts", trust_proxy_headers=True,
        session_secret="pX2r9Lw0qZ8vB3nK7tY1uE5sA6dF4gH2jM0cV9bN", index_on_start=False,
        embedded=False,
    )  # fmt: skip
    create_app(fine, gateway_with(FakeBackend("fake")))


def test_cross_site_websocket_handshake_is_refused(build: Callable[..., Any]) -> None:
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    application = build(auth="local")
    with TestClient(application, base_url=ORIGIN, client=("127.0.0.1", 5000)) as tc:
        session = tc.post("/api/agent/sessions", json={}).json()["id"]
        url = f"ws://127.0.0.1/api/agent/sessions/{session}/ws"
        evil = {"Origin": "https://evil.example"}
        with pytest.raises(WebSocketDisconnect) as refused, tc.websocket_connect(url, headers=evil):
            pass
        assert refused.value.code == 4403
        with tc.websocket_connect(url, headers={"Origin": ORIGIN}) as ws:
            ws.close()

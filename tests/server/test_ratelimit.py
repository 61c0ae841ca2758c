"""Rate limits: the memory limiter, the route groups, and the middleware over the real app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from starlette.types import Message

from mimiverse.errors import ConfigError
from mimiverse.server.app import accounts_of, create_app
from mimiverse.server.limiting import GROUPS, RateLimits, group_of
from mimiverse.server.ratelimit import Limiter, build_storage, rate
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

PASSWORD = "correct horse battery"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
FIM = {"prefix": "def f():\n    ", "suffix": "\n"}

# --- the limiter -----------------------------------------------------------------------------


async def test_limiter_allows_the_rate_then_says_how_long_to_wait() -> None:
    limiter = Limiter(MemoryStorage())
    assert [await limiter.hit("3/minute", "k") for _ in range(3)] == [0, 0, 0]
    wait = await limiter.hit("3/minute", "k")
    assert 1 <= wait <= 60
    assert await limiter.test("3/minute", "k") == wait or await limiter.test("3/minute", "k") > 0


async def test_limiter_keys_are_independent_and_test_does_not_count() -> None:
    limiter = Limiter(MemoryStorage())
    for _ in range(5):
        assert await limiter.test("1/minute", "a") == 0
    assert await limiter.hit("1/minute", "a") == 0
    assert await limiter.hit("1/minute", "a") > 0
    assert await limiter.hit("1/minute", "b") == 0
    assert await limiter.hit("1/minute", "a", "x") == 0  # a longer key is another key


async def test_limiter_clear_forgets_one_key() -> None:
    limiter = Limiter(MemoryStorage())
    await limiter.hit("1/hour", "a")
    await limiter.hit("1/hour", "b")
    await limiter.clear("1/hour", "a")
    assert await limiter.hit("1/hour", "a") == 0
    assert await limiter.hit("1/hour", "b") > 0


async def test_limiter_cost_counts_several() -> None:
    limiter = Limiter(MemoryStorage())
    assert await limiter.hit("5/minute", "k", cost=4) == 0
    assert await limiter.hit("5/minute", "k", cost=2) > 0
    assert await limiter.hit("5/minute", "k") == 0


def test_bad_rates_and_storage_name_the_fix(make_settings: Callable[..., Settings]) -> None:
    assert rate("5 per 10 seconds").amount == 5
    with pytest.raises(ConfigError, match="60/minute"):
        rate("lots")
    with pytest.raises(ConfigError, match="MIMI_REDIS_URL"):
        build_storage(make_settings(rate_limit_storage="redis"))
    assert isinstance(build_storage(make_settings()), MemoryStorage)
    with pytest.raises(ConfigError, match="60/minute"):  # when the server starts
        RateLimits(FakeBackend, make_settings(rate_limit_fim="fast"))  # type: ignore[arg-type]


# --- the route groups ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "/v1/chat/completions", "heavy"),
        ("POST", "/v1/completions", "heavy"),
        ("POST", "/api/ai/chat/stream", "heavy"),
        ("POST", "/api/agent/sessions", "heavy"),
        ("GET", "/api/agent/sessions", "default"),
        ("POST", "/api/codebase/search", "heavy"),
        ("POST", "/api/ai/fim", "fim"),
        ("POST", "/api/ai/fim/stream", "fim"),
        ("GET", "/v1/models", "default"),
        ("POST", "/v1/embeddings", "default"),
        ("GET", "/api/usage", "default"),
        ("GET", "/api/health", "exempt"),
    ],
)
def test_groups(method: str, path: str, group: str) -> None:
    assert group_of(method, path) == group


def test_every_group_has_a_setting() -> None:
    fields = Settings.model_fields
    for _, _, group in GROUPS:
        assert group == "exempt" or f"rate_limit_{group}" in fields


# --- the middleware over the app -------------------------------------------------------------


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Any:
    (tmp_path / "proj").mkdir(exist_ok=True)
    settings = make_settings(
        auth="accounts",
        project_root=tmp_path / "proj",
        index_on_start=False,
        embedded=False,
        rate_limit_default="3/minute",
        rate_limit_heavy="2/minute",
        rate_limit_fim="4/minute",
        default_tier="team",  # no quota in these tests
    )
    return create_app(settings, gateway_with(FakeBackend("fake")))


def token_of(app: Any, name: str) -> str:
    accounts = accounts_of(app)
    user = accounts.create_user(name, PASSWORD)
    raw, _ = accounts.create_token(user["id"], "t")
    return raw


def client(app: Any, ip: str, token: str = "") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers)


async def statuses(c: httpx.AsyncClient, n: int, method: str = "GET", url: str = "/v1/models",
                   **kw: Any) -> list[int]:  # fmt: skip
    return [(await c.request(method, url, **kw)).status_code for _ in range(n)]


async def test_per_user_limits_are_independent(app: Any) -> None:
    alice, bob = token_of(app, "alice"), token_of(app, "bob")
    async with client(app, "10.0.0.1", alice) as a, client(app, "10.0.0.2", bob) as b:
        assert await statuses(a, 4) == [200, 200, 200, 429]
        assert await statuses(b, 3) == [200, 200, 200]
    async with client(app, "10.0.0.9", alice) as a_elsewhere:
        refused = await a_elsewhere.get("/v1/models")  # the account's count follows it
    assert refused.status_code == 429
    assert "your account" in refused.json()["error"]["message"]


async def test_per_ip_limit_is_shared_by_users(app: Any) -> None:
    alice, bob = token_of(app, "alice"), token_of(app, "bob")
    async with client(app, "10.0.0.5", alice) as a, client(app, "10.0.0.5", bob) as b:
        assert await statuses(a, 2) == [200, 200]
        assert await statuses(b, 2) == [200, 429]
        refused = await b.get("/v1/models")
    assert "address 10.0.0.5" in refused.json()["error"]["message"]


async def test_refusal_is_429_with_retry_after_in_the_error_shape(app: Any) -> None:
    alice = token_of(app, "alice")
    async with client(app, "10.0.0.1", alice) as a:
        await statuses(a, 3)
        resp = await a.get("/v1/models")
    assert resp.status_code == 429
    retry = int(resp.headers["retry-after"])
    assert 1 <= retry <= 60
    assert resp.headers["x-ratelimit-limit"] == "3"
    assert resp.headers["x-ratelimit-remaining"] == "0"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "code", "retry_after"}
    assert error["type"] == "rate_limited" and error["code"] == 429
    assert error["retry_after"] == retry
    assert "3/minute" in error["message"] and f"retry in {retry} s" in error["message"]


async def test_groups_are_counted_apart(app: Any) -> None:
    alice = token_of(app, "alice")
    async with client(app, "10.0.0.1", alice) as a:
        assert await statuses(a, 4) == [200, 200, 200, 429]  # default: 3/minute
        chats = await statuses(a, 3, "POST", "/v1/chat/completions", json=CHAT)
        assert chats == [200, 200, 429]  # heavy: 2/minute
        heavy = await a.post("/v1/chat/completions", json=CHAT)
        assert "heavy rate limit of 2/minute" in heavy.json()["error"]["message"]
        fims = await statuses(a, 5, "POST", "/api/ai/fim", json=FIM)
        assert fims == [200, 200, 200, 200, 429]  # fim: 4/minute


async def test_anonymous_public_paths_are_limited_per_ip(app: Any) -> None:
    async with client(app, "10.0.0.7") as anon:
        codes = await statuses(anon, 4, url="/api/auth/status")
        assert 429 not in codes[:3] and codes[3] == 429
        refused = await anon.get("/api/auth/status")
        assert "address 10.0.0.7" in refused.json()["error"]["message"]
        assert await statuses(anon, 5, url="/api/health") == [200] * 5  # probes are exempt
    async with client(app, "10.0.0.8") as other:
        assert (await other.get("/api/auth/status")).status_code != 429


async def test_rate_limits_off(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(
        rate_limits=False, rate_limit_default="1/minute", index_on_start=False, embedded=False,
        project_root=tmp_path,
    )  # fmt: skip
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    async with client(app, "127.0.0.1") as local:
        assert await statuses(local, 5) == [200] * 5


async def test_local_mode_is_limited_too(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(rate_limit_default="2/minute", index_on_start=False, embedded=False,
                             project_root=tmp_path)  # fmt: skip
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    async with client(app, "127.0.0.1") as local:
        assert await statuses(local, 3) == [200, 200, 429]


async def test_websocket_handshake_counts_once_and_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    accepted: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        accepted.append(scope["path"])

    middleware = RateLimits(inner, make_settings(rate_limit_default="2/minute"))
    app = SimpleNamespace(state=SimpleNamespace(limiter=Limiter(MemoryStorage())))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/api/agent/sessions/s1/ws", "headers": [],
             "client": ("10.1.1.1", 1), "app": app, "state": {}}  # fmt: skip
    for _ in range(3):
        await middleware(dict(scope), receive, send)
    assert len(accepted) == 2
    assert sent == [{"type": "websocket.close", "code": 4429}]


async def test_requests_are_served_when_the_counter_store_is_down(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port

    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_storage="redis",
        rate_limit_default="1/minute", index_on_start=False, embedded=False, project_root=tmp_path,
    )  # fmt: skip
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    async with client(app, "127.0.0.1") as local:
        assert await statuses(local, 3) == [200, 200, 200]  # degraded, not down
    assert "rate limits not applied" in caplog.text
    await app.state.limiter.close()

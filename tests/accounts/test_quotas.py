"""Monthly quotas: tiers as data, the usage meter on real SQLite, and 429s through the app."""

from __future__ import annotations

import asyncio
import calendar
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimiverse.accounts.quotas import Meter, load_tiers, month_end, month_of
from mimiverse.accounts.store import AccountDB
from mimiverse.errors import BadRequest, ConfigError
from mimiverse.server.app import accounts_of, create_app
from mimiverse.server.limiting import quotas_of
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

PASSWORD = "correct horse battery"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
TIERS = """
[free]
requests_per_month = 1000
tokens_per_month = 100_000
[tiny]
requests_per_month = 3
[small]
tokens_per_month = 10
[team]
"""

# --- tiers -----------------------------------------------------------------------------------


def test_bundled_tiers() -> None:
    tiers = load_tiers()
    assert {"free", "pro", "team"} <= set(tiers)
    assert 0 < tiers["free"].requests_per_month < tiers["pro"].requests_per_month
    assert 0 < tiers["free"].tokens_per_month < tiers["pro"].tokens_per_month
    assert tiers["team"].requests_per_month == tiers["team"].tokens_per_month == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[free]\nrequests_per_month = -1\n", "whole number"),
        ("[free]\nrequests_per_month = 'many'\n", "whole number"),
        ("[free]\nrequests = 5\n", "only requests_per_month and tokens_per_month"),
        ("free = 5\n", "not a table"),
        ("[free\n", "cannot read"),
        ("", "defines no tier"),
    ],
)
def test_bad_tiers_file_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_tiers(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tiers(tmp_path / "absent.toml")


def test_months_are_utc_calendar_months() -> None:
    new_year_eve = calendar.timegm((2024, 12, 31, 23, 59, 59, 0, 0, 0))
    assert month_of(new_year_eve) == "2024-12"
    assert month_of(new_year_eve + 1) == "2025-01"
    assert month_end(new_year_eve) == new_year_eve + 1
    assert month_end(calendar.timegm((2025, 2, 10, 0, 0, 0, 0, 0, 0))) == calendar.timegm(
        (2025, 3, 1, 0, 0, 0, 0, 0, 0)
    )


# --- the meter -------------------------------------------------------------------------------


def stored(db: AccountDB) -> dict[tuple[str, str], tuple[int, int]]:
    rows = db.rows("SELECT user_id, period, requests, tokens FROM usage")
    return {(r["user_id"], r["period"]): (r["requests"], r["tokens"]) for r in rows}


async def test_meter_counts_in_memory_then_writes_within_the_interval(tmp_path: Path) -> None:
    db = AccountDB(tmp_path / "m.sqlite3")
    meter = Meter(lambda: db, flush_after_s=0.05)
    month = month_of(time.time())
    meter.count_request("u1")
    meter.count_request("u1")
    meter.add_tokens("u1", 30, 12)
    assert meter.used("u1") == (2, 42)
    assert stored(db) == {}  # nothing written on the request path
    await asyncio.sleep(0.2)
    assert stored(db) == {("u1", month): (2, 42)}
    meter.count_request("u1")
    meter.close()  # shutdown writes what is pending
    assert stored(db) == {("u1", month): (3, 42)}


async def test_meter_writes_at_once_after_many_requests(tmp_path: Path) -> None:
    db = AccountDB(tmp_path / "m.sqlite3")
    meter = Meter(lambda: db, flush_after_s=60, flush_every=3)
    for _ in range(3):
        meter.count_request("u1")
    assert stored(db) == {("u1", month_of(time.time())): (3, 0)}


async def test_meters_of_two_processes_add_up(tmp_path: Path) -> None:
    first, second = AccountDB(tmp_path / "m.sqlite3"), AccountDB(tmp_path / "m.sqlite3")
    a, b = Meter(lambda: first), Meter(lambda: second)
    a.count_request("u1")
    a.flush()
    assert b.used("u1") == (1, 0)  # read from the table
    b.count_request("u1")
    b.add_tokens("u1", 5, 5)
    b.flush()
    a.count_request("u1")
    a.flush()  # each write reads back the table's totals
    assert a.used("u1") == (3, 10)
    a.close()
    b.close()


async def test_meter_keeps_counts_when_the_table_cannot_be_written(tmp_path: Path) -> None:
    db = AccountDB(tmp_path / "m.sqlite3")
    broken = True

    def db_or_fail() -> AccountDB:
        if broken:
            raise sqlite3.OperationalError("database is locked")
        return db

    meter = Meter(db_or_fail, flush_after_s=60)
    meter.count_request("u1")
    meter.flush()
    assert meter.used("u1") == (1, 0)  # degraded read: counts from zero plus pending
    broken = False
    meter.count_request("u1")
    meter.flush()
    assert stored(db) == {("u1", month_of(time.time())): (2, 0)}


def test_meter_starts_a_new_month(tmp_path: Path) -> None:
    db = AccountDB(tmp_path / "m.sqlite3")
    now = [calendar.timegm((2025, 1, 31, 23, 59, 59, 0, 0, 0))]
    meter = Meter(lambda: db, clock=lambda: now[0])
    meter.count_request("u1")  # no event loop here: written at once
    now[0] += 2
    meter.count_request("u1")
    meter.count_request("u1")
    assert stored(db) == {("u1", "2025-01"): (1, 0), ("u1", "2025-02"): (2, 0)}
    assert meter.used("u1") == (2, 0)
    assert meter.used("u1", "2025-01") == (1, 0)


# --- through the app -------------------------------------------------------------------------


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Any:
    (tmp_path / "proj").mkdir(exist_ok=True)
    (tmp_path / "tiers.toml").write_text(TIERS)
    settings = make_settings(
        auth="accounts", project_root=tmp_path / "proj", index_on_start=False, embedded=False,
        tiers_file=tmp_path / "tiers.toml",
    )  # fmt: skip
    return create_app(settings, gateway_with(FakeBackend("fake")))


def user_with_token(app: Any, name: str, tier: str = "free", role: str = "member") -> str:
    accounts = accounts_of(app)
    user = accounts.create_user(name, PASSWORD, tier=tier, role=role)  # type: ignore[arg-type]
    scopes = ("api", "v1", "admin") if role == "admin" else ("api", "v1")
    raw, _ = accounts.create_token(user["id"], "t", scopes=scopes)
    return raw


@pytest.fixture
async def as_user(app: Any) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def factory(token: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {token}"},
        )
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


async def test_request_quota_refuses_with_quota_exceeded_until_next_month(
    app: Any, as_user: Callable[[str], httpx.AsyncClient]
) -> None:
    bob = as_user(user_with_token(app, "bob", tier="tiny"))
    assert [(await bob.get("/v1/models")).status_code for _ in range(3)] == [200, 200, 200]
    refused = await bob.get("/v1/models")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "quota_exceeded" and error["code"] == 429
    until_next_month = month_end(time.time()) - time.time()
    retry = int(refused.headers["retry-after"])
    assert error["retry_after"] == retry and abs(retry - until_next_month) < 5
    assert "'tiny' tier allows 3 requests a month" in error["message"]
    assert "ask an admin" in error["message"]
    usage = await bob.get("/api/usage")  # still answers, so the user sees why
    assert usage.status_code == 200
    body = usage.json()
    assert body["metered"] is True and body["tier"] == "tiny"
    assert body["requests"] == 4  # three served, and this one
    assert body["limits"] == {"requests_per_month": 3, "tokens_per_month": 0}
    assert body["remaining"] == {"requests": 0, "tokens": None}
    assert body["period"] == month_of(time.time())
    assert body["resets_at"].endswith("-01T00:00:00Z")


async def test_token_quota_counts_model_usage_streamed_or_not(
    app: Any, as_user: Callable[[str], httpx.AsyncClient]
) -> None:
    fake: FakeBackend = app.state.gateway.router.endpoints["fake"].backend
    carol = as_user(user_with_token(app, "carol", tier="small"))
    fake.enqueue("a", "b")  # FakeBackend reports 3 prompt tokens + one per piece
    assert (await carol.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert (await carol.get("/api/usage")).json()["tokens"] == 5
    fake.enqueue("c", "d")
    streamed = await carol.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    usage = (await carol.get("/api/usage")).json()
    assert usage["tokens"] == 10 and usage["remaining"]["tokens"] == 0
    refused = await carol.get("/v1/models")
    assert refused.status_code == 429
    assert "10 model tokens a month" in refused.json()["error"]["message"]


async def test_fim_tokens_are_metered(
    app: Any, as_user: Callable[[str], httpx.AsyncClient]
) -> None:
    alice = as_user(user_with_token(app, "alice"))
    fim = await alice.post("/api/ai/fim", json={"prefix": "x = ", "suffix": "\n"})
    assert fim.status_code == 200
    assert (await alice.get("/api/usage")).json()["tokens"] >= 4


async def test_admin_sees_everyones_usage(
    app: Any, as_user: Callable[[str], httpx.AsyncClient]
) -> None:
    admin = as_user(user_with_token(app, "root", role="admin"))
    bob = as_user(user_with_token(app, "bob", tier="tiny"))
    await bob.get("/v1/models")
    await bob.get("/v1/models")
    assert (await bob.get("/api/admin/usage")).status_code == 403
    listing = (await admin.get("/api/admin/usage")).json()
    assert listing["period"] == month_of(time.time())
    rows = {row["username"]: row for row in listing["users"]}
    assert rows["bob"]["requests"] == 2  # the guard refused the third before it was counted
    assert rows["bob"]["limits"]["requests_per_month"] == 3
    assert rows["root"]["requests"] == 1 and rows["root"]["tier"] == "free"
    old = (await admin.get("/api/admin/usage", params={"period": "2001-01"})).json()
    assert all(row["requests"] == 0 for row in old["users"])
    bad = await admin.get("/api/admin/usage", params={"period": "January"})
    assert bad.status_code == 400 and "period" in bad.json()["error"]["message"]
    with pytest.raises(BadRequest, match="YYYY-MM"):
        quotas_of(app).everyone([], "2025-13")


async def test_unknown_tier_gets_the_default_tiers_limits(
    app: Any, as_user: Callable[[str], httpx.AsyncClient]
) -> None:
    dave = as_user(user_with_token(app, "dave", tier="gold"))
    usage = (await dave.get("/api/usage")).json()
    assert usage["tier"] == "free" and usage["limits"]["requests_per_month"] == 1000


async def test_counts_are_written_at_shutdown(app: Any, tmp_path: Path) -> None:
    token = user_with_token(app, "erin")
    quotas_of(app).meter = Meter(lambda: accounts_of(app).db, flush_after_s=3600)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {token}"},
        ) as erin:
            for _ in range(5):
                assert (await erin.get("/v1/models")).status_code == 200
        assert stored(accounts_of(app).db) == {}  # only shutdown writes them here
    db = AccountDB(app.state.settings.data_dir / "mimiverse.sqlite3")
    user_id = db.row("SELECT id FROM users WHERE username = 'erin'")
    assert user_id is not None
    assert stored(db)[(user_id["id"], month_of(time.time()))] == (5, 0)


async def test_local_mode_is_not_metered(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(index_on_start=False, embedded=False, project_root=tmp_path)
    app = create_app(settings, gateway_with(FakeBackend("fake")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as local:
        await local.get("/v1/models")
        usage = (await local.get("/api/usage")).json()
    assert usage["metered"] is False and usage["limits"] is None
    assert app.state.accounts is None  # no accounts database opened for it

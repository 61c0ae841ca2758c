"""The response cache: keys, TTLs, LRU, stats, clearing, chat opt-in, and degrading."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from mimiverse.errors import ConfigError
from mimiverse.gateway.base import FimRequest
from mimiverse.gateway.cache import ResponseCache, cache_key, from_settings, normalize_payload
from mimiverse.gateway.cache_stores.base import CacheStore, task_of, task_prefix
from mimiverse.gateway.cache_stores.memory import MemoryStore
from mimiverse.gateway.cache_stores.redis import RedisStore
from mimiverse.gateway.cache_stores.sqlite import SqliteStore
from mimiverse.settings import Settings

KEY_RE = re.compile(r"^mimi:v1:(chat|fim|embed|rerank):[0-9a-f]{64}$")
TTLS = {"fim": 60, "embed": 120, "rerank": 60, "chat": 60}


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class StoreEnv:
    """One store under test and how to let time pass for it."""

    kind: str
    store: CacheStore
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreEnv]:
    clock = FakeClock()

    async def tick(seconds: float) -> None:
        clock.now += seconds

    store: CacheStore
    advance: Callable[[float], Awaitable[None]]
    if request.param == "memory":
        store, advance = MemoryStore(100, clock=clock), tick
    elif request.param == "sqlite":
        store, advance = SqliteStore(tmp_path / "c" / "cache.sqlite3", clock=clock), tick
    else:
        store, advance = RedisStore(request.getfixturevalue("redis_url")), asyncio.sleep
        await store.clear()
    try:
        yield StoreEnv(request.param, store, advance)
    finally:
        if request.param == "redis":
            await store.clear()
        await store.close()


@pytest.fixture
async def cache(env: StoreEnv) -> AsyncIterator[tuple[ResponseCache, list[tuple[str, str]]]]:
    events: list[tuple[str, str]] = []
    rc = ResponseCache(env.store, ttls=TTLS, on_event=lambda t, e: events.append((t, e)))
    yield rc, events
    await rc.close()


def key(task: str, n: int) -> str:
    return cache_key("m", task, {"n": n})


# --- keys ----------------------------------------------------------------------------------


def test_key_shape_and_determinism() -> None:
    payload = {"prefix": "def f(", "suffix": "\n", "max_tokens": 64, "temperature": 0.0}
    k = cache_key("qwen", "fim", payload)
    assert KEY_RE.match(k)
    assert task_of(k) == "fim" and k.startswith(task_prefix("fim"))
    assert cache_key("qwen", "fim", dict(reversed(payload.items()))) == k
    assert cache_key("other", "fim", payload) != k
    assert cache_key("qwen", "chat", payload) != k


def test_key_is_sha256_of_documented_canonical_json() -> None:
    payload = {"inputs": ["héllo", "b"], "x": None}
    doc = {"model": "e5", "task": "embed", "input": {"inputs": ["héllo", "b"]}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cache_key("e5", "embed", payload) == (
        "mimi:v1:embed:" + hashlib.sha256(text.encode()).hexdigest()
    )


def test_key_normalization() -> None:
    base = {"prefix": "a", "temperature": 0, "max_tokens": 64, "stop": ["\n\n", "```"]}
    k = cache_key("m", "fim", base)
    same = [
        {**base, "temperature": 0.0, "max_tokens": 64.0},
        {**base, "stop": ["```", "\n\n", "```"]},
        {**base, "language": None},
    ]
    for payload in same:
        assert cache_key("m", "fim", payload) == k, payload
    different = [
        {**base, "prefix": "a "},
        {**base, "prefix": "A"},
        {**base, "temperature": 0.2},
        {**base, "stop": ["\n\n"]},
        {**base, "max_tokens": 65},
    ]
    for payload in different:
        assert cache_key("m", "fim", payload) != k, payload
    assert cache_key("m", "fim", {"stop": "\n"}) == cache_key("m", "fim", {"stop": ["\n", "\n"]})
    assert cache_key("m", "fim", {"stop": []}) == cache_key("m", "fim", {})
    assert normalize_payload({"a": {"b": None, "c": 1.5}, "l": [1.0, None]}) == {
        "a": {"c": 1.5},
        "l": [1, None],
    }


def test_key_accepts_dataclasses() -> None:
    req = FimRequest(prefix="x = ", suffix="\n", stop=["\n"])
    assert cache_key("m", "fim", {"req": req}) == cache_key("m", "fim", {"req": asdict(req)})
    assert ResponseCache.cache_key("m", "fim", asdict(req)) == cache_key("m", "fim", asdict(req))


# --- stores --------------------------------------------------------------------------------


async def test_store_roundtrip(env: StoreEnv) -> None:
    k = key("fim", 1)
    assert await env.store.get(k) is None
    await env.store.set(k, b"\x00abc", 60)
    assert await env.store.get(k) == b"\x00abc"
    await env.store.set(k, b"new", 60)
    assert await env.store.get(k) == b"new"
    assert await env.store.count() == 1


async def test_store_ttl_expiry(env: StoreEnv) -> None:
    short, long = key("fim", 1), key("fim", 2)
    await env.store.set(short, b"s", 1)
    await env.store.set(long, b"l", 60)
    assert await env.store.get(short) == b"s"
    await env.advance(1.2)
    assert await env.store.get(short) is None
    assert await env.store.get(long) == b"l"
    assert await env.store.count("fim") == 1


async def test_store_clear_and_count(env: StoreEnv) -> None:
    for n in range(3):
        await env.store.set(key("fim", n), b"f", 60)
    for n in range(2):
        await env.store.set(key("embed", n), b"e", 60)
    assert await env.store.count() == 5
    assert await env.store.count("fim") == 3
    assert await env.store.count("rerank") == 0
    assert await env.store.clear("fim") == 3
    assert await env.store.get(key("fim", 0)) is None
    assert await env.store.get(key("embed", 0)) == b"e"
    assert await env.store.count() == 2
    assert await env.store.clear() == 2
    assert await env.store.count() == 0


async def test_memory_lru_eviction() -> None:
    store = MemoryStore(3)
    for name in "abc":
        await store.set(key("fim", ord(name)), name.encode(), 60)
    assert await store.get(key("fim", ord("a"))) == b"a"  # a is now most recent
    await store.set(key("fim", ord("d")), b"d", 60)
    assert len(store) == 3
    assert await store.get(key("fim", ord("b"))) is None
    for name in "acd":
        assert await store.get(key("fim", ord(name))) == name.encode()


async def test_sqlite_persists_and_purges(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "cache.sqlite3"
    store = SqliteStore(path, clock=clock, purge_every=2)
    await store.set(key("fim", 1), b"old", 1)
    clock.now += 5
    await store.set(key("fim", 2), b"x", 60)  # second write purges the expired row
    await store.close()
    reopened = SqliteStore(path, clock=clock)
    try:
        assert await reopened.get(key("fim", 2)) == b"x"
        with reopened._write_lock:
            rows = reopened._writer.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
        assert rows == 1
    finally:
        await reopened.close()


# --- the ResponseCache facade -------------------------------------------------------------


async def test_cache_roundtrip_stats_and_events(
    cache: tuple[ResponseCache, list[tuple[str, str]]], env: StoreEnv
) -> None:
    rc, events = cache
    fim_key = cache_key("m", "fim", {"prefix": "def "})
    emb_key = cache_key("m", "embed", {"inputs": ["a"]})
    assert await rc.get("fim", fim_key) is None
    await rc.set("fim", fim_key, "main():")
    assert await rc.get("fim", fim_key) == "main():"
    assert await rc.get("fim", fim_key) == "main():"
    assert await rc.get("embed", emb_key) is None
    await rc.set("embed", emb_key, [[0.25, -1.5, 3.0]])
    assert await rc.get("embed", emb_key) == [[0.25, -1.5, 3.0]]

    stats = await rc.stats()
    assert stats["store"] == env.kind
    assert (stats["hits"], stats["misses"], stats["sets"], stats["errors"]) == (3, 2, 2, 0)
    assert stats["hitRate"] == pytest.approx(0.6)
    assert stats["keys"] == 2 and stats["degraded"] is False
    assert stats["tasks"]["fim"] == {
        "hits": 2, "misses": 1, "hitRate": pytest.approx(2 / 3), "sets": 1, "errors": 0, "keys": 1,
    }  # fmt: skip
    assert stats["tasks"]["embed"]["hitRate"] == 0.5
    assert stats["tasks"]["rerank"] == {
        "hits": 0, "misses": 0, "hitRate": 0.0, "sets": 0, "errors": 0, "keys": 0,
    }  # fmt: skip
    assert events == [("fim", "miss"), ("fim", "hit"), ("fim", "hit"), ("embed", "miss"),
                      ("embed", "hit")]  # fmt: skip


async def test_cache_clear_all_and_one_task(
    cache: tuple[ResponseCache, list[tuple[str, str]]],
) -> None:
    rc, _ = cache
    for n in range(2):
        await rc.set("fim", key("fim", n), f"f{n}")
    await rc.set("rerank", key("rerank", 0), [{"index": 0, "score": 0.9}])
    assert await rc.clear("fim") == 2
    assert await rc.get("fim", key("fim", 0)) is None
    assert await rc.get("rerank", key("rerank", 0)) == [{"index": 0, "score": 0.9}]
    assert (await rc.stats())["keys"] == 1
    assert await rc.clear() == 1
    assert await rc.get("rerank", key("rerank", 0)) is None
    assert (await rc.stats())["keys"] == 0


async def test_chat_only_cached_when_asked(
    cache: tuple[ResponseCache, list[tuple[str, str]]], env: StoreEnv
) -> None:
    rc, events = cache
    k = cache_key("m", "chat", {"messages": [{"role": "user", "content": "hi"}]})
    await rc.set("chat", k, "hello")
    assert await env.store.count("chat") == 0
    assert await rc.get("chat", k, allow_chat=True) is None
    await rc.set("chat", k, "hello", allow_chat=True)
    assert await rc.get("chat", k, allow_chat=True) == "hello"
    assert await rc.get("chat", k) is None  # not asked: not even looked up
    chat = (await rc.stats())["tasks"]["chat"]
    assert (chat["hits"], chat["misses"], chat["sets"], chat["keys"]) == (1, 1, 1, 1)
    assert events == [("chat", "miss"), ("chat", "hit")]


async def test_ttl_zero_disables_a_task(env: StoreEnv) -> None:
    rc = ResponseCache(env.store, ttls={**TTLS, "fim": 0, "chat": 0})
    try:
        assert not rc.cacheable("fim") and rc.cacheable("embed")
        await rc.set("fim", key("fim", 1), "x")
        await rc.set("chat", key("chat", 1), "x", allow_chat=True)
        assert await rc.get("fim", key("fim", 1)) is None
        assert await env.store.count() == 0
        assert rc.ttl_for("unknown-task") == 0
    finally:
        await rc.close()


async def test_cache_passes_task_ttl_to_store() -> None:
    seen: list[int] = []

    class Spy(MemoryStore):
        async def set(self, key: str, value: bytes, ttl_s: int) -> None:
            seen.append(ttl_s)
            await super().set(key, value, ttl_s)

    rc = ResponseCache(Spy(), ttls={"fim": 11, "embed": 22, "rerank": 33, "chat": 44})
    for task in ("fim", "embed", "rerank", "chat"):
        await rc.set(task, key(task, 0), 1, allow_chat=True)
    assert seen == [11, 22, 33, 44]
    await rc.close()


async def test_cache_ttl_expiry_with_clock() -> None:
    clock = FakeClock()
    rc = ResponseCache(MemoryStore(10, clock=clock), ttls={**TTLS, "fim": 5})
    await rc.set("fim", key("fim", 1), "x")
    clock.now += 4.9
    assert await rc.get("fim", key("fim", 1)) == "x"
    clock.now += 0.2
    assert await rc.get("fim", key("fim", 1)) is None
    await rc.close()


async def test_unserialisable_value_and_bad_hook_never_raise() -> None:
    def hook(task: str, event: str) -> None:
        raise RuntimeError("metrics broke")

    rc = ResponseCache(MemoryStore(), ttls=TTLS, on_event=hook)
    await rc.set("fim", key("fim", 1), object())
    assert await rc.get("fim", key("fim", 1)) is None
    assert (await rc.stats())["keys"] == 0
    await rc.close()


# --- degrading -----------------------------------------------------------------------------


async def _exercise_degraded(rc: ResponseCache) -> None:
    k = key("fim", 1)
    assert await rc.get("fim", k) is None
    await rc.set("fim", k, "from-fallback")
    assert await rc.get("fim", k) == "from-fallback"
    stats = await rc.stats()
    assert stats["degraded"] is True and rc.degraded
    assert stats["errors"] >= 1 and stats["tasks"]["fim"]["errors"] >= 1
    assert (stats["hits"], stats["misses"], stats["sets"]) == (1, 1, 1)
    assert stats["keys"] == 1 and stats["tasks"]["fim"]["keys"] == 1


async def test_degrades_when_redis_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mimiverse.cache")
    events: list[tuple[str, str]] = []
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0", timeout_s=0.2)
    rc = ResponseCache(store, ttls=TTLS, on_event=lambda t, e: events.append((t, e)))
    try:
        await _exercise_degraded(rc)
        assert (await rc.stats())["errors"] == 1  # back-off: later calls skip the store
        assert events[0] == ("fim", "error")
        assert await rc.clear() == 1  # clear still reaches the fallback
    finally:
        await rc.close()
    warnings = [r for r in caplog.records if r.name == "mimiverse.cache"]
    assert len(warnings) == 1 and "redis" in warnings[0].getMessage()


async def test_degrades_when_sqlite_is_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mimiverse.cache")
    store = SqliteStore(tmp_path / "cache.sqlite3")
    rc = ResponseCache(store, ttls=TTLS, retry_after_s=0)  # retry the store on every call
    await store.close()
    try:
        await _exercise_degraded(rc)
        assert (await rc.stats())["errors"] >= 5
    finally:
        await rc.close()
    assert len([r for r in caplog.records if r.name == "mimiverse.cache"]) == 1  # once per burst


async def test_recovers_after_back_off() -> None:
    class Flaky(MemoryStore):
        broken = False

        async def get(self, key: str) -> bytes | None:
            if self.broken:
                raise ConnectionError("down")
            return await super().get(key)

    clock = FakeClock()
    store = Flaky()
    rc = ResponseCache(store, ttls=TTLS, retry_after_s=30, clock=clock)
    await rc.set("fim", key("fim", 1), "real")
    store.broken = True
    assert await rc.get("fim", key("fim", 1)) is None  # fallback is empty: a clean miss
    assert rc.degraded
    store.broken = False
    clock.now += 10
    assert await rc.get("fim", key("fim", 1)) is None  # still backing off
    clock.now += 25
    assert await rc.get("fim", key("fim", 1)) == "real"
    assert not rc.degraded
    assert (await rc.stats())["errors"] == 1
    await rc.close()


async def test_survives_redis_killed_mid_use(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    rc = ResponseCache(RedisStore(server.url, timeout_s=0.3), ttls=TTLS, retry_after_s=0.2)
    try:
        await rc.set("embed", key("embed", 1), [1.0, 2.0])
        assert await rc.get("embed", key("embed", 1)) == [1.0, 2.0]
        server.kill()
        assert await rc.get("embed", key("embed", 1)) is None
        assert rc.degraded
        await rc.set("embed", key("embed", 2), [3.0])
        assert await rc.get("embed", key("embed", 2)) == [3.0]
        stats = await rc.stats()
        assert stats["degraded"] and stats["errors"] >= 1 and stats["keys"] == 1

        redis_server_factory(port=server.port)  # Redis comes back, empty
        await asyncio.sleep(0.3)
        assert await rc.get("embed", key("embed", 2)) is None  # answered by Redis again
        assert not rc.degraded
        await rc.set("embed", key("embed", 3), [4.0])
        assert await rc.get("embed", key("embed", 3)) == [4.0]
    finally:
        await rc.close()


# --- from_settings -------------------------------------------------------------------------


async def test_from_settings_picks_store(
    make_settings: Callable[..., Settings], redis_url: str, tmp_path: Path
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "memory"),
        ({"redis_url": redis_url}, "redis"),
        ({"cache_store": "memory", "redis_url": redis_url}, "memory"),
        ({"cache_store": "sqlite", "data_dir": tmp_path / "deep" / "dir"}, "sqlite"),
        ({"cache_store": "off"}, "off"),
    ]
    for values, expected in cases:
        rc = from_settings(make_settings(**values))
        try:
            assert rc.store.name == expected
            assert rc.enabled is (expected != "off")
        finally:
            await rc.close()
    assert (tmp_path / "deep" / "dir" / "cache.sqlite3").is_file()


async def test_from_settings_ttls_and_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        cache_store="off", cache_ttl_fim_s=7, cache_ttl_embed_s=8, cache_ttl_rerank_s=9,
        cache_ttl_chat_s=10,
    )  # fmt: skip
    rc = ResponseCache.from_settings(settings)
    assert rc.ttls == {"fim": 7, "embed": 8, "rerank": 9, "chat": 10}
    await rc.set("fim", key("fim", 1), "x")
    assert await rc.get("fim", key("fim", 1)) is None
    stats = await rc.stats()
    assert stats["store"] == "off" and stats["keys"] == 0 and stats["misses"] == 0
    await rc.close()


def test_from_settings_redis_needs_url(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        from_settings(make_settings(cache_store="redis"))

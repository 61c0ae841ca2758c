"""The gateway's server-side response cache.

``ResponseCache`` stores JSON-serialisable responses (FIM completions, embeddings, rerank
scores, opt-in chat answers) in a ``CacheStore`` (memory, SQLite or Redis) under keys made by
``cache_key``. TTLs come per task from settings; a TTL of 0 turns caching off for that task.

A failing store never fails a request: its exception is counted in ``errors``, logged once
per burst on logger ``mimiverse.cache``, and the cache carries on with an in-memory LRU
fallback (``degraded`` in ``stats()``) until the real store answers again, tried every
``retry_after_s`` seconds. No method of ``ResponseCache`` raises on a store failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mimiverse.errors import ConfigError
from mimiverse.gateway.cache_stores.base import KEY_PREFIX, CacheStore, NullStore
from mimiverse.gateway.cache_stores.memory import MemoryStore
from mimiverse.settings import TASKS, Settings

log = logging.getLogger("mimiverse.cache")

EventHook = Callable[[str, str], None]
"""``on_event(task, event)`` with event ``"hit"``, ``"miss"`` or ``"error"``."""

T = TypeVar("T")

_TTL_FIELDS = {
    "fim": "cache_ttl_fim_s",
    "embed": "cache_ttl_embed_s",
    "rerank": "cache_ttl_rerank_s",
    "chat": "cache_ttl_chat_s",
}
_EXACT_INT = 2**53


def _normalize(value: Any) -> Any:
    """JSON-ready copy of ``value``: no ``None`` in mappings, integral floats as ints."""
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items() if v is not None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _normalize(dataclasses.asdict(value))
    if isinstance(value, bool | str | int) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_INT:
            return int(value)
        return value
    if isinstance(value, list | tuple):
        return [_normalize(item) for item in value]
    return value


def normalize_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields as ``cache_key`` hashes them.

    - keys with ``None`` values are dropped, at every depth (absent == null);
    - integral floats become ints (``temperature`` 0 == 0.0, ``max_tokens`` 64 == 64.0);
    - the top-level ``stop`` (a string or a list of strings) becomes a sorted, de-duplicated
      list and is dropped when empty (``"\\n"`` == ``["\\n"]`` == ``["\\n", "\\n"]``);
    - strings are kept exactly: whitespace and case matter to a model, so they matter here;
    - mapping key order does not matter (keys are sorted when hashed); list order does.
    """
    out = _normalize(payload)
    stop = out.pop("stop", None)
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            out["stop"] = sorted(set(stop))
    elif stop is not None:
        out["stop"] = stop
    return out  # type: ignore[no-any-return]


def cache_key(model: str, task: str, payload: Mapping[str, Any]) -> str:
    """``mimi:v1:<task>:<sha256hex>`` of ``{"model", "task", "input"}`` as canonical JSON.

    Canonical JSON: ``sort_keys=True``, ``separators=(",", ":")``, ``ensure_ascii=False``,
    over ``normalize_payload(payload)``. Pass only fields that change the output (not
    ``stream``, not request ids). Dataclass values (e.g. ``FimRequest``) are expanded.
    """
    doc = {"model": model, "task": task, "input": normalize_payload(payload)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{KEY_PREFIX}{task}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


def _default_ttls() -> dict[str, int]:
    fields = Settings.model_fields
    return {task: int(fields[name].default) for task, name in _TTL_FIELDS.items()}


def _hit_rate(hits: int, misses: int) -> float:
    total = hits + misses
    return hits / total if total else 0.0


class ResponseCache:
    """Cache facade the gateway uses; never raises because a store failed."""

    cache_key = staticmethod(cache_key)

    def __init__(
        self,
        store: CacheStore,
        *,
        ttls: Mapping[str, int] | None = None,
        on_event: EventHook | None = None,
        retry_after_s: float = 30.0,
        fallback_max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttls = dict(_default_ttls() if ttls is None else ttls)
        self.on_event = on_event
        self.retry_after_s = retry_after_s
        self._fallback_max = fallback_max_entries
        self._clock = clock
        self._fallback: MemoryStore | None = None
        self._degraded = False
        self._retry_at = 0.0
        self._counts: dict[str, dict[str, int]] = {task: self._zero() for task in TASKS}

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_event: EventHook | None = None
    ) -> ResponseCache:
        """The cache ``settings.cache_store`` names (auto: redis if ``redis_url``, else memory).

        Raises ``ConfigError`` when ``cache_store = "redis"`` has no ``redis_url`` or the
        SQLite file ``<data_dir>/cache.sqlite3`` cannot be opened.
        """
        kind = settings.cache_store
        if kind == "auto":
            kind = "redis" if settings.redis_url else "memory"
        store: CacheStore
        if kind == "off":
            store = NullStore()
        elif kind == "memory":
            store = MemoryStore(settings.cache_max_entries)
        elif kind == "sqlite":
            from mimiverse.gateway.cache_stores.sqlite import SqliteStore

            path = settings.data_dir / "cache.sqlite3"
            try:
                store = SqliteStore(path)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"cannot open the SQLite cache {path}: {exc}; fix data_dir (MIMI_DATA_DIR) "
                    "or set cache_store to memory",
                    setting="data_dir",
                ) from exc
        else:
            if not settings.redis_url:
                raise ConfigError(
                    "cache_store = 'redis' needs redis_url (MIMI_REDIS_URL), "
                    "e.g. redis://127.0.0.1:6379/0",
                    setting="redis_url",
                )
            from mimiverse.gateway.cache_stores.redis import RedisStore

            store = RedisStore(settings.redis_url)
        ttls = {task: int(getattr(settings, name)) for task, name in _TTL_FIELDS.items()}
        return cls(
            store, ttls=ttls, on_event=on_event, fallback_max_entries=settings.cache_max_entries
        )

    @property
    def enabled(self) -> bool:
        """False for ``cache_store = "off"``: skip computing keys altogether."""
        return not isinstance(self.store, NullStore)

    @property
    def store_name(self) -> str:
        """``memory``, ``sqlite``, ``redis`` or ``off``."""
        return self.store.name

    @property
    def degraded(self) -> bool:
        """True while the real store is failing and the in-memory fallback serves."""
        return self._degraded

    def ttl_for(self, task: str, *, allow_chat: bool = False) -> int:
        """Seconds an entry of ``task`` lives; 0 = not cached (chat needs ``allow_chat``)."""
        if task == "chat" and not allow_chat:
            return 0
        return max(0, self.ttls.get(task, 0))

    def cacheable(self, task: str, *, allow_chat: bool = False) -> bool:
        """Whether ``get``/``set`` would use the store for ``task``."""
        return self.enabled and self.ttl_for(task, allow_chat=allow_chat) > 0

    # --- requests ------------------------------------------------------------------------

    async def get(self, task: str, key: str, *, allow_chat: bool = False) -> Any | None:
        """The cached value, or ``None`` (a miss). Uncacheable tasks return ``None`` uncounted."""
        if not self.cacheable(task, allow_chat=allow_chat):
            return None
        raw = await self._call(task, lambda store: store.get(key), None)
        value: Any = None
        if raw is not None:
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("cache entry %s is not valid JSON; treating it as a miss", key)
                raw = None
        hit = raw is not None
        self._bump(task, "hits" if hit else "misses")
        self._emit(task, "hit" if hit else "miss")
        return value

    async def set(self, task: str, key: str, value: Any, *, allow_chat: bool = False) -> None:
        """Store ``value`` (JSON-serialisable) for the task's TTL; a no-op when uncacheable."""
        ttl = self.ttl_for(task, allow_chat=allow_chat)
        if ttl <= 0 or not self.enabled:
            return
        try:
            data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            log.warning("not caching a %s value for %s: %s", type(value).__name__, task, exc)
            return
        await self._call(task, lambda store: store.set(key, data, ttl), None)
        self._bump(task, "sets")

    async def clear(self, task: str | None = None) -> int:
        """Delete the entries of ``task`` (every task when ``None``); how many went."""
        removed = 0
        try:
            removed += await self.store.clear(task)
        except Exception as exc:
            self._failed(task or "", exc)
        if self._fallback is not None:
            removed += await self._fallback.clear(task)
        return removed

    async def stats(self) -> dict[str, Any]:
        """Counters, hit rates and live key counts, in total and per task."""
        tasks: dict[str, Any] = {}
        for task, c in list(self._counts.items()):
            if not task:
                continue
            tasks[task] = {
                "hits": c["hits"],
                "misses": c["misses"],
                "hitRate": _hit_rate(c["hits"], c["misses"]),
                "sets": c["sets"],
                "errors": c["errors"],
                "keys": await self._keys(task),
            }
        keys = await self._keys(None)
        total = {name: sum(c[name] for c in self._counts.values()) for name in self._zero()}
        return {
            "store": self.store.name,
            "hits": total["hits"],
            "misses": total["misses"],
            "hitRate": _hit_rate(total["hits"], total["misses"]),
            "sets": total["sets"],
            "keys": keys,
            "errors": total["errors"],
            "degraded": self._degraded,
            "tasks": tasks,
        }

    async def _keys(self, task: str | None) -> int:
        return await self._call(task or "", lambda store: store.count(task), 0)

    async def close(self) -> None:
        """Close the store and the fallback; never raises."""
        try:
            await self.store.close()
        except Exception:
            log.debug("closing cache store %s failed", self.store.name, exc_info=True)
        if self._fallback is not None:
            await self._fallback.close()
            self._fallback = None

    # --- failure handling ----------------------------------------------------------------

    async def _call(self, task: str, op: Callable[[CacheStore], Awaitable[T]], default: T) -> T:
        """Run ``op`` on the store in charge; on failure, count it and use the fallback."""
        store = self.store
        if self._degraded and self._clock() < self._retry_at:
            store = self._fallback_store()
        try:
            result = await op(store)
        except Exception as exc:
            if store is self.store:
                self._failed(task, exc)
                try:
                    return await op(self._fallback_store())
                except Exception:
                    log.exception("the in-memory cache fallback failed")
            else:
                log.exception("the in-memory cache fallback failed")
            return default
        if self._degraded and store is self.store:
            self._recovered()
        return result

    def _fallback_store(self) -> MemoryStore:
        if self._fallback is None:
            self._fallback = MemoryStore(self._fallback_max)
        return self._fallback

    def _failed(self, task: str, exc: Exception) -> None:
        self._bump(task, "errors")
        self._emit(task, "error")
        if not self._degraded:
            log.warning(
                "cache store %s failed (%s: %s); serving from an in-memory fallback, "
                "retrying the store every %.0f s",
                self.store.name,
                type(exc).__name__,
                exc,
                self.retry_after_s,
            )
        else:
            log.debug("cache store %s still failing: %r", self.store.name, exc)
        self._degraded = True
        self._retry_at = self._clock() + self.retry_after_s

    def _recovered(self) -> None:
        log.info("cache store %s answers again; leaving the in-memory fallback", self.store.name)
        self._degraded = False
        self._fallback = None

    # --- counters ------------------------------------------------------------------------

    @staticmethod
    def _zero() -> dict[str, int]:
        return {"hits": 0, "misses": 0, "sets": 0, "errors": 0}

    def _bump(self, task: str, name: str) -> None:
        counts = self._counts.get(task)
        if counts is None:
            counts = self._counts[task] = self._zero()
        counts[name] += 1

    def _emit(self, task: str, event: str) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(task, event)
        except Exception:
            log.debug("cache on_event hook failed", exc_info=True)


def from_settings(settings: Settings, *, on_event: EventHook | None = None) -> ResponseCache:
    """``ResponseCache.from_settings``."""
    return ResponseCache.from_settings(settings, on_event=on_event)

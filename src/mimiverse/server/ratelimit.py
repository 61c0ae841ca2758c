"""Rate-limit counters on the `limits` library: in memory, or in Redis shared by processes."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from mimiverse.errors import ConfigError
from mimiverse.settings import Settings


@lru_cache(maxsize=64)
def rate(text: str) -> RateLimitItem:
    """A parsed rate such as '60/minute' (a ConfigError names the setting's syntax)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(
            f"rate '{text}' is not valid: write it like '60/minute' or '5 per 10 seconds'"
        ) from exc


def build_storage(settings: Settings) -> Storage:
    """Memory, or Redis when configured (so several server processes share counts)."""
    kind = settings.rate_limit_storage
    if kind == "auto":
        kind = "redis" if settings.redis_url else "memory"
    if kind == "memory":
        return MemoryStorage()
    if not settings.redis_url:
        raise ConfigError("rate_limit_storage=redis needs MIMI_REDIS_URL (redis://host:port/db)")
    uri = settings.redis_url.replace("rediss://", "async+rediss://", 1).replace(
        "redis://", "async+redis://", 1
    )
    return RedisStorage(uri, implementation="redispy", key_prefix="mimiverse")


class Limiter:
    """Moving-window limits keyed by strings; ``hit`` says how long to wait when over."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        """The limiter the settings describe."""
        return cls(build_storage(settings))

    async def hit(self, limit: str, *key: str, cost: int = 1) -> int:
        """Count one request; 0 when allowed, else the seconds until one would be."""
        item = rate(limit)
        if await self.strategy.hit(item, *key, cost=cost):
            return 0
        return await self.retry_after(limit, *key)

    async def test(self, limit: str, *key: str) -> int:
        """Like ``hit`` without counting: 0 when a request would be allowed now."""
        item = rate(limit)
        if await self.strategy.test(item, *key):
            return 0
        return await self.retry_after(limit, *key)

    async def retry_after(self, limit: str, *key: str) -> int:
        """Whole seconds until the window lets one more request through (at least 1)."""
        stats = await self.strategy.get_window_stats(rate(limit), *key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def clear(self, limit: str, *key: str) -> None:
        """Forget the counts of one key (after a successful login, for instance)."""
        await self.strategy.clear(rate(limit), *key)

    async def close(self) -> None:
        """Close the Redis client's connections (a memory store has none)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()

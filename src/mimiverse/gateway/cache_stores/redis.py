"""Cache store in Redis (``redis.asyncio``): shared by every gateway process.

The client is made on first use, inside the running event loop. Timeouts are short and
there is one immediate retry (to replace a pooled connection a Redis restart broke), so a
dead Redis fails fast and ``ResponseCache`` degrades instead of making callers wait.
"""

from __future__ import annotations

import re

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mimiverse.gateway.cache_stores.base import CacheStore, task_prefix

_GLOB = re.compile(r"([*?\[\]\\])")
_BATCH = 500


class RedisStore(CacheStore):
    """Entries as plain Redis strings with ``EX`` TTLs under ``mimi:v1:<task>:``."""

    name = "redis"

    def __init__(self, url: str, *, timeout_s: float = 0.5) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client: Redis | None = None

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 1),
            )
        return self._client

    async def get(self, key: str) -> bytes | None:
        """``GET key``."""
        value = await self._redis().get(key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """``SET key value EX ttl_s`` (no expiry when ``ttl_s <= 0``)."""
        await self._redis().set(key, value, ex=ttl_s if ttl_s > 0 else None)

    async def clear(self, task: str | None = None) -> int:
        """``SCAN`` the task's prefix and ``UNLINK`` what it finds, in batches."""
        client = self._redis()
        removed = 0
        batch: list[bytes] = []
        async for key in client.scan_iter(match=self._pattern(task), count=1000):
            batch.append(key)
            if len(batch) >= _BATCH:
                removed += int(await client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(await client.unlink(*batch))
        return removed

    async def count(self, task: str | None = None) -> int:
        """Distinct keys a ``SCAN`` of the task's prefix finds."""
        seen: set[bytes] = set()
        async for key in self._redis().scan_iter(match=self._pattern(task), count=1000):
            seen.add(key)
        return len(seen)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @staticmethod
    def _pattern(task: str | None) -> str:
        return _GLOB.sub(r"\\\1", task_prefix(task)) + "*"

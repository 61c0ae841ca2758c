"""In-process LRU cache store with per-entry expiry (the default store)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from mimiverse.gateway.cache_stores.base import CacheStore, task_prefix


class MemoryStore(CacheStore):
    """An ``OrderedDict`` LRU holding at most ``max_entries`` live values.

    Every operation is synchronous under one lock, so it is safe on one event loop and
    across threads. ``clock`` (default ``time.monotonic``) is injectable for tests.
    """

    name = "memory"

    def __init__(
        self, max_entries: int = 20_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``; a hit becomes the most recently used entry."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value``; evict the least recently used entries beyond ``max_entries``."""
        expires_at = self._clock() + ttl_s if ttl_s > 0 else math.inf
        with self._lock:
            self._data[key] = (value, expires_at)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    async def clear(self, task: str | None = None) -> int:
        """Delete the entries of ``task`` (every entry when ``None``)."""
        prefix = task_prefix(task)
        with self._lock:
            doomed = [key for key in self._data if key.startswith(prefix)]
            for key in doomed:
                del self._data[key]
            return len(doomed)

    async def count(self, task: str | None = None) -> int:
        """Live entries of ``task``; expired entries met on the way are dropped."""
        prefix = task_prefix(task)
        now = self._clock()
        with self._lock:
            expired = [key for key, (_, exp) in self._data.items() if exp <= now]
            for key in expired:
                del self._data[key]
            return sum(1 for key in self._data if key.startswith(prefix))

    async def close(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

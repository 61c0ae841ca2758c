"""One index per project, opened on first use (the per-user projects of auth=accounts).

``IndexRegistry.get(root)`` builds and starts an :class:`IndexService` for a project
folder the first time it is asked for, and hands back the same one after that. At most
``limit`` stay open: opening one more closes the least recently used. ``close()`` (at
shutdown) closes them all. Callers check that the caller may use ``root`` first: the
registry knows folders, not people.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from mimiverse.errors import MimiError
from mimiverse.index.service import IndexService, build_indexer
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway

MAX_OPEN = 8
"""Projects whose index (store connections, embedder, file watcher) stays open at once."""


class IndexRegistry:
    """Index services keyed by project root, least recently used closed first."""

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway | None,
        *,
        limit: int = MAX_OPEN,
        watch: bool | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.limit = max(1, limit)
        self.watch = settings.index_watch if watch is None else watch
        self._open: OrderedDict[Path, IndexService] = OrderedDict()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[IndexService]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, root: object) -> bool:
        return isinstance(root, Path) and root.resolve() in self._open

    def peek(self, root: Path) -> IndexService | None:
        """The open service of ``root``, or None (opens nothing)."""
        key = root.resolve()
        service = self._open.get(key)
        if service is not None:
            self._open.move_to_end(key)
        return service

    async def get(self, root: Path) -> IndexService:
        """The service of ``root``: started now (first sync in the background) or already."""
        key = root.resolve()
        evicted: list[IndexService] = []
        async with self._lock:
            if self._closed:
                raise MimiError("the server is shutting down: send the request again later")
            service = self._open.get(key)
            if service is not None:
                self._open.move_to_end(key)
                return service
            indexer = await asyncio.to_thread(build_indexer, self.settings, self.gateway, key)
            service = IndexService(indexer, watch=self.watch)
            await service.start()
            self._open[key] = service
            while len(self._open) > self.limit:
                evicted.append(self._open.popitem(last=False)[1])
        for old in evicted:
            await old.close()
        return service

    def open_soon(self, root: Path) -> None:
        """Start opening ``root``'s index in the background (for callers that cannot wait)."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self.get(root), name="mimi-index-open")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Close every open service (at shutdown); later ``get`` calls fail."""
        self._closed = True
        for task in list(self._pending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self._lock:
            services = list(self._open.values())
            self._open.clear()
        for service in services:
            await service.close()

"""The index as a running service: first sync, background embedding, file watching."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mimiverse.errors import MimiError
from mimiverse.index.indexer import Indexer
from mimiverse.index.stores.base import IndexStore
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway

log = logging.getLogger("mimiverse.index")


def index_dir(settings: Settings, root: Path) -> Path:
    """Where one project's index lives: <data_dir>/index/<hash of its absolute path>."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return settings.data_dir / "index" / key


def open_store(settings: Settings, root: Path) -> IndexStore:
    """The store settings name: SQLite in the data dir, or PostgreSQL."""
    if settings.index_postgres_url:
        from mimiverse.index.stores.postgres import PostgresIndexStore

        return PostgresIndexStore(settings.index_postgres_url, project=str(root.resolve()))
    from mimiverse.index.stores.sqlite import SqliteIndexStore

    return SqliteIndexStore(
        index_dir(settings, root) / "index.sqlite3", lexical=settings.index_lexical
    )


def build_indexer(settings: Settings, gateway: Gateway | None, root: Path | None = None) -> Indexer:
    """An indexer for ``root`` (default: the project_root setting)."""
    root = (root or settings.project_root).resolve()
    return Indexer(
        root,
        open_store(settings, root),
        index_dir(settings, root) / "vectors",
        gateway=gateway,
        max_file_bytes=settings.index_max_file_bytes,
        embed_batch=settings.index_embed_batch,
        rerank_top=settings.index_rerank_top,
    )


class IndexService:
    """Keeps one project's index current while the server runs."""

    def __init__(self, indexer: Indexer, *, watch: bool = True) -> None:
        self.indexer = indexer
        self.watch_enabled = watch
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        """Set once the first sync has finished (lexical search is complete)."""

    async def start(self) -> None:
        """Sync, then embed and watch in the background."""
        self._tasks.append(asyncio.create_task(self._run(), name="mimi-index"))

    async def _run(self) -> None:
        try:
            await asyncio.to_thread(self.indexer.sync)
        except Exception:
            log.exception("index sync of %s failed", self.indexer.root)
        self.ready.set()
        self._dirty.set()
        self._tasks.append(asyncio.create_task(self._embed_loop(), name="mimi-embed"))
        if self.watch_enabled:
            from mimiverse.index.watch import watch

            self._tasks.append(
                asyncio.create_task(watch(self.indexer.root, self.on_change, self._stop))
            )

    async def on_change(self, paths: list[Path]) -> None:
        """Re-index changed files now (lexical), and wake the embedder."""
        touched = await asyncio.to_thread(self.indexer.update_paths, paths)
        if touched:
            self._dirty.set()

    async def _embed_loop(self) -> None:
        while not self._stop.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.indexer.embed_pending()
            except MimiError as exc:
                log.warning("embedding paused: %s", exc.message)
                await asyncio.sleep(30)
                self._dirty.set()

    async def close(self) -> None:
        """Stop background work and close the store."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(self.indexer.store.close)

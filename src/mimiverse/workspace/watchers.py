"""Changes on disk under a project root, for every client watching it (watchfiles).

One ``awatch`` runs per root while at least one client subscribes; each subscriber gets
the changes since it last looked, coalesced per path (a file written three times is one
"modified"). A subscriber that falls too far behind gets ``None``: "reload everything".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from watchfiles import Change, DefaultFilter, awatch

log = logging.getLogger("mimiverse.workspace.watchers")

ChangeKind = Literal["added", "modified", "deleted"]
_KINDS: dict[Change, ChangeKind] = {
    Change.added: "added",
    Change.modified: "modified",
    Change.deleted: "deleted",
}
IGNORED_DIRS = (*DefaultFilter.ignore_dirs, ".ruff_cache", ".mimiverse")
"""Folders whose churn is never reported (.git among them)."""
IGNORED_NAMES = (*DefaultFilter.ignore_entity_patterns, r"\.mimi-tmp$")
"""Name patterns never reported (editor swap files; atomic writes' temp files)."""
MAX_PENDING = 1000
"""Changed paths a subscriber may have waiting before it is told to reload instead."""


@dataclass(frozen=True)
class FileChange:
    """One path that changed, relative to the root ('/' separators)."""

    change: ChangeKind
    path: str

    def as_dict(self) -> dict[str, str]:
        """The API shape."""
        return {"change": self.change, "path": self.path}


@dataclass(eq=False)
class Subscriber:
    """One client's view: the changes it has not taken yet."""

    pending: dict[str, ChangeKind] = field(default_factory=dict)
    overflowed: bool = False
    closed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, changes: list[FileChange]) -> None:
        """Note ``changes`` (the latest per path wins; added-then-modified stays added)."""
        for item in changes:
            before = self.pending.get(item.path)
            if before == "added" and item.change == "modified":
                continue
            if before == "deleted" and item.change == "added":
                self.pending[item.path] = "modified"  # replaced (an atomic save)
                continue
            self.pending[item.path] = item.change
        if len(self.pending) > MAX_PENDING:
            self.pending.clear()
            self.overflowed = True
        if changes or self.overflowed:
            self.ready.set()

    async def next(self) -> list[FileChange] | None:
        """The changes since the last call (waits for some); ``None``: too many, reload."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.closed:
                raise EOFError("the watcher stopped")
            if self.overflowed:
                self.overflowed = False
                self.pending.clear()
                return None
            if self.pending:
                taken = sorted(self.pending.items())
                self.pending.clear()
                return [FileChange(change, path) for path, change in taken]


@dataclass(eq=False)
class _Watch:
    root: Path
    subscribers: set[Subscriber] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Watchers:
    """The running watches, one per root, in the event loop that made this object."""

    def __init__(self, *, debounce_ms: int = 50) -> None:
        self.debounce_ms = debounce_ms
        self.loop = asyncio.get_running_loop()
        self._watches: dict[Path, _Watch] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, root: Path) -> AsyncIterator[Subscriber]:
        """Changes under ``root`` while the context is open."""
        root = root.resolve()
        watch = self._watches.get(root)
        if watch is None:
            watch = _Watch(root)
            watch.task = asyncio.create_task(self._run(watch), name=f"watch {root}")
            self._watches[root] = watch
        subscriber = Subscriber()
        watch.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            watch.subscribers.discard(subscriber)
            if not watch.subscribers and self._watches.get(root) is watch:
                del self._watches[root]
                await _stopped(watch)

    async def close(self) -> None:
        """Stop every watch; their subscribers' ``next`` raise EOFError."""
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await _stopped(watch)

    async def _run(self, watch: _Watch) -> None:
        root = watch.root
        watch_filter = DefaultFilter(ignore_dirs=IGNORED_DIRS, ignore_entity_patterns=IGNORED_NAMES)
        try:
            async for batch in awatch(root, watch_filter=watch_filter, debounce=self.debounce_ms,
                                      step=25, stop_event=watch.stop, recursive=True,
                                      ignore_permission_denied=True):  # fmt: skip
                changes = [c for c in (_change(root, kind, p) for kind, p in batch) if c]
                for subscriber in list(watch.subscribers):
                    subscriber.add(changes)
        except Exception:  # the root went away, or inotify ran out of watches
            log.exception("watching %s stopped", root)
        finally:
            for subscriber in list(watch.subscribers):
                subscriber.closed = True
                subscriber.ready.set()


async def _stopped(watch: _Watch) -> None:
    watch.stop.set()
    for subscriber in list(watch.subscribers):
        subscriber.closed = True
        subscriber.ready.set()
    if watch.task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(watch.task, timeout=5)


def _change(root: Path, kind: Change, path: str) -> FileChange | None:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    if rel == "." or rel.startswith("../") or ".git" in rel.casefold().split("/"):
        return None
    return FileChange(_KINDS[kind], rel)

"""Command output kept up to a limit: the head and the tail, with the cut noted between."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class CappedOutput:
    """Collects text, keeping the first and last ``limit // 2`` characters.

    Text is passed on to ``sink`` as it arrives until ``limit`` characters have been
    streamed; ``finish`` then streams the kept tail that was not shown yet, after a note.
    A sink that fails (a closed websocket) is dropped; the command runs on.
    """

    def __init__(self, limit: int, sink: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.limit = limit
        self.sink = sink
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.total = 0
        self.streamed = 0

    @property
    def dropped(self) -> int:
        """Characters cut from the middle."""
        return self.total - self._head_len - self._tail_len

    @property
    def truncated(self) -> bool:
        """Whether anything was cut."""
        return self.dropped > 0

    async def add(self, text: str) -> None:
        """Keep (and stream) the next piece of output."""
        if not text:
            return
        live = text[: max(0, self.limit - self.streamed)]
        self.total += len(text)
        room = self.head_limit - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            self._trim_tail()
        await self._send(live)

    async def finish(self) -> None:
        """Stream what the live stream skipped: a note and the unseen part of the tail."""
        unseen = self.total - self.streamed
        if unseen <= 0:
            return
        tail = "".join(self._tail)
        shown = tail[-unseen:] if unseen <= len(tail) else tail
        skipped = unseen - len(shown)
        note = f"\n[… {skipped} characters not shown …]\n" if skipped else ""
        await self._send(note + shown, counted=len(shown) + skipped)

    def text(self) -> str:
        """The kept output: all of it, or head + a note of the cut + tail."""
        head, tail = "".join(self._head), "".join(self._tail)
        if not self.truncated:
            return head + tail
        return f"{head}\n[… {self.dropped} characters cut from the middle …]\n{tail}"

    def _trim_tail(self) -> None:
        while self._tail and self._tail_len - len(self._tail[0]) >= self.tail_limit:
            self._tail_len -= len(self._tail.popleft())
        extra = self._tail_len - self.tail_limit
        if extra > 0:
            self._tail[0] = self._tail[0][extra:]
            self._tail_len -= extra

    async def _send(self, text: str, counted: int | None = None) -> None:
        self.streamed += len(text) if counted is None else counted
        if self.sink is None or not text:
            return
        try:
            await self.sink(text)
        except Exception:  # the listener went away; keep running the command
            log.warning("output listener failed; output is no longer streamed", exc_info=True)
            self.sink = None

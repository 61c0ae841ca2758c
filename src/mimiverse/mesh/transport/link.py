"""Links: the ordered, message-framed pipes a handshake and a channel run over.

A ``Link`` moves whole binary messages and knows nothing of keys. ``WebSocketLink`` wraps a
``websockets`` connection; ``memory_pair()`` gives two linked in-process ends (for tests and
simulations); ``shim.ShimLink`` wraps either to inject delay, loss, duplication and reordering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from mimiverse.mesh.transport.errors import ChannelClosed, FrameRejected, FrameTooLarge

T = TypeVar("T")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
CLOSE_HANDSHAKE = 4001  # the handshake failed: bad signature, replay, malformed, timeout
CLOSE_BAD_FRAMES = 4002  # too many tampered, replayed or malformed frames
CLOSE_REFUSED = 4003  # the roster check refused the key
CLOSE_FLOOD = 4008  # over the message or byte rate
CLOSE_SILENT = 4009  # nothing heard for idle_timeout_s
CLOSE_REPLACED = 4010  # a newer or preferred connection to the same device took over


class Link(Protocol):
    """An ordered pipe of whole binary messages."""

    @property
    def address(self) -> str:
        """Where the other end is, for reports (``host:port`` or a label)."""
        ...

    async def send(self, frame: bytes) -> None:
        """Send one message; waits while the pipe is full; ChannelClosed once closed."""
        ...

    async def recv(self) -> bytes:
        """The next message; ChannelClosed once closed, FrameRejected for a bad one."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close both directions (idempotent)."""
        ...


def _reason(text: str) -> str:
    """A close reason that fits the WebSocket limit of 123 UTF-8 bytes."""
    return text.encode()[:120].decode(errors="ignore")


class WebSocketLink:
    """A ``websockets`` connection as a Link (binary messages only)."""

    def __init__(self, ws: Connection) -> None:
        self.ws = ws
        remote = ws.remote_address
        self._address = f"{remote[0]}:{remote[1]}" if remote else "?"

    @property
    def address(self) -> str:
        """The remote ``host:port``."""
        return self._address

    def _closed(self, exc: ConnectionClosed) -> ChannelClosed:
        close = exc.rcvd or exc.sent
        code = close.code if close else 1006
        reason = close.reason if close else "connection lost"
        return ChannelClosed(
            f"connection to {self._address} closed ({code} {reason})".strip(),
            close_code=code,
            reason=reason,
        )

    async def send(self, frame: bytes) -> None:
        """Send one binary message."""
        try:
            await self.ws.send(frame)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def recv(self) -> bytes:
        """The next binary message (text messages are refused)."""
        try:
            message = await self.ws.recv()
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:
                raise FrameTooLarge(
                    f"{self._address} sent a message over the size limit: disconnected"
                ) from None
            raise self._closed(exc) from None
        if isinstance(message, str):
            raise FrameRejected(
                f"{self._address} sent a text message; mesh peers send binary", reason="malformed"
            )
        return message

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the WebSocket with a code and a short reason."""
        await self.ws.close(code, _reason(reason))


async def race(awaitable: Awaitable[T], event: asyncio.Event) -> T | None:
    """Await ``awaitable`` unless ``event`` is set first (then it is cancelled: None)."""
    task = asyncio.ensure_future(awaitable)
    if event.is_set():
        task.cancel()
        return None
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    return None


class _Shared:
    """The state both ends of a memory pair see: closed, with which code."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.code = CLOSE_NORMAL
        self.reason = ""


class MemoryLink:
    """One end of an in-process pipe with bounded queues and a message size limit."""

    def __init__(
        self, name: str, shared: _Shared, inbox: asyncio.Queue[bytes], max_size: int
    ) -> None:
        self.name = name
        self.peer: MemoryLink | None = None
        self._shared = shared
        self._inbox = inbox
        self._max_size = max_size

    @property
    def address(self) -> str:
        """The label this end was given."""
        return self.name

    def _closed_error(self) -> ChannelClosed:
        shared = self._shared
        return ChannelClosed(
            f"memory link {self.name} closed ({shared.code} {shared.reason})".strip(),
            close_code=shared.code,
            reason=shared.reason,
        )

    async def send(self, frame: bytes) -> None:
        """Queue one message at the other end; waits while its inbox is full."""
        if self._shared.closed.is_set() or self.peer is None:
            raise self._closed_error()
        inbox = self.peer._inbox
        if inbox.full():
            await race(inbox.put(bytes(frame)), self._shared.closed)
            if self._shared.closed.is_set():
                raise self._closed_error()
        else:
            inbox.put_nowait(bytes(frame))

    async def recv(self) -> bytes:
        """The next message; an oversized one closes the pipe like WebSocket code 1009."""
        if self._inbox.empty():
            if self._shared.closed.is_set():
                raise self._closed_error()
            frame = await race(self._inbox.get(), self._shared.closed)
            if frame is None:
                raise self._closed_error()
        else:
            frame = self._inbox.get_nowait()
        if len(frame) > self._max_size:
            await self.close(CLOSE_TOO_BIG, "message too big")
            raise FrameTooLarge(f"{self.name}'s peer sent a message over the size limit")
        return frame

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close both ends; later sends and receives raise ChannelClosed."""
        if not self._shared.closed.is_set():
            self._shared.code, self._shared.reason = code, _reason(reason)
            self._shared.closed.set()


def memory_pair(
    names: tuple[str, str] = ("a", "b"), *, max_size: int = 2**20, max_queue: int = 16
) -> tuple[MemoryLink, MemoryLink]:
    """Two linked in-process ends: what one sends, the other receives."""
    shared = _Shared()
    a = MemoryLink(names[0], shared, asyncio.Queue(max_queue), max_size)
    b = MemoryLink(names[1], shared, asyncio.Queue(max_queue), max_size)
    a.peer, b.peer = b, a
    return a, b

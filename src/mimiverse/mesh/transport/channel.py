"""The secure channel: opaque messages to and from one authenticated peer.

Every frame is sealed with the session's per-direction key and counter (``frames``); every
incoming frame passes the rate limits, then authentication and the replay window, before its
message is queued. Both queues are bounded: ``send`` waits when ours is full, and when the
application stops taking messages we stop reading, so the socket pushes back on the peer.
Refused frames are reported; a peer over its rates, or over ``max_rejects`` refused frames,
is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field

from mimiverse.mesh.transport import frames
from mimiverse.mesh.transport.errors import ChannelClosed, FrameRejected, FrameTooLarge
from mimiverse.mesh.transport.handshake import Session
from mimiverse.mesh.transport.limits import ChannelLimits, TokenBucket
from mimiverse.mesh.transport.link import (
    CLOSE_BAD_FRAMES,
    CLOSE_FLOOD,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_SILENT,
    CLOSE_TOO_BIG,
    Link,
    race,
)
from mimiverse.mesh.transport.reports import PeerReport, Reporter, ReportKind, log, log_report

_PING_ID = struct.Struct(">Q")
_MAX_PINGS = 8  # outstanding pings remembered


@dataclass
class ChannelStats:
    """Counters for one channel."""

    sent: int = 0
    received: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class ChannelHealth:
    """When we last heard from the peer (any authentic frame) and the last ping's RTT."""

    opened_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)  # wall clock, for people
    last_seen_mono: float = field(default_factory=time.monotonic)  # for timeouts
    rtt_s: float | None = None

    def seen(self) -> None:
        """Record that an authentic frame arrived just now."""
        self.last_seen, self.last_seen_mono = time.time(), time.monotonic()


class Channel:
    """Send and receive opaque ``bytes`` with one peer whose device key was proven."""

    def __init__(
        self,
        link: Link,
        session: Session,
        *,
        limits: ChannelLimits | None = None,
        reporter: Reporter = log_report,
    ) -> None:
        self.link = link
        self.session = session
        self.limits = limits or ChannelLimits()
        self.reporter = reporter
        self.stats = ChannelStats()
        self.health = ChannelHealth()
        self.close_code: int | None = None
        self.close_reason = ""
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(self.limits.recv_queue)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(self.limits.send_queue)
        self._control: deque[tuple[int, bytes]] = deque(maxlen=16)
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._reader_blocked = False
        self._messages = TokenBucket(self.limits.messages_per_s, self.limits.message_burst)
        self._bytes = TokenBucket(self.limits.bytes_per_s, self.limits.byte_burst)
        self._pace_messages = TokenBucket(self.limits.messages_per_s, self.limits.message_burst / 2)
        self._pace_bytes = TokenBucket(self.limits.bytes_per_s, self.limits.byte_burst / 2)
        self._pings: dict[int, tuple[float, asyncio.Future[float] | None]] = {}
        self._next_ping = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- public ---------------------------------------------------------------------------

    @property
    def peer_key(self) -> bytes:
        """The peer's Ed25519 device public key (32 bytes), proven in the handshake."""
        return self.session.peer_key

    @property
    def address(self) -> str:
        """Where the peer is connected from."""
        return self.link.address

    @property
    def closed(self) -> bool:
        """Whether the channel is closed (or closing)."""
        return self._closing or self._closed.is_set()

    @property
    def queued(self) -> tuple[int, int]:
        """(messages waiting to be sent, messages received and not yet taken)."""
        return self._outbox.qsize(), self._inbox.qsize()

    def start(self) -> Channel:
        """Start reading, writing and keepalive (idempotent); returns self."""
        if not self._tasks:
            jobs = [self._read, self._write]
            if self.limits.ping_interval_s > 0:
                jobs.append(self._keepalive)
            self._tasks = [asyncio.create_task(self._guard(job)) for job in jobs]
        return self

    async def send(self, message: bytes) -> None:
        """Queue one message; waits while the send queue is full; ChannelClosed once closed."""
        if len(message) > self.limits.max_message:
            raise FrameTooLarge(
                f"message of {len(message)} bytes is over max_message "
                f"({self.limits.max_message}): split it"
            )
        if self.closed:
            raise self._closed_error()
        if self._outbox.full():
            await race(self._outbox.put(bytes(message)), self._closed)
            if self._closed.is_set():
                raise self._closed_error()
        else:
            self._outbox.put_nowait(bytes(message))
        self._wake.set()

    async def recv(self) -> bytes:
        """The next message from the peer; ChannelClosed once closed and drained."""
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        if self._closed.is_set():
            raise self._closed_error()
        message = await race(self._inbox.get(), self._closed)
        if message is None:
            if not self._inbox.empty():
                return self._inbox.get_nowait()
            raise self._closed_error()
        return message

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Messages until the channel closes."""
        while True:
            try:
                yield await self.recv()
            except ChannelClosed:
                return

    async def ping(self, timeout_s: float = 5.0) -> float:
        """Round-trip time of one encrypted PING, in seconds."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._send_ping(future)
        async with asyncio.timeout(timeout_s):
            done = await race(future, self._closed)
        if done is None:
            raise self._closed_error()
        return done

    async def close(
        self, reason: str = "closed", *, code: int = CLOSE_NORMAL, flush_s: float = 1.0
    ) -> None:
        """Send what is queued (up to ``flush_s``), say BYE, close the link and stop."""
        if self._closing:
            await self.wait_closed()
            return
        if flush_s > 0 and self._tasks and not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_s):
                    await race(self._outbox.join(), self._closed)
        await self._finish(code, reason, bye=True)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Return once the channel is closed and its tasks have stopped."""
        await self._closed.wait()
        current = asyncio.current_task()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def _closed_error(self) -> ChannelClosed:
        return ChannelClosed(
            f"channel to {self.peer_key.hex()[:16]}… is closed ({self.close_reason})",
            close_code=self.close_code or CLOSE_NORMAL,
            reason=self.close_reason,
        )

    def _report(self, kind: ReportKind, detail: str) -> None:
        report = PeerReport(kind, detail, peer_key=self.peer_key, address=self.address)
        try:
            self.reporter(report)
        except Exception:  # a broken reporter must not break the channel
            log_report(report)

    async def _finish(self, code: int, reason: str, *, bye: bool) -> None:
        """Close once: optional BYE, close the link, stop the other tasks."""
        if self._closing:
            return
        self._closing = True
        self.close_code, self.close_reason = code, reason
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if bye:
            with contextlib.suppress(Exception):  # already gone, or too slow: it is over
                async with asyncio.timeout(self.limits.close_timeout_s):
                    bye_frame = self.session.sealer.seal(frames.BYE, reason.encode()[:120])
                    await self.link.send(bye_frame)
        with contextlib.suppress(Exception):  # bounded by the link's own close timeout
            await self.link.close(code, reason)
        for future in (f for _, f in self._pings.values() if f and not f.done()):
            future.cancel()
        self._closed.set()

    async def _guard(self, job: Callable[[], Coroutine[None, None, None]]) -> None:
        """Run one of our tasks; a bug in it closes the channel instead of hanging it."""
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mesh channel to %s failed", self.address)
            await self._finish(CLOSE_INTERNAL, "internal error", bye=False)

    async def _read(self) -> None:
        try:
            while not self._closing:
                try:
                    frame = await self.link.recv()
                except FrameTooLarge as exc:
                    self.stats.rejected["oversized"] += 1
                    self._report("oversized", exc.message)
                    await self._finish(CLOSE_TOO_BIG, "frame over the size limit", bye=False)
                    return
                except FrameRejected as exc:
                    if await self._reject(exc):
                        return
                    continue
                if not (self._messages.take() and self._bytes.take(len(frame))):
                    self._report("flood", "over the per-peer message or byte rate: disconnected")
                    await self._finish(CLOSE_FLOOD, "over the rate limit", bye=True)
                    return
                self.stats.bytes_in += len(frame)
                try:
                    kind, payload = self.session.opener.open(frame)
                    if kind == frames.DATA and len(payload) > self.limits.max_message:
                        raise FrameTooLarge(f"message of {len(payload)} bytes is over max_message")
                except FrameRejected as exc:
                    if await self._reject(exc):
                        return
                    continue
                self.health.seen()
                if await self._dispatch(kind, payload):
                    return
        except ChannelClosed as exc:
            await self._finish(exc.close_code, exc.reason or "peer gone", bye=False)

    async def _reject(self, exc: FrameRejected) -> bool:
        """Count and report a refused frame; True when that was one too many (closed)."""
        self.stats.rejected[exc.reason] += 1
        self._report(_REJECT_KINDS.get(exc.reason, "malformed"), exc.message)
        limit = self.limits.max_rejects
        if limit is not None and sum(self.stats.rejected.values()) > limit:
            await self._finish(CLOSE_BAD_FRAMES, "too many refused frames", bye=True)
            return True
        return False

    async def _dispatch(self, kind: int, payload: bytes) -> bool:
        """Act on one authentic frame; True when the channel is done."""
        if kind == frames.DATA:
            self.stats.received += 1
            self._reader_blocked = self._inbox.full()
            await self._inbox.put(payload)
            self._reader_blocked = False
        elif kind == frames.PING:
            self._push_control(frames.PONG, payload)
        elif kind == frames.PONG and len(payload) == _PING_ID.size:
            sent = self._pings.pop(_PING_ID.unpack(payload)[0], None)
            if sent is not None:
                self.health.rtt_s = time.monotonic() - sent[0]
                if sent[1] is not None and not sent[1].done():
                    sent[1].set_result(self.health.rtt_s)
        elif kind == frames.BYE:
            reason = payload.decode(errors="replace")
            await self._finish(CLOSE_NORMAL, f"peer said bye: {reason}", bye=False)
            return True
        return False

    def _push_control(self, kind: int, payload: bytes) -> None:
        self._control.append((kind, payload))
        self._wake.set()

    def _send_ping(self, future: asyncio.Future[float] | None = None) -> None:
        self._next_ping += 1
        self._pings[self._next_ping] = (time.monotonic(), future)
        while len(self._pings) > _MAX_PINGS:
            _, old = self._pings.pop(next(iter(self._pings)))
            if old is not None and not old.done():
                old.cancel()
        self._push_control(frames.PING, _PING_ID.pack(self._next_ping))

    async def _write(self) -> None:
        try:
            while True:
                if self._control:
                    kind, payload = self._control.popleft()
                    await self._paced_send(self.session.sealer.seal(kind, payload))
                    continue
                if self._outbox.empty():
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                message = self._outbox.get_nowait()
                frame = self.session.sealer.seal(frames.DATA, message)
                await self._paced_send(frame)
                self._outbox.task_done()
                self.stats.sent += 1
                self.stats.bytes_out += len(frame)
        except ChannelClosed as exc:
            await self._finish(exc.close_code, exc.reason or "peer gone", bye=False)

    async def _paced_send(self, frame: bytes) -> None:
        """Send within our own rates, so a well-behaved peer never sees us as a flood."""
        cost = min(len(frame), self._pace_bytes.burst)
        while (delay := max(self._pace_messages.wait_s(1), self._pace_bytes.wait_s(cost))) > 0:
            await asyncio.sleep(delay)
        self._pace_messages.take(1)
        self._pace_bytes.take(cost)
        await self.link.send(frame)

    async def _keepalive(self) -> None:
        interval = self.limits.ping_interval_s
        while not self._closing:
            await asyncio.sleep(interval)
            silent = time.monotonic() - self.health.last_seen_mono
            if silent > self.limits.idle_timeout_s and not self._reader_blocked:
                self._report("silent", f"nothing heard for {silent:.0f} s: disconnected")
                await self._finish(CLOSE_SILENT, "silent too long", bye=True)
                return
            self._send_ping()


_REJECT_KINDS: dict[str, ReportKind] = {
    kind: kind for kind in ("tampered", "replayed", "too_old", "malformed", "oversized")
}

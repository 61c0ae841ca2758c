"""Manual peers: keep one outgoing connection alive, with backoff, and say how it is doing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from mimiverse.errors import MimiError
from mimiverse.mesh.transport.channel import Channel

log = logging.getLogger("mimiverse.mesh.transport")

Connect = Callable[[str, bytes | None], Awaitable[Channel]]
Lookup = Callable[[bytes], Channel | None]


class Backoff:
    """Exponential backoff with jitter: the n-th delay is in [d/2, d], d = min(max, initial·2ⁿ).

    The jitter keeps many devices that lost the same peer from redialing in lockstep.
    """

    def __init__(
        self, initial_s: float = 0.5, max_s: float = 30.0, *, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        ceiling = min(self.max_s, self.initial_s * 2.0**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the initial delay (after a connection that held)."""
        self.attempt = 0


@dataclass(frozen=True)
class PeerStatus:
    """How one peer is doing, as ``MeshNode.peers()`` and ``mimiverse mesh peers`` show it."""

    key: bytes | None  # the device key, once a handshake proved it
    address: str  # the URL we dial, or where an incoming peer connected from
    direction: Literal["out", "in"]
    connected: bool
    last_seen: float | None  # wall clock of the last authentic frame
    rtt_s: float | None  # round trip of the last encrypted ping
    failures: int  # failed dials since the last good connection
    last_error: str


class Dialer:
    """A peer we dial by address: connects, waits while connected, redials with backoff."""

    def __init__(
        self,
        url: str,
        connect: Connect,
        lookup: Lookup,
        *,
        expect: bytes | None = None,
        backoff: Backoff | None = None,
        stable_s: float = 5.0,
    ) -> None:
        self.url = url
        self.key = expect
        self.backoff = backoff or Backoff()
        self.stable_s = stable_s  # a connection this long resets the backoff
        self.channel: Channel | None = None
        self.failures = 0
        self.connects = 0
        self.last_error = ""
        self._connect = connect
        self._lookup = lookup
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Dialer:
        """Start dialing in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mesh-dial {self.url}")
        return self

    async def stop(self, reason: str = "peer removed", *, flush_s: float = 0.0) -> None:
        """Stop dialing and close our connection."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.channel is not None:
            await self.channel.close(reason, flush_s=flush_s)

    def status(self) -> PeerStatus:
        """This peer's status (from its current or last channel)."""
        channel = self.channel
        return PeerStatus(
            key=self.key,
            address=self.url,
            direction="out",
            connected=channel is not None and not channel.closed,
            last_seen=channel.health.last_seen if channel else None,
            rtt_s=channel.health.rtt_s if channel else None,
            failures=self.failures,
            last_error=self.last_error,
        )

    async def _sleep(self, seconds: float) -> None:
        if not self._stop.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def _run(self) -> None:
        while not self._stop.is_set():
            other = self._lookup(self.key) if self.key else None
            if other is not None and not other.closed and other is not self.channel:
                await self._wait(other)  # the peer dialed us: use that connection
                continue
            try:
                channel = await self._connect(self.url, self.key)
            except (MimiError, OSError, TimeoutError, ValueError) as exc:
                self._failed(str(exc) or type(exc).__name__)
            except Exception as exc:  # websockets' InvalidHandshake, InvalidURI, …
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                self.channel, self.key = channel, channel.peer_key
                self.failures, self.last_error = 0, ""
                self.connects += 1
                opened = time.monotonic()
                await self._wait(channel)
                if time.monotonic() - opened >= self.stable_s:
                    self.backoff.reset()
            await self._sleep(self.backoff.next())

    async def _wait(self, channel: Channel) -> None:
        """Return when ``channel`` closes or we are stopped."""
        closed = asyncio.ensure_future(channel.wait_closed())
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (closed, stop):
            task.cancel()

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        log.info("mesh dial %s failed (%d in a row): %s", self.url, self.failures, error)

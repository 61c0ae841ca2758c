"""A fault-injecting Link for tests: delay, loss, duplication and reordering of frames.

``tc netem`` is not available where the tests run, so faults are injected here, on the send
side of a link, after the handshake (``MeshNode(wrap_link=spec.wrap)``). The channel above it
must stay correct: lost frames are just missing, duplicates are refused as replays, and
reordered frames are accepted once within the replay window. A spec reads from text, so a
peer process in a network-namespace test can take it from an environment variable::

    ShimSpec.parse("loss=0.1,dup=0.05,reorder=0.2,delay=0.001-0.01,seed=7")
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import Counter
from dataclasses import dataclass, fields

from mimiverse.mesh.transport.errors import ChannelClosed
from mimiverse.mesh.transport.link import CLOSE_NORMAL, Link

_ALIASES = {"dup": "duplicate", "delay": "delay_s", "reorder_delay": "reorder_delay_s"}


@dataclass(frozen=True)
class ShimSpec:
    """Fault probabilities (0..1) and delays (seconds) for each frame sent."""

    loss: float = 0.0  # the frame is dropped
    duplicate: float = 0.0  # the frame is sent twice
    reorder: float = 0.0  # the frame is held back ``reorder_delay_s`` so later ones overtake it
    delay_s: tuple[float, float] = (0.0, 0.0)  # uniform extra delay per frame (jitter reorders)
    reorder_delay_s: float = 0.02
    seed: int | None = None  # a seed makes a run repeatable
    max_pending: int = 1024  # frames held back at once; send() waits beyond this

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"shim {name} must be a probability between 0 and 1")
        low, high = self.delay_s
        if not 0.0 <= low <= high:
            raise ValueError("shim delay must be 'low-high' seconds with 0 <= low <= high")

    @classmethod
    def parse(cls, text: str) -> ShimSpec:
        """``"loss=0.1,dup=0.05,reorder=0.2,delay=0.001-0.01,seed=7"`` (empty: no faults)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, raw = item.partition("=")
            name = _ALIASES.get(name.strip(), name.strip())
            if name not in known or not raw:
                raise ValueError(f"shim spec item '{item}': use loss, dup, reorder, delay, seed")
            if name == "delay_s":
                low, _, high = raw.partition("-")
                values[name] = (float(low), float(high or low))
            elif name in ("seed", "max_pending"):
                values[name] = int(raw)
            else:
                values[name] = float(raw)
        return cls(**values)  # type: ignore[arg-type]

    def wrap(self, link: Link) -> ShimLink:
        """``link`` with these faults on what it sends."""
        return ShimLink(link, self)


class ShimLink:
    """A Link that drops, duplicates, delays and reorders what it sends."""

    def __init__(self, inner: Link, spec: ShimSpec) -> None:
        self.inner = inner
        self.spec = spec
        self.counts: Counter[str] = Counter()  # sent, dropped, duplicated, reordered, delivered
        self._rng = random.Random(spec.seed)
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._pump: asyncio.Task[None] | None = None
        self._error: ChannelClosed | None = None

    @property
    def address(self) -> str:
        """The inner link's address."""
        return self.inner.address

    async def send(self, frame: bytes) -> None:
        """Apply the faults to one frame, then send it now or later."""
        if self._error is not None:
            raise self._error
        self.counts["sent"] += 1
        if self._rng.random() < self.spec.loss:
            self.counts["dropped"] += 1
            return
        copies = 1
        if self._rng.random() < self.spec.duplicate:
            self.counts["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            delay = self._rng.uniform(*self.spec.delay_s)
            if self._rng.random() < self.spec.reorder:
                self.counts["reordered"] += 1
                delay += self.spec.reorder_delay_s
            if delay <= 0:
                await self.inner.send(frame)
                self.counts["delivered"] += 1
            else:
                await self._hold(frame, delay)

    async def recv(self) -> bytes:
        """The inner link's next frame (faults apply on the sending side)."""
        return await self.inner.recv()

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Drop what is held back and close the inner link."""
        if self._pump is not None:
            self._pump.cancel()
        self._heap.clear()
        await self.inner.close(code, reason)

    async def _hold(self, frame: bytes, delay: float) -> None:
        while len(self._heap) >= self.spec.max_pending:
            if self._error is not None:
                raise self._error
            self._room.clear()
            await self._room.wait()
        self._seq += 1
        heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, frame))
        self._changed.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._release(), name="mesh-shim")

    async def _release(self) -> None:
        try:
            while True:
                if not self._heap:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.clear()
                    try:
                        async with asyncio.timeout(wait):
                            await self._changed.wait()
                    except TimeoutError:
                        pass
                    continue
                _, _, frame = heapq.heappop(self._heap)
                self._room.set()
                await self.inner.send(frame)
                self.counts["delivered"] += 1
        except ChannelClosed as exc:
            self._error = exc
            self._room.set()

"""Channel limits (sizes, queues, rates, timeouts) and the token bucket that enforces rates."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mimiverse.mesh.transport.frames import OVERHEAD


@dataclass(frozen=True)
class ChannelLimits:
    """What one peer connection may cost us; every bound on memory and CPU lives here."""

    max_message: int = 1 << 20  # bytes of one application message
    send_queue: int = 64  # messages waiting to be sent: send() waits beyond this
    recv_queue: int = 64  # messages received but not yet taken: reading stops beyond this
    # Incoming rates: a peer over them is disconnected. We pace what we send at the same
    # rates with half the burst, so peers that share these limits never trip each other.
    messages_per_s: float = 10_000.0  # sustained frames per second …
    message_burst: int = 20_000  # … with bursts up to this many
    bytes_per_s: float = 64.0 * (1 << 20)  # sustained bytes per second …
    byte_burst: int = 128 << 20  # … with bursts up to this many
    max_rejects: int | None = 16  # rejected frames before we disconnect (None: never)
    replay_window: int = 1024  # how far behind the newest frame a reordered one may be
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 1.0  # wait this long for the peer to acknowledge our close
    ping_interval_s: float = 15.0  # encrypted PING this often (0 disables keepalive)
    idle_timeout_s: float = 45.0  # disconnect a peer heard nothing from for this long
    ws_max_queue: int = 16  # incoming WebSocket frames buffered below us

    @property
    def max_frame(self) -> int:
        """The largest wire frame: a full message plus counter, MAC and kind byte."""
        return self.max_message + OVERHEAD


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up.

    Hand-written rather than the ``limits`` library the HTTP routes use: this counts one
    connection in memory (no shared storage), is asked once per frame, and charges bytes as
    well as messages — a moving window would remember every hit, a bucket is two numbers.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if there are that many; False (nothing spent) if not."""
        self._refill()
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def wait_s(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens would be there (0 when they are now)."""
        self._refill()
        if self.tokens >= amount:
            return 0.0
        return (amount - self.tokens) / self.rate if self.rate > 0 else float("inf")

"""Hybrid logical clocks: wall-clock milliseconds with a logical counter, packed in one int.

A timestamp is ``(ms << 16) | counter``: ordered like (ms, counter), never going back on a
device, and always after every timestamp the device has seen from others (except ones
further than ``max_drift_ms`` in the future, which are not adopted: a peer with a runaway
clock must not drag everyone's clock along). Ties between devices are broken by author.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_DRIFT_MS = 60 * 60 * 1000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def pack(ms: int, counter: int = 0) -> int:
    return (ms << COUNTER_BITS) | counter


def unpack(stamp: int) -> tuple[int, int]:
    """(milliseconds, counter) of a timestamp."""
    return stamp >> COUNTER_BITS, stamp & _COUNTER_MASK


class HybridClock:
    """One device's clock: ``now()`` for its own events, ``observe()`` for others'."""

    def __init__(
        self,
        last: int = 0,
        *,
        clock: Callable[[], int] = wall_ms,
        max_drift_ms: int = MAX_DRIFT_MS,
    ) -> None:
        self.last = last
        self._clock = clock
        self.max_drift_ms = max_drift_ms

    def now(self) -> int:
        """A new timestamp, greater than every one issued or observed before."""
        candidate = pack(self._clock())
        self.last = candidate if candidate > self.last else self.last + 1
        return self.last

    def observe(self, stamp: int) -> bool:
        """Take a peer's timestamp into account; False if it was too far ahead to adopt."""
        if unpack(stamp)[0] > self._clock() + self.max_drift_ms:
            return False
        self.last = max(self.last, stamp)
        return True

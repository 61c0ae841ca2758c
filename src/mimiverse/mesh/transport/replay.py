"""The anti-replay window: each frame counter is accepted at most once (RFC 6479's idea).

Counters up to ``size`` behind the highest one seen may still arrive (reordered by a shim or
a lossy path); each is accepted once. Anything older is refused as too old, anything seen
as replayed. Mark a counter only after its frame authenticated, or a forger could poison
the window with made-up counters.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["ok", "replayed", "too_old"]


class ReplayWindow:
    """A sliding bitmap over the last ``size`` counters (counter 0 is never valid)."""

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError("replay window size must be at least 1")
        self.size = size
        self.highest = 0
        self._bits = 0  # bit i set: counter (highest - i) was accepted
        self._mask = (1 << size) - 1

    def check(self, counter: int) -> Verdict:
        """Whether ``counter`` may be accepted now (does not record it)."""
        if counter <= 0:
            return "too_old"
        if counter > self.highest:
            return "ok"
        offset = self.highest - counter
        if offset >= self.size:
            return "too_old"
        return "replayed" if (self._bits >> offset) & 1 else "ok"

    def accept(self, counter: int) -> None:
        """Record ``counter`` as used (call after ``check`` said ok and the MAC verified)."""
        if counter > self.highest:
            shift = counter - self.highest
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self.size else 1
            self.highest = counter
        else:
            self._bits |= 1 << (self.highest - counter)

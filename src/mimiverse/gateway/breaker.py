"""A circuit breaker per endpoint: closed → open after N failures → half-open trial."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Stops sending traffic to an endpoint that keeps failing, then probes it again."""

    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a request may go to this endpoint now (claims the half-open trial)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def would_allow(self) -> bool:
        """Like ``allow`` without claiming the trial."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial_in_flight)

    def record_success(self) -> None:
        """The endpoint answered: close the circuit."""
        self.consecutive_failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """The endpoint failed: count it, and open (or re-open) the circuit at the threshold."""
        self.consecutive_failures += 1
        self._trial_in_flight = False
        if self.opened_at is not None or self.consecutive_failures >= self.threshold:
            self.opened_at = self._clock()

    def trip(self) -> None:
        """Open now (a health check found the endpoint down)."""
        self.consecutive_failures = max(self.consecutive_failures, self.threshold)
        self.opened_at = self._clock()
        self._trial_in_flight = False

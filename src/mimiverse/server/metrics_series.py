"""The server's own figures over time: a sample every few seconds, the last hour kept.

Each sample reads the app's Prometheus registry (:mod:`mimiverse.observability`) and
keeps what happened since the one before: requests, errors, latency percentiles (from
the histograms' buckets, as Prometheus' ``histogram_quantile`` estimates them), cache
hits and misses, generated tokens. The metrics page draws its charts from these points.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from mimiverse.observability import Metrics

SAMPLE_EVERY_S = 5.0
KEEP = 720
"""Samples kept: an hour at one per 5 s."""

Labels = dict[str, str]


@dataclass(frozen=True)
class Buckets:
    """One histogram, summed over label sets: cumulative counts per upper bound (s)."""

    bounds: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()
    total_s: float = 0.0

    @property
    def count(self) -> int:
        """Observations."""
        return int(self.counts[-1]) if self.counts else 0

    def minus(self, earlier: Buckets) -> Buckets:
        """What was observed since ``earlier`` (same buckets; empty before means zero)."""
        if not earlier.counts:
            return self
        if earlier.bounds != self.bounds:
            return self
        counts = tuple(max(0.0, a - b) for a, b in zip(self.counts, earlier.counts, strict=True))
        return Buckets(self.bounds, counts, max(0.0, self.total_s - earlier.total_s))

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile in ms, interpolated within its bucket; None when empty."""
        if not self.count:
            return None
        rank = q * self.counts[-1]
        for i, (bound, count) in enumerate(zip(self.bounds, self.counts, strict=True)):
            if count < rank:
                continue
            lower = self.bounds[i - 1] if i else 0.0
            below = self.counts[i - 1] if i else 0.0
            if math.isinf(bound):
                return round(lower * 1000, 2)  # beyond the last bound: its value, as Prometheus
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (bound - lower) * share) * 1000, 2)
        return None

    def mean_ms(self) -> float | None:
        """The mean in ms; None when empty."""
        return round(self.total_s / self.count * 1000, 2) if self.count else None

    def describe(self) -> dict[str, Any]:
        """``{count, p50_ms, p95_ms, mean_ms}``."""
        return {"count": self.count, "p50_ms": self.quantile_ms(0.5),
                "p95_ms": self.quantile_ms(0.95), "mean_ms": self.mean_ms()}  # fmt: skip


def histogram(
    metric: MetricWrapperBase, *, by: str = "", where: Callable[[Labels], bool] | None = None
) -> dict[str, Buckets]:
    """A histogram's buckets summed over its label sets (grouped by the label ``by``)."""
    bounds: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            labels = dict(sample.labels)
            if where is not None and not where(labels):
                continue
            group = labels.get(by, "") if by else ""
            if sample.name.endswith("_bucket"):
                per_bound = bounds.setdefault(group, {})
                le = float(labels["le"])
                per_bound[le] = per_bound.get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                sums[group] = sums.get(group, 0.0) + sample.value
    found = {}
    for group, per_bound in bounds.items():
        ordered = sorted(per_bound.items())
        found[group] = Buckets(
            tuple(b for b, _ in ordered), tuple(c for _, c in ordered), sums.get(group, 0.0)
        )
    return found


def counter(metric: MetricWrapperBase, *by: str) -> dict[tuple[str, ...], float]:
    """A counter's totals per combination of the labels ``by``."""
    totals: dict[tuple[str, ...], float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = tuple(sample.labels.get(name, "") for name in by)
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def summed(values: Iterable[float]) -> int:
    """A count as an int."""
    return int(sum(values))


@dataclass(frozen=True)
class Snapshot:
    """The totals one sample is computed from."""

    http: Buckets = Buckets()
    http_errors: int = 0
    ttft: Buckets = Buckets()
    model: Buckets = Buckets()
    fim: Buckets = Buckets()
    cache_hits: int = 0
    cache_misses: int = 0
    tokens_out: int = 0

    @classmethod
    def take(cls, metrics: Metrics) -> Snapshot:
        """The registry's totals now."""
        statuses = counter(metrics.http_requests, "status")
        cache = counter(metrics.cache, "event")
        return cls(
            http=histogram(metrics.http_latency).get("", Buckets()),
            http_errors=summed(v for (s,), v in statuses.items() if s.startswith("5")),
            ttft=histogram(metrics.ttft).get("", Buckets()),
            model=histogram(metrics.latency).get("", Buckets()),
            fim=histogram(metrics.latency, by="task").get("fim", Buckets()),
            cache_hits=int(cache.get(("hit",), 0)),
            cache_misses=int(cache.get(("miss",), 0)),
            tokens_out=summed(counter(metrics.tokens_out).values()),
        )

    def since(self, before: Snapshot, t: float) -> dict[str, Any]:
        """One point of the series: what happened between ``before`` and this snapshot."""
        http, ttft = self.http.minus(before.http), self.ttft.minus(before.ttft)
        model, fim = self.model.minus(before.model), self.fim.minus(before.fim)
        hits = max(0, self.cache_hits - before.cache_hits)
        misses = max(0, self.cache_misses - before.cache_misses)
        return {
            "t": round(t, 3),
            "http_requests": http.count,
            "http_errors": max(0, self.http_errors - before.http_errors),
            "http_p50_ms": http.quantile_ms(0.5),
            "http_p95_ms": http.quantile_ms(0.95),
            "model_requests": model.count,
            "model_p50_ms": model.quantile_ms(0.5),
            "model_p95_ms": model.quantile_ms(0.95),
            "ttft_p50_ms": ttft.quantile_ms(0.5),
            "ttft_p95_ms": ttft.quantile_ms(0.95),
            "fim_requests": fim.count,
            "fim_p50_ms": fim.quantile_ms(0.5),
            "fim_p95_ms": fim.quantile_ms(0.95),
            "cache_hits": hits,
            "cache_misses": misses,
            "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "tokens_out": max(0, self.tokens_out - before.tokens_out),
        }


class Series:
    """The ring buffer of points; ``sample()`` adds one."""

    def __init__(
        self, metrics: Metrics, *, keep: int = KEEP, clock: Callable[[], float] = time.time
    ) -> None:
        self.metrics = metrics
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self._clock = clock
        self._last = Snapshot()

    def sample(self) -> dict[str, Any]:
        """Add the point for the time since the last sample (since start, the first time)."""
        now = Snapshot.take(self.metrics)
        point = now.since(self._last, self._clock())
        self._last = now
        self.points.append(point)
        return point


def series_of(app: Any) -> Series | None:
    """The app's series while it runs (None outside its lifespan)."""
    series: Series | None = getattr(app.state, "metrics_series", None)
    return series


@contextlib.asynccontextmanager
async def series_lifespan(app: Any, every_s: float = SAMPLE_EVERY_S) -> AsyncIterator[None]:
    """Sample the app's metrics every ``every_s`` seconds while it runs."""
    series = Series(app.state.gateway.metrics)
    series.sample()
    app.state.metrics_series = series

    async def run() -> None:
        while True:
            await asyncio.sleep(every_s)
            series.sample()

    task = asyncio.create_task(run(), name="metrics series")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.state.metrics_series = None

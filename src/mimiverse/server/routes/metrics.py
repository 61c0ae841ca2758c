"""GET /api/metrics/summary: the server's own figures for the IDE's metrics page.

Latency per stage (from the Prometheus histograms), inline-completion acceptance and
retention, the response cache, HTTP by route, and the sampled series of the last hour.
Any signed-in user may read it: it holds counts and timings of the whole server, by
route template and task, never a user, project, path or text.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from mimiverse.complete.feedback import FeedbackStore
from mimiverse.observability import Metrics
from mimiverse.server.deps import gateway_of
from mimiverse.server.metrics_series import (
    SAMPLE_EVERY_S,
    Buckets,
    counter,
    histogram,
    series_of,
    summed,
)

router = APIRouter(prefix="/api/metrics", tags=["metrics"])
FIM_ROUTES = ("/api/ai/fim", "/api/ai/fim/stream")
TOP_ROUTES = 20


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _stages(metrics: Metrics) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each stage over every task, and per task."""
    model_stages = {
        "queue_wait": metrics.queue_wait,
        "time_to_first_token": metrics.ttft,
        "decode": metrics.decode,
        "model_request": metrics.latency,
    }
    stages: dict[str, Any] = {}
    by_task: dict[str, dict[str, Any]] = {}
    for name, metric in model_stages.items():
        stages[name] = histogram(metric).get("", Buckets()).describe()
        for task, buckets in sorted(histogram(metric, by="task").items()):
            by_task.setdefault(task, {})[name] = buckets.describe()
    stages["http"] = histogram(metrics.http_latency).get("", Buckets()).describe()
    return stages, by_task


def _http(metrics: Metrics) -> dict[str, Any]:
    statuses = counter(metrics.http_requests, "method", "route", "status")
    latency = histogram(metrics.http_latency, by="route")
    routes: dict[tuple[str, str], dict[str, int]] = {}
    for (method, route, status), value in statuses.items():
        row = routes.setdefault((method, route), {"count": 0, "errors": 0, "client_errors": 0})
        row["count"] += int(value)
        row["errors" if status.startswith("5") else "client_errors"] += (
            int(value) if status[:1] in "45" else 0
        )
    top = sorted(routes.items(), key=lambda item: -item[1]["count"])[:TOP_ROUTES]
    overall = histogram(metrics.http_latency).get("", Buckets())
    return {
        "requests": summed(r["count"] for r in routes.values()),
        "errors": summed(r["errors"] for r in routes.values()),
        "client_errors": summed(r["client_errors"] for r in routes.values()),
        "p50_ms": overall.quantile_ms(0.5),
        "p95_ms": overall.quantile_ms(0.95),
        "routes": [
            {
                "method": method,
                "route": route,
                **row,
                "p95_ms": latency.get(route, Buckets()).quantile_ms(0.95),
            }
            for (method, route), row in top
        ],
    }


async def _fim(metrics: Metrics, feedback: FeedbackStore | None) -> dict[str, Any]:
    statuses = counter(metrics.http_requests, "route")
    outcomes = counter(metrics.requests, "task", "outcome")
    rows = await feedback.stats() if feedback is not None else []

    def total(key: str) -> int:
        return summed(r[key] or 0 for r in rows)

    shown, accepted = total("shown"), total("accepted")
    accepted_chars, retained = total("accepted_chars"), total("retained_chars")
    judged = total("judged_chars")  # accepted characters whose retention was reported
    latency = histogram(metrics.latency, by="task").get("fim", Buckets())
    return {
        "requests": summed(statuses.get((route,), 0) for route in FIM_ROUTES),
        "model_requests": int(outcomes.get(("fim", "ok"), 0)),
        "suggestions": total("suggestions"),
        "shown": shown,
        "accepted": accepted,
        "rejected": total("rejected"),
        "acceptance_rate": _rate(accepted, shown),
        "accepted_chars": accepted_chars,
        "retained_chars": retained,
        "retention_rate": _rate(retained, judged),
        "p50_ms": latency.quantile_ms(0.5),
        "p95_ms": latency.quantile_ms(0.95),
        "feedback": feedback is not None,
    }


async def _cache(request: Request) -> dict[str, Any]:
    stats = await gateway_of(request).cache.stats()
    return {
        "store": stats["store"],
        "hits": stats["hits"],
        "misses": stats["misses"],
        "hit_rate": _rate(stats["hits"], stats["hits"] + stats["misses"]),
        "keys": stats["keys"],
        "degraded": stats["degraded"],
        "tasks": {
            task: {
                "hits": t["hits"],
                "misses": t["misses"],
                "hit_rate": _rate(t["hits"], t["hits"] + t["misses"]),
            }
            for task, t in stats["tasks"].items()
        },
    }


@router.get("/summary")
async def summary(request: Request) -> dict[str, Any]:
    """Stages, FIM, cache and HTTP figures, and ``series`` (one point per ~5 s, last hour)."""
    metrics = gateway_of(request).metrics
    stages, by_task = _stages(metrics)
    series = series_of(request.app)
    return {
        "uptime_s": round(time.time() - request.app.state.started, 1),
        "stages": stages,
        "by_task": by_task,
        "fim": await _fim(metrics, request.app.state.completer.feedback),
        "cache": await _cache(request),
        "http": _http(metrics),
        "sample_every_s": SAMPLE_EVERY_S,
        "series": list(series.points) if series is not None else [],
    }

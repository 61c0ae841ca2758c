"""Health, model listing and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from mimiverse import __version__
from mimiverse.observability import CONTENT_TYPE
from mimiverse.server.deps import gateway_of

router = APIRouter()


_HEALTH = {"application/json": {"schema": {"type": "object"}}}


@router.get(
    "/api/health",
    responses={
        503: {"description": "Degraded: a task has no healthy endpoint.", "content": _HEALTH}
    },
)
async def health(request: Request, response: Response) -> dict[str, Any]:
    """Green when every task with a route has at least one healthy endpoint."""
    gw = gateway_of(request)
    tasks: dict[str, Any] = {}
    for task, endpoints in gw.router.routes.items():
        if not endpoints:
            continue
        up = [e.name for e in endpoints if e.available]
        tasks[task] = {"ok": bool(up), "endpoints": [e.name for e in endpoints], "healthy": up}
    ok = all(t["ok"] for t in tasks.values()) if tasks else False
    response.status_code = 200 if ok else 503
    return {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "uptime_s": round(time.time() - request.app.state.started, 1),
        "tasks": tasks,
        "endpoints": gw.models(),
        "cache": {"store": gw.cache.store_name, "degraded": gw.cache.degraded},
    }


@router.get("/api/models/available")
async def models_available(request: Request) -> dict[str, Any]:
    """Every endpoint's model, capabilities and state, and the default per task."""
    gw = gateway_of(request)
    defaults = {t: (eps[0].name if eps else None) for t, eps in gw.router.routes.items()}
    return {"models": gw.models(), "defaults": defaults}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(gateway_of(request).metrics.render(), media_type=CONTENT_TYPE)

"""Response cache statistics and clearing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mimiverse.server.deps import gateway_of
from mimiverse.server.schemas import Body
from mimiverse.settings import Task

router = APIRouter()


class ClearBody(Body):
    """Optional body of POST /api/cache/clear."""

    task: Task | None = None


@router.get("/api/cache/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Hits, misses, hitRate, keys — total and per task."""
    return await gateway_of(request).cache.stats()


@router.post("/api/cache/clear")
async def clear(request: Request, body: ClearBody | None = None) -> dict[str, Any]:
    """Drop cached responses (all, or one task's)."""
    task = body.task if body else None
    removed = await gateway_of(request).cache.clear(task)
    return {"cleared": removed, "task": task}

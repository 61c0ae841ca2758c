"""Agent sessions, their events (WebSocket and SSE) and changesets."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/agent", tags=["agent"])

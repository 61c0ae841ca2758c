"""Agent sessions, their events (SSE and WebSocket) and changesets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mimiverse.server.sse import event as sse_event

if TYPE_CHECKING:
    from mimiverse.agent.changes import Changeset
    from mimiverse.agent.service import AgentService
    from mimiverse.index.indexer import Indexer

router = APIRouter(prefix="/api/agent", tags=["agent"])
MAX_MESSAGE_CHARS = 32_000
KEEPALIVE_S = 15.0


class SessionBody(BaseModel):
    """POST /api/agent/sessions."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(default="", max_length=200)
    auto_approve: bool | None = Field(
        default=None, description="Apply changesets without asking (default: agent_auto_approve)."
    )


class MessageBody(BaseModel):
    """POST /api/agent/sessions/{id}/messages."""

    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class DecisionBody(BaseModel):
    """POST /api/agent/changesets/{id}/approve or /reject; no hunks = all of them."""

    model_config = ConfigDict(extra="forbid")
    hunks: list[str] | None = Field(default=None, description="Hunk ids; omit for every hunk.")


def agent_of(request: Request | Any) -> AgentService:
    """The app's agent service, built on first use (``request`` may be the app itself)."""
    state = getattr(request, "app", request).state
    service: AgentService | None = getattr(state, "agent", None)
    if service is None:
        from mimiverse.agent.service import AgentService

        settings = state.settings
        project = Path(settings.project_root).expanduser().resolve()

        def indexer_for(root: Path) -> Indexer | None:
            index = state.index
            if index is None or root.resolve() != project:
                return None
            indexer: Indexer = index.indexer
            return indexer

        service = AgentService(settings, state.gateway, indexer_for=indexer_for)
        state.agent = service
    return service


@contextlib.asynccontextmanager
async def agent_lifespan(app: Any) -> AsyncIterator[None]:
    """Connect configured MCP servers at start-up; cancel runs and disconnect at shutdown."""
    if app.state.settings.mcp_servers:
        await agent_of(app).connect()
    try:
        yield
    finally:
        service = getattr(app.state, "agent", None)
        if service is not None:
            app.state.agent = None
            await service.close()


def changeset_json(changeset: Changeset) -> dict[str, Any]:
    """A changeset with its diff, for the API."""
    data = changeset.as_dict()
    data["diff"] = changeset.diff()
    return data


@router.post("/sessions", status_code=201)
async def create_session(body: SessionBody, request: Request) -> dict[str, Any]:
    """Start a session on the server's project."""
    session = agent_of(request).create(title=body.title, auto_approve=body.auto_approve)
    return session.describe()


@router.get("/sessions")
async def list_sessions(request: Request) -> dict[str, Any]:
    """Sessions, newest first."""
    return {"sessions": agent_of(request).list_sessions()}


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    """One session's status and usage."""
    return agent_of(request).get(session_id).describe()


@router.post("/sessions/{session_id}/messages", status_code=202)
async def send_message(session_id: str, body: MessageBody, request: Request) -> dict[str, Any]:
    """Give the agent a task or a follow-up; follow its events to see it work."""
    service = agent_of(request)
    session = service.get(session_id)
    after = session.log.last_seq
    service.start(session_id, body.content)
    return {
        "session": session.describe(),
        "events_url": f"/api/agent/sessions/{session_id}/events?after={after}",
    }


@router.post("/sessions/{session_id}/cancel")
async def cancel(session_id: str, request: Request) -> dict[str, Any]:
    """Stop the running task."""
    cancelled = await agent_of(request).cancel(session_id)
    return {"cancelled": cancelled}


@router.get("/sessions/{session_id}/events")
async def events(
    session_id: str,
    request: Request,
    after: int = Query(default=0, ge=0),
    follow: bool = Query(default=True, description="Stream live events (SSE) until the run ends."),
) -> Any:
    """The session's events after ``after``: a JSON list, or an SSE stream when following."""
    session = agent_of(request).get(session_id)
    if not follow:
        return {"events": [e.as_dict() for e in session.log.events if e.seq > after]}

    async def stream() -> AsyncIterator[bytes]:
        source = session.log.follow(after).__aiter__()
        pending: asyncio.Task[Any] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(source.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield sse_event(item.as_dict(), item.kind)
        finally:
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/sessions/{session_id}/ws")
async def events_ws(websocket: WebSocket, session_id: str, after: int = 0) -> None:
    """The session's events as JSON messages: stored ones after ``after``, then live ones."""
    from mimiverse.errors import MimiError

    await websocket.accept()
    try:
        service = agent_of(websocket)
        session = service.get(session_id)
    except MimiError as exc:
        await websocket.send_json(exc.to_dict())
        await websocket.close(code=4404)
        return
    try:
        async for item in session.log.follow(after, until_finished=False):
            await websocket.send_json(item.as_dict())
    except WebSocketDisconnect:
        return


@router.get("/changesets")
async def list_changesets(
    request: Request, session_id: str | None = Query(default=None)
) -> dict[str, Any]:
    """Changesets, oldest first, without diffs."""
    items = agent_of(request).changesets(session_id)
    return {"changesets": [c.as_dict() for c in items]}


@router.get("/changesets/{changeset_id}")
async def get_changeset(changeset_id: str, request: Request) -> dict[str, Any]:
    """One changeset with its hunks and unified diff."""
    return changeset_json(agent_of(request).changeset(changeset_id))


@router.post("/changesets/{changeset_id}/approve")
async def approve(
    changeset_id: str, request: Request, body: DecisionBody | None = None
) -> dict[str, Any]:
    """Approve some hunks (or all); a waiting agent applies them once all are decided."""
    return _decide(request, changeset_id, body, approve=True)


@router.post("/changesets/{changeset_id}/reject")
async def reject(
    changeset_id: str, request: Request, body: DecisionBody | None = None
) -> dict[str, Any]:
    """Reject some hunks (or all)."""
    return _decide(request, changeset_id, body, approve=False)


def _decide(
    request: Request, changeset_id: str, body: DecisionBody | None, *, approve: bool
) -> dict[str, Any]:
    hunks = body.hunks if body else None
    service = agent_of(request)
    if hunks is None:
        changeset = service.decide(changeset_id, all=approve)
    elif approve:
        changeset = service.decide(changeset_id, approve=hunks)
    else:
        changeset = service.decide(changeset_id, reject=hunks)
    return changeset_json(changeset)


@router.post("/changesets/{changeset_id}/apply")
async def apply(changeset_id: str, request: Request) -> dict[str, Any]:
    """Write a decided changeset's approved hunks (409 when a file changed since)."""
    return changeset_json(agent_of(request).apply(changeset_id))


@router.post("/changesets/{changeset_id}/undo")
async def undo(changeset_id: str, request: Request) -> dict[str, Any]:
    """Restore the files an applied changeset changed (409 when edited since)."""
    return changeset_json(agent_of(request).undo(changeset_id))

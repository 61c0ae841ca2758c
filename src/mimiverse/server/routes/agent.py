"""Agent sessions, their events (SSE and WebSocket) and changesets.

A session works on one project the caller may use (``project`` when it is created; none:
their default one). Every route that names a session or a changeset answers "not found"
unless the caller may use that session's project (their own, or a team's they are in),
the same answer as for one that does not exist. In ``auth=local`` the one local user sees
every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mimiverse.agent.service import EVERYONE, Access
from mimiverse.server.auth import principal_of
from mimiverse.server.deps import indexer_lookup
from mimiverse.server.openapi import errors, streamed
from mimiverse.server.routes.projects import resolve_project, workspaces_of
from mimiverse.server.schemas import LIMITS
from mimiverse.server.sse import event as sse_event

if TYPE_CHECKING:
    from mimiverse.agent.changes import Changeset
    from mimiverse.agent.service import AgentService
    from mimiverse.agent.session import AgentSession

router = APIRouter(prefix="/api/agent", tags=["agent"])
MAX_MESSAGE_CHARS = LIMITS.message_chars
KEEPALIVE_S = 15.0
MAX_SEQ = 2**53
SessionId = Annotated[str, PathParam(min_length=1, max_length=64)]
ChangesetId = Annotated[str, PathParam(min_length=1, max_length=64)]


class SessionBody(BaseModel):
    """POST /api/agent/sessions."""

    model_config = ConfigDict(extra="forbid", strict=True)
    title: str = Field(default="", max_length=200)
    project: str | None = Field(
        default=None,
        max_length=200,
        description="A project reference ('alice/app', 'team:core/app'); default: yours.",
    )
    auto_approve: bool | None = Field(
        default=None, description="Apply changesets without asking (default: agent_auto_approve)."
    )


class MessageBody(BaseModel):
    """POST /api/agent/sessions/{id}/messages."""

    model_config = ConfigDict(extra="forbid", strict=True)
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class DecisionBody(BaseModel):
    """POST /api/agent/changesets/{id}/approve or /reject; no hunks = all of them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    hunks: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=10_000, description="Hunk ids; omit for every hunk."
    )


def agent_of(request: Request | Any) -> AgentService:
    """The app's agent service, built on first use (``request`` may be the app itself)."""
    app = getattr(request, "app", request)
    state = app.state
    service: AgentService | None = getattr(state, "agent", None)
    if service is None:
        from mimiverse.agent.service import AgentService

        service = AgentService(state.settings, state.gateway, indexer_for=indexer_lookup(state))
        if state.settings.auth == "accounts":
            service.on_applied = _audit_run_applies(app, service)
        state.agent = service
    return service


def _audit_run_applies(app: Any, service: AgentService) -> Callable[[str, Changeset], None]:
    """Audit what a run applies after approval (the API's own applies are audited below)."""

    def record(session_id: str, changeset: Changeset) -> None:
        from mimiverse.server.app import accounts_of

        row = service.store.session(session_id) or {}
        accounts_of(app).audit.record(
            "changeset_applied", actor=row.get("owner", ""), target=changeset.id,
            project=service.project_of(session_id), files=[f.path for f in changeset.files],
            by="agent run",
        )  # fmt: skip

    return record


def access_of(request: Request | WebSocket) -> Access:
    """The projects the caller may use: every one in auth=local, else their roots'."""
    if request.app.state.settings.auth == "local":
        return EVERYONE
    principal = principal_of(request)
    workspaces = workspaces_of(request)
    under = tuple(str(r.resolve()) + os.sep for r in workspaces.roots_of(principal).values())
    return Access(under=under, rule=lambda root: workspaces.may_use(principal, root))


def _private(request: Request | WebSocket, data: dict[str, Any]) -> dict[str, Any]:
    """Outside auth=local a session shows its project's reference, not the server's path."""
    if request.app.state.settings.auth != "local":
        data.pop("root", None)
    return data


def session_json(request: Request, session: AgentSession) -> dict[str, Any]:
    """A session for the API."""
    data = session.describe()
    data["project"] = agent_of(request).project_of(session.id)
    return _private(request, data)


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


@router.post("/sessions", status_code=201, responses=errors(404))
async def create_session(body: SessionBody, request: Request) -> dict[str, Any]:
    """Start a session on one of the caller's projects (default: their default project)."""
    project = resolve_project(request, body.project)
    session = agent_of(request).create(
        project.root, title=body.title, auto_approve=body.auto_approve,
        owner=principal_of(request).username, project=project.ref,
    )  # fmt: skip
    registry = getattr(request.app.state, "indexes", None)
    if registry is not None:
        registry.open_soon(project.root)  # the first sync starts while the user types
    return session_json(request, session)


@router.get("/sessions")
async def list_sessions(request: Request) -> dict[str, Any]:
    """The sessions the caller may see, newest first."""
    rows = agent_of(request).list_sessions(access_of(request))
    return {"sessions": [_private(request, row) for row in rows]}


@router.get("/sessions/{session_id}")
async def get_session(session_id: SessionId, request: Request) -> dict[str, Any]:
    """One session's status and usage."""
    return session_json(request, agent_of(request).get(session_id, access_of(request)))


@router.post("/sessions/{session_id}/messages", status_code=202, responses=errors(409))
async def send_message(
    session_id: SessionId, body: MessageBody, request: Request
) -> dict[str, Any]:
    """Give the agent a task or a follow-up; follow its events to see it work."""
    service = agent_of(request)
    access = access_of(request)
    session = service.get(session_id, access)
    after = session.log.last_seq
    service.start(session_id, body.content, access)
    return {
        "session": session_json(request, session),
        "events_url": f"/api/agent/sessions/{session_id}/events?after={after}",
    }


@router.post("/sessions/{session_id}/cancel")
async def cancel(session_id: SessionId, request: Request) -> dict[str, Any]:
    """Stop the running task."""
    cancelled = await agent_of(request).cancel(session_id, access_of(request))
    return {"cancelled": cancelled}


@router.get(
    "/sessions/{session_id}/events",
    responses=streamed("Events: JSON when follow=false, else an SSE stream.", json_too=True),
)
async def events(
    session_id: SessionId,
    request: Request,
    after: int = Query(default=0, ge=0, le=MAX_SEQ),
    follow: bool = Query(default=True, description="Stream live events (SSE) until the run ends."),
) -> Any:
    """The session's events after ``after``: a JSON list, or an SSE stream when following."""
    session = agent_of(request).get(session_id, access_of(request))
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
async def events_ws(
    websocket: WebSocket, session_id: SessionId, after: int = Query(default=0, ge=0, le=MAX_SEQ)
) -> None:
    """The session's events as JSON messages: stored ones after ``after``, then live ones.

    A session the caller may not see gets the not-found error and close code 4404.
    """
    from mimiverse.errors import MimiError

    await websocket.accept()
    try:
        service = agent_of(websocket)
        session = service.get(session_id, access_of(websocket))
    except MimiError as exc:
        await websocket.send_json(exc.to_dict())
        await websocket.close(code=4404)
        return
    try:
        async for item in session.log.follow(after, until_finished=False):
            await websocket.send_json(item.as_dict())
    except WebSocketDisconnect:
        return


@router.get("/changesets", responses=errors(404))
async def list_changesets(
    request: Request, session_id: str | None = Query(default=None, max_length=64)
) -> dict[str, Any]:
    """Changesets, oldest first, without diffs."""
    items = agent_of(request).changesets(session_id, access_of(request))
    return {"changesets": [c.as_dict() for c in items]}


@router.get("/changesets/{changeset_id}")
async def get_changeset(changeset_id: ChangesetId, request: Request) -> dict[str, Any]:
    """One changeset with its hunks and unified diff."""
    return changeset_json(agent_of(request).changeset(changeset_id, access_of(request)))


@router.post("/changesets/{changeset_id}/approve", responses=errors(409))
async def approve(
    changeset_id: ChangesetId, request: Request, body: DecisionBody | None = None
) -> dict[str, Any]:
    """Approve some hunks (or all); a waiting agent applies them once all are decided."""
    return _decide(request, changeset_id, body, approve=True)


@router.post("/changesets/{changeset_id}/reject", responses=errors(409))
async def reject(
    changeset_id: ChangesetId, request: Request, body: DecisionBody | None = None
) -> dict[str, Any]:
    """Reject some hunks (or all)."""
    return _decide(request, changeset_id, body, approve=False)


def _decide(
    request: Request, changeset_id: ChangesetId, body: DecisionBody | None, *, approve: bool
) -> dict[str, Any]:
    hunks = body.hunks if body else None
    service = agent_of(request)
    access = access_of(request)
    if hunks is None:
        changeset = service.decide(changeset_id, all=approve, access=access)
    elif approve:
        changeset = service.decide(changeset_id, approve=hunks, access=access)
    else:
        changeset = service.decide(changeset_id, reject=hunks, access=access)
    return changeset_json(changeset)


@router.post("/changesets/{changeset_id}/apply", responses=errors(409))
async def apply(changeset_id: ChangesetId, request: Request) -> dict[str, Any]:
    """Write a decided changeset's approved hunks (409 when a file changed since)."""
    changeset = agent_of(request).apply(changeset_id, access_of(request))
    _audit(request, "changeset_applied", changeset)
    return changeset_json(changeset)


@router.post("/changesets/{changeset_id}/undo", responses=errors(409))
async def undo(changeset_id: ChangesetId, request: Request) -> dict[str, Any]:
    """Restore the files an applied changeset changed (409 when edited since)."""
    changeset = agent_of(request).undo(changeset_id, access_of(request))
    _audit(request, "changeset_undone", changeset)
    return changeset_json(changeset)


def _audit(request: Request, action: str, changeset: Changeset) -> None:
    """Record who wrote files through the API (auth=accounts; local mode has no log)."""
    settings = request.app.state.settings
    if settings.auth != "accounts":
        return
    from mimiverse.server.app import accounts_of
    from mimiverse.server.clientinfo import client_ip

    accounts_of(request.app).audit.record(
        action, actor=principal_of(request).username, target=changeset.id,
        ip=client_ip(request.scope, settings),
        project=agent_of(request).project_of(changeset.session_id),
        files=[f.path for f in changeset.files],
    )  # fmt: skip

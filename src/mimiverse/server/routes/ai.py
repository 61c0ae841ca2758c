"""Mimiverse's own AI endpoints: inline completions for editors, and their feedback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from mimiverse.complete.engine import Completer, CompletionRequest, Suggestion
from mimiverse.complete.feedback import FeedbackStore
from mimiverse.errors import MimiError
from mimiverse.gateway.base import FimFile
from mimiverse.server.openapi import errors, streamed
from mimiverse.server.schemas import FimBody, FimFeedbackBody
from mimiverse.server.sse import event

router = APIRouter()
_SSE = streamed("SSE: text pieces, then the final suggestion (or `event: error`).")


def completer_of(request: Request) -> Completer:
    """The app's completer."""
    completer: Completer = request.app.state.completer
    return completer


def _feedback_of(request: Request) -> FeedbackStore:
    store = completer_of(request).feedback
    if store is None:
        err = MimiError(
            "completion feedback is off: the SQLite store in the data dir could not be "
            "opened (see the server log); fix MIMI_DATA_DIR's permissions and restart"
        )
        err.status, err.code = 503, "feedback_unavailable"
        raise err
    return store


def _request(body: FimBody) -> CompletionRequest:
    return CompletionRequest(
        prefix=body.prefix,
        suffix=body.suffix,
        path=body.path,
        language=body.language,
        session=body.session,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        stop=body.stop,
        files=[FimFile(f.path, f.text) for f in body.files],
        multiline=body.multiline,
        context=body.context,
    )


def _answer(s: Suggestion) -> dict[str, Any]:
    body = s.as_dict()
    body["completion"] = s.text
    body["latency"] = body["latency_ms"]
    return body


@router.post("/api/ai/fim", responses=errors(404, 422, 502, 503))
async def fim(body: FimBody, request: Request) -> dict[str, Any]:
    """The suggestion at the cursor: ``{id, completion, latency, cached, source, …}``."""
    return _answer(await completer_of(request).complete(_request(body)))


@router.post(
    "/api/ai/fim/stream",
    response_class=StreamingResponse,
    responses=_SSE | errors(404, 422, 502, 503),
)
async def fim_stream(body: FimBody, request: Request) -> StreamingResponse:
    """SSE: ``data: {"text": …}`` per piece, then ``data: {"done": true, completion, id, …}``
    (the final, post-processed text); a failure after the first piece ends with
    ``event: error``. Failures before it are plain HTTP errors."""
    pieces: asyncio.Queue[str] = asyncio.Queue()
    work = asyncio.create_task(completer_of(request).complete(_request(body), pieces.put_nowait))
    first = asyncio.create_task(pieces.get())
    await asyncio.wait({work, first}, return_when=asyncio.FIRST_COMPLETED)
    if work.done() and not first.done():
        first.cancel()
        work.result()  # raises here, so the client gets a real status

    async def frames() -> AsyncIterator[bytes]:
        try:
            if first.done() and not first.cancelled():
                yield event({"text": first.result()})
            else:
                first.cancel()
            while not work.done() or not pieces.empty():
                get = asyncio.ensure_future(pieces.get())
                await asyncio.wait({work, get}, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    yield event({"text": get.result()})
                else:
                    get.cancel()
            try:
                suggestion = work.result()
            except MimiError as exc:
                yield event(exc.to_dict(), "error")
                return
            yield event({"done": True, **_answer(suggestion)})
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_NO_BUFFER)


@router.post("/api/ai/fim/feedback", responses=errors(404, 503))
async def fim_feedback(body: FimFeedbackBody, request: Request) -> dict[str, Any]:
    """Record that a suggestion was shown, accepted, rejected, or how much of it was kept."""
    await _feedback_of(request).record(body.id, body.event, body.retained_chars)
    return {"ok": True, "id": body.id, "event": body.event}


@router.get("/api/ai/fim/stats", responses=errors(503))
async def fim_stats(request: Request) -> dict[str, Any]:
    """Suggestions, acceptance and retention per model and language."""
    return {"stats": await _feedback_of(request).stats()}


_NO_BUFFER = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

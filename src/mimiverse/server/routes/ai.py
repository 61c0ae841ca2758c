"""Mimiverse's own AI endpoints: fill-in-the-middle for editors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from mimiverse.errors import MimiError
from mimiverse.gateway.base import FimRequest
from mimiverse.gateway.service import StreamInfo
from mimiverse.server.deps import gateway_of
from mimiverse.server.schemas import FimBody
from mimiverse.server.sse import event, prime

router = APIRouter()


def _request(body: FimBody) -> FimRequest:
    return FimRequest(
        prefix=body.prefix,
        suffix=body.suffix,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        stop=body.stop,
        language=body.language,
        path=body.path,
    )


@router.post("/api/ai/fim")
async def fim(body: FimBody, request: Request) -> dict[str, Any]:
    """The completion between prefix and suffix: ``{completion, latency, cached}``."""
    result = await gateway_of(request).fim(_request(body), body.model)
    return {
        "completion": result.text,
        "latency": round(result.latency_ms, 2),
        "cached": result.cached,
        "model": result.model,
        "endpoint": result.endpoint,
        "finish_reason": result.finish_reason,
    }


@router.post("/api/ai/fim/stream")
async def fim_stream(body: FimBody, request: Request) -> StreamingResponse:
    """SSE: ``data: {"text": …}`` per piece, then ``data: {"done": true, completion, latency, cached}``;
    a failure after the first piece ends with ``event: error``."""
    began = time.perf_counter()
    info = StreamInfo()
    stream = await prime(gateway_of(request).fim_stream(_request(body), body.model, info))

    async def frames() -> AsyncIterator[bytes]:
        parts: list[str] = []
        try:
            async for delta in stream:
                if delta.text:
                    parts.append(delta.text)
                    yield event({"text": delta.text})
        except MimiError as exc:
            yield event(exc.to_dict(), "error")
            return
        yield event(
            {
                "done": True,
                "completion": "".join(parts),
                "latency": round((time.perf_counter() - began) * 1000, 2),
                "cached": info.cached,
            }
        )

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_NO_BUFFER)


_NO_BUFFER = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

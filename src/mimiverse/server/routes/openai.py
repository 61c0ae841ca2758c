"""The OpenAI-compatible API, so Continue, aider or any OpenAI client can use Mimiverse."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from mimiverse.errors import MimiError
from mimiverse.gateway.base import ChatRequest, FimRequest
from mimiverse.gateway.service import Completion, StreamInfo
from mimiverse.server.deps import gateway_of
from mimiverse.server.openapi import errors, streamed
from mimiverse.server.schemas import ChatCompletionBody, CompletionBody, EmbeddingsBody, stops
from mimiverse.server.sse import event, prime

router = APIRouter(prefix="/v1")
_NO_BUFFER = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_MODEL_ERRORS = errors(404, 502, 503)
_JSON_OR_SSE = streamed(
    "The answer; with `stream: true`, SSE chunks ending with `data: [DONE]`.", json_too=True
)


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    """Every served model, OpenAI style, with Mimiverse capabilities attached."""
    data = []
    for m in gateway_of(request).models():
        data.append(
            {
                "id": m["name"],
                "object": "model",
                "created": 0,
                "owned_by": m["kind"],
                "mimiverse": m,
            }
        )
    return {"object": "list", "data": data}


def _chat_request(body: ChatCompletionBody) -> ChatRequest:
    return ChatRequest(
        messages=[m.model_dump(exclude_none=True) for m in body.messages],
        max_tokens=body.max_completion_tokens or body.max_tokens or 512,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stops(body.stop),
        tools=body.tools,
        tool_choice=body.tool_choice,
        seed=body.seed,
        response_format=body.response_format,
    )


def _usage(result: Completion) -> dict[str, int]:
    u = result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


@router.post("/chat/completions", response_model=None, responses=_JSON_OR_SSE | _MODEL_ERRORS)
async def chat_completions(body: ChatCompletionBody, request: Request) -> Any:
    """Chat, streamed as SSE when ``stream`` is true."""
    gw = gateway_of(request)
    chat = _chat_request(body)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not body.stream:
        result = await gw.chat(chat, body.model, cache=body.cache)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": result.endpoint or (body.model or "default"),
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": _usage(result),
            "mimiverse": {"cached": result.cached, "latency_ms": round(result.latency_ms, 2)},
        }
    info = StreamInfo()
    stream = await prime(gw.chat_stream(chat, body.model, cache=body.cache, info=info))

    async def frames() -> AsyncIterator[bytes]:
        first = True
        try:
            async for delta in stream:
                piece: dict[str, Any] = {}
                if first:
                    piece["role"] = "assistant"
                    first = False
                if delta.text:
                    piece["content"] = delta.text
                if delta.tool_calls:
                    piece["tool_calls"] = delta.tool_calls
                if not piece and not delta.finish_reason:
                    continue
                model = info.attempt.endpoint.name if info.attempt.endpoint else "default"
                yield event(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [
                            {"index": 0, "delta": piece, "finish_reason": delta.finish_reason}
                        ],
                    }
                )
        except MimiError as exc:
            yield event(exc.to_dict())
            return
        yield event("[DONE]")

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_NO_BUFFER)


@router.post(
    "/completions", response_model=None, responses=_JSON_OR_SSE | _MODEL_ERRORS | errors(422)
)
async def completions(body: CompletionBody, request: Request) -> Any:
    """``prompt`` (+ ``suffix``) → the text in between (fill in the middle)."""
    gw = gateway_of(request)
    fim = FimRequest(
        prefix=body.text,
        suffix=body.suffix or "",
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        stop=stops(body.stop),
    )
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not body.stream:
        result = await gw.fim(fim, body.model)
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": result.endpoint or (body.model or "default"),
            "choices": [
                {
                    "index": 0,
                    "text": result.text,
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result),
            "mimiverse": {"cached": result.cached, "latency_ms": round(result.latency_ms, 2)},
        }
    info = StreamInfo()
    stream = await prime(gw.fim_stream(fim, body.model, info))

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for delta in stream:
                if not delta.text and not delta.finish_reason:
                    continue
                model = info.attempt.endpoint.name if info.attempt.endpoint else "default"
                yield event(
                    {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "text": delta.text,
                                "finish_reason": delta.finish_reason,
                                "logprobs": None,
                            }
                        ],
                    }
                )
        except MimiError as exc:
            yield event(exc.to_dict())
            return
        yield event("[DONE]")

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_NO_BUFFER)


@router.post("/embeddings", responses=_MODEL_ERRORS)
async def embeddings(body: EmbeddingsBody, request: Request) -> dict[str, Any]:
    """One vector per input text."""
    vectors, cached = await gateway_of(request).embed(body.texts, body.model)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": body.model or "default",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
        "mimiverse": {"cached": cached},
    }

"""OpenAIBackend protocol logic against httpx.MockTransport handlers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from mimiverse.errors import ConfigError, ContextLengthExceeded, UpstreamError
from mimiverse.gateway.backends.openai import OpenAIBackend
from mimiverse.gateway.base import (
    ChatRequest,
    Delta,
    EmbedRequest,
    FimRequest,
    RerankRequest,
)
from mimiverse.settings import EndpointSettings

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
URL = "http://upstream:8000/v1"


def sse(*payloads: Any, done: bool = True) -> bytes:
    """An SSE body of JSON payloads, ended by ``data: [DONE]``."""
    text = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


class Upstream:
    """Records requests and answers them with a handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.handler(request)
        if not isinstance(answer, httpx.Response):
            answer = await answer
        return answer

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


Make = Callable[..., tuple[OpenAIBackend, Upstream]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Build backends on a mock transport; all are closed at teardown."""
    made: list[OpenAIBackend] = []

    def build(handler: Handler, **fields: Any) -> tuple[OpenAIBackend, Upstream]:
        fields.setdefault("name", "up")
        fields.setdefault("model", "test-model")
        fields.setdefault("tasks", ["chat", "fim", "embed", "rerank"])
        fields.setdefault("context_length", 2048)
        settings = EndpointSettings(kind="openai", url=URL, **fields)
        upstream = Upstream(handler)
        backend = OpenAIBackend(settings, transport=httpx.MockTransport(upstream))
        made.append(backend)
        return backend, upstream

    yield build
    for backend in made:
        await backend.close()


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


def chat(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


# --- chat streaming -------------------------------------------------------------------------


async def test_chat_stream_parses_sse_and_merges_usage(make: Make) -> None:
    body = sse(
        chunk(None, role="assistant"),  # role-only first chunk: no delta
        chunk("Hel"),
        chunk("lo"),
        chunk(None, finish="length"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    )
    backend, upstream = make(lambda r: httpx.Response(200, content=body))
    deltas = await collect(backend.chat_stream(chat(max_tokens=2, stop=["\n"], seed=3)))
    assert [d.text for d in deltas] == ["Hel", "lo", ""]
    assert [d.finish_reason for d in deltas] == [None, None, "length"]
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (7, 2)
    sent = upstream.bodies("/v1/chat/completions")[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "test-model"
    assert sent["max_tokens"] == 2
    assert sent["stop"] == ["\n"]
    assert sent["seed"] == 3
    assert "tools" not in sent


async def test_sse_quirks_pings_events_split_data_no_space(make: Make) -> None:
    body = (
        b": ping\r\n\r\n"
        b"event: message\r\nid: 1\r\n"
        b'data:{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\r\n\r\n'
        b'data: {"choices":[{"delta":\n'
        b'data: {"content":"b"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    deltas = await collect(backend.chat_stream(chat()))
    assert "".join(d.text for d in deltas) == "ab"
    assert deltas[-1].finish_reason == "stop"


async def test_tool_calls_pass_through(make: Make) -> None:
    call = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]
    args = [{"index": 0, "function": {"arguments": '{"x": 1}'}}]
    body = sse(chunk(tool_calls=call), chunk(tool_calls=args), chunk(finish="tool_calls"))
    backend, upstream = make(lambda r: httpx.Response(200, content=body), tools=True)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    deltas = await collect(backend.chat_stream(chat(tools=tools, tool_choice="auto")))
    assert deltas[0].tool_calls == call
    assert deltas[1].tool_calls == args
    assert deltas[-1].finish_reason == "tool_calls"
    sent = upstream.bodies("/v1/chat/completions")[0]
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "auto"
    assert backend.capabilities.tools


async def test_done_without_finish_reason_ends_with_stop(make: Make) -> None:
    backend, _ = make(lambda r: httpx.Response(200, content=sse(chunk("x"))))
    deltas = await collect(backend.chat_stream(chat()))
    assert deltas[-1].finish_reason == "stop"


async def test_finish_without_done_is_fine(make: Make) -> None:
    body = sse(chunk("x"), chunk(finish="stop"), done=False)
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    deltas = await collect(backend.chat_stream(chat()))
    assert deltas[-1].finish_reason == "stop"


async def test_stream_cut_without_finish_or_done_raises(make: Make) -> None:
    backend, _ = make(lambda r: httpx.Response(200, content=sse(chunk("x"), done=False)))
    with pytest.raises(UpstreamError) as info:
        await collect(backend.chat_stream(chat()))
    assert info.value.retryable
    assert "finish_reason" in info.value.message


class Dropping(httpx.AsyncByteStream):
    """Sends some bytes, then the connection drops."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


async def test_mid_stream_drop_raises_retryable_after_deltas(make: Make) -> None:
    body = sse(chunk("one"), done=False)
    backend, _ = make(lambda r: httpx.Response(200, stream=Dropping(body)))
    got: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.chat_stream(chat()):
            got.append(delta)
    assert [d.text for d in got] == ["one"]
    assert info.value.retryable
    assert "dropped the stream" in info.value.message


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"error": {"message": "slot crashed", "type": "server_error"}}\n\n',
        b'error: {"code": 500, "message": "slot crashed", "type": "server_error"}\n\n',
        b'data: {"object": "error", "message": "slot crashed", "code": 500}\n\n',
    ],
)
async def test_error_event_mid_stream_raises(make: Make, event: bytes) -> None:
    backend, _ = make(lambda r: httpx.Response(200, content=sse(chunk("a"), done=False) + event))
    with pytest.raises(UpstreamError, match="slot crashed") as info:
        await collect(backend.chat_stream(chat()))
    assert info.value.retryable


async def test_early_close_by_consumer_releases_stream(make: Make) -> None:
    body = sse(chunk("a"), chunk("b"), chunk(finish="stop"))
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    stream = backend.chat_stream(chat())
    first = await anext(stream)
    assert first.text == "a"
    await stream.aclose()  # type: ignore[attr-defined]


# --- error mapping ---------------------------------------------------------------------------


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


@pytest.mark.parametrize("handler", [refuse, time_out])
async def test_connection_failures_are_retryable(make: Make, handler: Handler) -> None:
    backend, _ = make(handler)
    with pytest.raises(UpstreamError) as info:
        await collect(backend.chat_stream(chat()))
    assert info.value.retryable
    assert info.value.details["endpoint"] == "up"
    assert "could not be reached" in info.value.message
    with pytest.raises(UpstreamError) as info:
        await backend.embed(EmbedRequest(inputs=["a"]))
    assert info.value.retryable


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (503, True), (429, True), (400, False)]
)
async def test_http_status_mapping(make: Make, status: int, retryable: bool) -> None:
    body = {"error": {"message": f"upstream says {status}", "type": "x"}}
    backend, _ = make(lambda r: httpx.Response(status, json=body))
    with pytest.raises(UpstreamError) as info:
        await collect(backend.fim_stream(FimRequest(prefix="a")))
    assert info.value.retryable is retryable
    assert f"upstream says {status}" in info.value.message
    assert info.value.details["upstream_status"] == status


async def test_non_json_error_body_keeps_text(make: Make) -> None:
    backend, _ = make(lambda r: httpx.Response(404, text="no such route"))
    with pytest.raises(UpstreamError, match="no such route") as info:
        await backend.embed(EmbedRequest(inputs=["a"]))
    assert not info.value.retryable


async def test_unauthorized_names_api_key_env(make: Make) -> None:
    backend, _ = make(lambda r: httpx.Response(401, json={"error": {"message": "bad key"}}))
    with pytest.raises(UpstreamError, match="api_key_env") as info:
        await collect(backend.chat_stream(chat()))
    assert not info.value.retryable


async def test_llamacpp_context_error(make: Make) -> None:
    body = {
        "error": {
            "code": 400,
            "message": "request (1630 tokens) exceeds the available context size (1024 tokens), "
            "try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 1630,
            "n_ctx": 1024,
        }
    }
    backend, _ = make(lambda r: httpx.Response(400, json=body))
    with pytest.raises(ContextLengthExceeded) as info:
        await collect(backend.chat_stream(chat()))
    message = info.value.message
    assert "prompt is 1630 tokens, model 'test-model' takes 1024" in message
    assert "shorten the input or raise context_length" in message
    assert info.value.details["prompt_tokens"] == 1630


@pytest.mark.parametrize(
    ("message", "prompt"),
    [
        (
            "This model's maximum context length is 2048 tokens. However, you requested 2100 "
            "tokens (2000 in the messages, 100 in the completion). Please reduce the length.",
            2000,
        ),
        (
            "This model's maximum context length is 2048 tokens. However, your request has 4000 "
            "input tokens. Please reduce the length of the input messages.",
            4000,
        ),
    ],
)
async def test_vllm_context_error(make: Make, message: str, prompt: int) -> None:
    body = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    backend, _ = make(lambda r: httpx.Response(400, json=body))
    with pytest.raises(ContextLengthExceeded) as info:
        await collect(backend.fim_stream(FimRequest(prefix="x")))
    assert f"prompt is {prompt} tokens, model 'test-model' takes 2048" in info.value.message


async def test_total_timeout_is_retryable(make: Make) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    backend, _ = make(slow, timeout_s=0.05)
    with pytest.raises(UpstreamError, match="timeout_s") as info:
        await backend.embed(EmbedRequest(inputs=["a"]))
    assert info.value.retryable


# --- auth --------------------------------------------------------------------------------------


async def test_bearer_header_from_env(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_KEY", "sekrit")
    backend, upstream = make(
        lambda r: httpx.Response(200, content=sse(chunk("x"))), api_key_env="UP_KEY"
    )
    await collect(backend.chat_stream(chat()))
    assert upstream.requests[0].headers["authorization"] == "Bearer sekrit"


async def test_no_header_without_api_key_env(make: Make) -> None:
    backend, upstream = make(lambda r: httpx.Response(200, content=sse(chunk("x"))))
    await collect(backend.chat_stream(chat()))
    assert "authorization" not in upstream.requests[0].headers


async def test_empty_api_key_env_is_config_error(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UP_KEY", raising=False)
    backend, upstream = make(lambda r: httpx.Response(200), api_key_env="UP_KEY")
    with pytest.raises(ConfigError, match="UP_KEY"):
        await collect(backend.chat_stream(chat()))
    assert upstream.requests == []
    health = await backend.health()
    assert not health.ok
    assert "UP_KEY" in health.detail


# --- FIM ---------------------------------------------------------------------------------------


def fim_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=sse(text_chunk("return"), text_chunk(" 1", "stop")))


async def test_fim_native_suffix(make: Make) -> None:
    backend, upstream = make(fim_answer, model="my-coder")
    request = FimRequest(prefix="def f():\n    ", suffix="\nprint(f())", stop=["\n\n"])
    deltas = await collect(backend.fim_stream(request))
    assert "".join(d.text for d in deltas) == "return 1"
    assert deltas[-1].finish_reason == "stop"
    sent = upstream.bodies("/v1/completions")[0]
    assert sent["prompt"] == "def f():\n    "
    assert sent["suffix"] == "\nprint(f())"
    assert sent["stop"] == ["\n\n"]
    assert sent["stream"] is True
    assert backend.capabilities.fim_template == ""


async def test_fim_template_detected_from_model_id(make: Make) -> None:
    backend, upstream = make(fim_answer, model="Qwen/Qwen2.5-Coder-1.5B")
    await collect(backend.fim_stream(FimRequest(prefix="a{", suffix="}b", stop=["X"])))
    sent = upstream.bodies("/v1/completions")[0]
    assert sent["prompt"] == "<|fim_prefix|>a{<|fim_suffix|>}b<|fim_middle|>"
    assert "suffix" not in sent
    assert sent["stop"][0] == "X"
    assert "<|endoftext|>" in sent["stop"]
    assert backend.capabilities.fim_template == "qwen"


async def test_fim_template_configured(make: Make) -> None:
    backend, upstream = make(fim_answer, model="whatever", fim_template="starcoder")
    await collect(backend.fim_stream(FimRequest(prefix="p", suffix="s")))
    sent = upstream.bodies("/v1/completions")[0]
    assert sent["prompt"] == "<fim_prefix>p<fim_suffix>s<fim_middle>"
    assert "<fim_middle>" in sent["stop"]


async def test_fim_native_forced_over_detection(make: Make) -> None:
    backend, upstream = make(fim_answer, model="qwen2.5-coder-7b", fim_template="native")
    await collect(backend.fim_stream(FimRequest(prefix="p", suffix="s")))
    sent = upstream.bodies("/v1/completions")[0]
    assert (sent["prompt"], sent["suffix"]) == ("p", "s")
    assert "stop" not in sent


async def test_unknown_fim_template_is_config_error() -> None:
    settings = EndpointSettings(
        name="x", kind="openai", url=URL, model="m", fim_template="nope", tasks=["fim"]
    )
    with pytest.raises(ConfigError, match="nope"):
        OpenAIBackend(settings)


def test_missing_url_is_config_error() -> None:
    settings = EndpointSettings(name="x", kind="openai", model="m")
    with pytest.raises(ConfigError, match="url"):
        OpenAIBackend(settings)


# --- embed, rerank -------------------------------------------------------------------------


async def test_embed_orders_by_index(make: Make) -> None:
    data = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1, 0]}]}
    backend, upstream = make(lambda r: httpx.Response(200, json=data))
    vectors = await backend.embed(EmbedRequest(inputs=["a", "b"]))
    assert vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert upstream.bodies("/v1/embeddings") == [{"model": "test-model", "input": ["a", "b"]}]


async def test_embed_count_mismatch_raises(make: Make) -> None:
    data = {"data": [{"index": 0, "embedding": [1.0]}]}
    backend, _ = make(lambda r: httpx.Response(200, json=data))
    with pytest.raises(UpstreamError, match="1 embeddings for 2 inputs"):
        await backend.embed(EmbedRequest(inputs=["a", "b"]))


async def test_rerank_sorted_best_first(make: Make) -> None:
    results = {
        "results": [{"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 2}]
    }
    backend, upstream = make(lambda r: httpx.Response(200, json=results))
    ranked = await backend.rerank(RerankRequest(query="q", documents=["a", "b"], top_n=2))
    assert [(r.index, r.score) for r in ranked] == [(1, 2.0), (0, 0.1)]
    assert upstream.bodies("/v1/rerank") == [
        {"model": "test-model", "query": "q", "documents": ["a", "b"], "top_n": 2}
    ]


async def test_rerank_falls_back_to_server_root(make: Make) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rerank":
            return httpx.Response(200, json=[{"index": 0, "score": 0.5}])
        return httpx.Response(404, json={"error": {"message": "File Not Found"}})

    backend, upstream = make(handler)
    ranked = await backend.rerank(RerankRequest(query="q", documents=["a"]))
    assert [(r.index, r.score) for r in ranked] == [(0, 0.5)]
    assert [r.url.path for r in upstream.requests] == ["/v1/rerank", "/rerank"]


# --- health and context length -----------------------------------------------------------


async def test_health_ok_via_models(make: Make) -> None:
    backend, upstream = make(lambda r: httpx.Response(200, json={"data": []}))
    health = await backend.health()
    assert health.ok
    assert health.latency_ms >= 0
    assert upstream.requests[0].url.path == "/v1/models"


async def test_health_falls_back_to_root_health(make: Make) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(404)

    backend, upstream = make(handler)
    assert (await backend.health()).ok
    assert [r.url.path for r in upstream.requests] == ["/v1/models", "/health"]


async def test_health_not_ok(make: Make) -> None:
    backend, _ = make(refuse)
    health = await backend.health()
    assert not health.ok
    assert "could not be reached" in health.detail
    backend, _ = make(lambda r: httpx.Response(503, json={"error": {"message": "Loading model"}}))
    health = await backend.health()
    assert not health.ok
    assert "Loading model" in health.detail


def models_then_chat(models: Any, props: Any = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=models)
        if request.url.path == "/props":
            return httpx.Response(200, json=props) if props else httpx.Response(404)
        return httpx.Response(200, content=sse(chunk("x", finish="stop")))

    return handler


@pytest.mark.parametrize(
    ("models", "props", "expected"),
    [
        ({"data": [{"id": "test-model", "max_model_len": 8192}]}, None, 8192),
        ({"data": [{"id": "other"}, {"id": "test-model", "max_model_len": 999}]}, None, 999),
        ({"data": [{"id": "m", "meta": {"n_ctx": 1024, "n_ctx_train": 32768}}]}, None, 1024),
        (
            {"data": [{"id": "m", "meta": {"n_ctx_train": 32768}}]},
            {"default_generation_settings": {"n_ctx": 3072}},
            3072,
        ),
        ({"data": [{"id": "m", "meta": {"n_ctx_train": 32768}}]}, None, 32768),
        ({"data": [{"id": "m"}]}, None, 4096),
    ],
)
async def test_context_length_learned_once(
    make: Make, models: Any, props: Any, expected: int
) -> None:
    backend, upstream = make(models_then_chat(models, props), context_length=0)
    assert backend.capabilities.context_length == 4096
    await collect(backend.chat_stream(chat()))
    await collect(backend.chat_stream(chat()))
    assert backend.capabilities.context_length == expected
    paths = [r.url.path for r in upstream.requests]
    assert paths.count("/v1/models") == 1
    assert paths.count("/v1/chat/completions") == 2


async def test_context_probe_retried_after_connection_failure(make: Make) -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            calls["n"] += 1
            if calls["n"] == 1:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 512}]})
        return httpx.Response(200, content=sse(chunk("x", finish="stop")))

    backend, _ = make(handler, context_length=0)
    await collect(backend.chat_stream(chat()))
    assert backend.capabilities.context_length == 4096
    await collect(backend.chat_stream(chat()))
    assert backend.capabilities.context_length == 512


async def test_health_teaches_context_length(make: Make) -> None:
    backend, upstream = make(
        models_then_chat({"data": [{"id": "test-model", "max_model_len": 640}]}), context_length=0
    )
    assert (await backend.health()).ok
    assert backend.capabilities.context_length == 640
    await collect(backend.chat_stream(chat()))
    assert [r.url.path for r in upstream.requests].count("/v1/models") == 1


async def test_configured_context_is_not_probed(make: Make) -> None:
    backend, upstream = make(models_then_chat({}), context_length=1500)
    await collect(backend.chat_stream(chat()))
    assert backend.capabilities.context_length == 1500
    assert [r.url.path for r in upstream.requests] == ["/v1/chat/completions"]


# --- capabilities and lifecycle ----------------------------------------------------------


async def test_capabilities_from_settings(make: Make) -> None:
    backend, _ = make(fim_answer, tasks=["fim", "embed"], tools=False, context_length=3000)
    caps = backend.capabilities
    assert (caps.chat, caps.fim, caps.embed, caps.rerank, caps.tools) == (
        False,
        True,
        True,
        False,
        False,
    )
    assert caps.context_length == 3000
    assert backend.kind == "openai"
    assert backend.describe()["kind"] == "openai"


async def test_close_closes_client(make: Make) -> None:
    backend, _ = make(fim_answer)
    await backend.close()
    assert backend._client.is_closed

"""OllamaBackend protocol logic against httpx.MockTransport handlers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mimiverse.errors import ConfigError, ContextLengthExceeded, UpstreamError
from mimiverse.gateway.backends.ollama import OllamaBackend, estimate_tokens
from mimiverse.gateway.base import ChatRequest, Delta, EmbedRequest, FimRequest, RerankRequest
from mimiverse.settings import EndpointSettings

Handler = Callable[[httpx.Request], httpx.Response]
URL = "http://ollama:11434"
SHOW = {
    "parameters": 'stop                           "<|endoftext|>"',
    "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
}


def ndjson(*items: dict[str, Any]) -> bytes:
    return "".join(json.dumps(i) + "\n" for i in items).encode()


GENERATE = ndjson(
    {"response": "return", "done": False},
    {"response": " 1", "done": False},
    {"response": "", "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 2},
)


class Upstream:
    """Answers /api/show with ``show`` and everything else with ``handler``."""

    def __init__(self, handler: Handler, show: Any) -> None:
        self.handler = handler
        self.show = show
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/show" and self.show is not None:
            return httpx.Response(200, json=self.show)
        return self.handler(request)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


Make = Callable[..., tuple[OllamaBackend, Upstream]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[OllamaBackend] = []

    def build(handler: Handler, show: Any = SHOW, **fields: Any) -> tuple[OllamaBackend, Upstream]:
        fields.setdefault("name", "ol")
        fields.setdefault("model", "qwen2.5-coder:1.5b")
        fields.setdefault("tasks", ["chat", "fim", "embed"])
        fields.setdefault("url", URL)
        settings = EndpointSettings(kind="ollama", **fields)
        upstream = Upstream(handler, show)
        backend = OllamaBackend(settings, transport=httpx.MockTransport(upstream))
        made.append(backend)
        return backend, upstream

    yield build
    for backend in made:
        await backend.close()


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


def generate(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=GENERATE)


# --- FIM -----------------------------------------------------------------------------------


async def test_fim_native_suffix(make: Make) -> None:
    backend, upstream = make(generate)
    request = FimRequest(prefix="def f():\n    ", suffix="\n", max_tokens=16, stop=["\n\n"])
    deltas = await collect(backend.fim_stream(request))
    assert "".join(d.text for d in deltas) == "return 1"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (9, 2)
    sent = upstream.bodies("/api/generate")[0]
    assert sent["prompt"] == "def f():\n    "
    assert sent["suffix"] == "\n"
    assert sent["raw"] is False
    assert sent["stream"] is True
    assert sent["options"] == {"num_predict": 16, "temperature": 0.0, "stop": ["\n\n"]}
    assert backend.capabilities.fim_template == ""  # Ollama applies the model's own template


async def test_fim_configured_template_goes_raw(make: Make) -> None:
    backend, upstream = make(generate, fim_template="qwen", context_length=8192)
    await collect(backend.fim_stream(FimRequest(prefix="p", suffix="s")))
    sent = upstream.bodies("/api/generate")[0]
    assert sent["raw"] is True
    assert sent["prompt"] == "<|fim_prefix|>p<|fim_suffix|>s<|fim_middle|>"
    assert "suffix" not in sent
    assert "<|endoftext|>" in sent["options"]["stop"]
    assert sent["options"]["num_ctx"] == 8192
    assert backend.capabilities.fim_template == "qwen"


async def test_fim_length_done_reason(make: Make) -> None:
    body = ndjson({"response": "x", "done": True, "done_reason": "length"})
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    deltas = await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert deltas == [Delta(text="x", finish_reason="length", usage=deltas[-1].usage)]


async def test_stream_without_done_raises(make: Make) -> None:
    body = ndjson({"response": "x", "done": False})
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    with pytest.raises(UpstreamError, match="before done") as info:
        await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert info.value.retryable


async def test_error_line_mid_stream_raises(make: Make) -> None:
    body = ndjson(
        {"response": "x", "done": False}, {"error": "llama runner process has terminated"}
    )
    backend, _ = make(lambda r: httpx.Response(200, content=body))
    with pytest.raises(UpstreamError, match="runner process") as info:
        await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert info.value.retryable


class Dropping(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield ndjson({"response": "x", "done": False})
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_mid_stream_drop_is_retryable(make: Make) -> None:
    backend, _ = make(lambda r: httpx.Response(200, stream=Dropping()))
    got: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.fim_stream(FimRequest(prefix="p")):
            got.append(delta.text)
    assert got == ["x"]
    assert info.value.retryable


# --- context --------------------------------------------------------------------------------


async def test_context_learned_from_show(make: Make) -> None:
    show = {**SHOW, "parameters": "num_ctx 4096\nstop <x>"}
    backend, upstream = make(generate, show=show)
    await collect(backend.fim_stream(FimRequest(prefix="p")))
    await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert backend.trained_context == 32768
    assert backend.capabilities.context_length == 4096
    assert upstream.bodies("/api/show") == [{"model": "qwen2.5-coder:1.5b"}]
    assert "num_ctx" not in upstream.bodies("/api/generate")[0]["options"]


async def test_default_num_ctx_warns_when_prompt_would_be_truncated(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    backend, _ = make(generate)
    prefix = "x" * 7000  # about 2000 tokens: over Ollama's default num_ctx of 2048 with output
    with caplog.at_level(logging.WARNING, logger="mimiverse.gateway.ollama"):
        await collect(backend.fim_stream(FimRequest(prefix=prefix, max_tokens=128)))
    assert backend.capabilities.context_length == 2048
    text = caplog.text
    assert "silently truncates" in text
    assert "set context_length on the endpoint" in text


async def test_configured_context_is_sent_and_quiet(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    backend, upstream = make(generate, context_length=16384)
    with caplog.at_level(logging.WARNING, logger="mimiverse.gateway.ollama"):
        await collect(backend.fim_stream(FimRequest(prefix="x" * 7000)))
    assert "truncates" not in caplog.text
    assert upstream.bodies("/api/generate")[0]["options"]["num_ctx"] == 16384
    assert backend.capabilities.context_length == 16384


async def test_over_trained_context_raises(make: Make) -> None:
    backend, upstream = make(generate)
    prefix = "x" * int(3.5 * 33000)
    with pytest.raises(ContextLengthExceeded) as info:
        await collect(backend.fim_stream(FimRequest(prefix=prefix)))
    assert "model 'qwen2.5-coder:1.5b' takes 32768" in info.value.message
    assert upstream.bodies("/api/generate") == []


def test_estimate_tokens() -> None:
    assert estimate_tokens(0) == 0
    assert estimate_tokens(7) == 2
    assert estimate_tokens(8) == 3


# --- errors ---------------------------------------------------------------------------------


async def test_model_not_found_says_pull(make: Make) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": 'model "qwen2.5-coder:1.5b" not found'})

    backend, _ = make(handler, show=None)
    with pytest.raises(UpstreamError) as info:
        await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert not info.value.retryable
    assert "run `ollama pull qwen2.5-coder:1.5b`" in info.value.message


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False)])
async def test_status_mapping(make: Make, status: int, retryable: bool) -> None:
    backend, _ = make(lambda r: httpx.Response(status, json={"error": f"said {status}"}))
    with pytest.raises(UpstreamError, match=f"said {status}") as info:
        await collect(backend.chat_stream(ChatRequest(messages=[{"role": "user", "content": "x"}])))
    assert info.value.retryable is retryable


async def test_connection_refused_is_retryable(make: Make) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    backend, _ = make(refuse, show=None)
    with pytest.raises(UpstreamError) as info:
        await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert info.value.retryable
    health = await backend.health()
    assert not health.ok


async def test_context_error_from_upstream(make: Make) -> None:
    body = {"error": "the input length exceeds the context length"}
    backend, _ = make(lambda r: httpx.Response(400, json=body))
    with pytest.raises(ContextLengthExceeded, match="shorten the input"):
        await backend.embed(EmbedRequest(inputs=["a"]))


async def test_bearer_header(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OL_KEY", "k1")
    backend, upstream = make(generate, api_key_env="OL_KEY")
    await collect(backend.fim_stream(FimRequest(prefix="p")))
    assert all(r.headers["authorization"] == "Bearer k1" for r in upstream.requests)
    monkeypatch.setenv("OL_KEY", "")
    with pytest.raises(ConfigError, match="OL_KEY"):
        await collect(backend.fim_stream(FimRequest(prefix="p")))


# --- chat -------------------------------------------------------------------------------------


async def test_chat_stream_and_message_conversion(make: Make) -> None:
    body = ndjson(
        {"message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"message": {"role": "assistant", "content": "!"}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    )
    backend, upstream = make(lambda r: httpx.Response(200, content=body))
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    request = ChatRequest(
        messages=messages, max_tokens=5, seed=1, response_format={"type": "json_object"}
    )
    deltas = await collect(backend.chat_stream(request))
    assert [d.text for d in deltas] == ["Hi", "!", ""]
    assert deltas[-1].finish_reason == "stop"
    sent = upstream.bodies("/api/chat")[0]
    assert sent["messages"] == [
        {"role": "user", "content": "ab"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "f"},
    ]
    assert sent["options"]["num_predict"] == 5
    assert sent["options"]["seed"] == 1
    assert sent["format"] == "json"
    assert sent["stream"] is True


async def test_chat_tool_calls_become_openai_deltas(make: Make) -> None:
    call = {"function": {"name": "get", "arguments": {"city": "Oslo"}}}
    body = ndjson(
        {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    )
    backend, upstream = make(lambda r: httpx.Response(200, content=body), tools=True)
    tools = [{"type": "function", "function": {"name": "get", "parameters": {}}}]
    request = ChatRequest(messages=[{"role": "user", "content": "w?"}], tools=tools)
    deltas = await collect(backend.chat_stream(request))
    calls = deltas[0].tool_calls
    assert calls is not None
    assert calls[0]["index"] == 0
    assert calls[0]["type"] == "function"
    assert calls[0]["function"] == {"name": "get", "arguments": '{"city": "Oslo"}'}
    assert calls[0]["id"].startswith("call_")
    assert deltas[-1].finish_reason == "tool_calls"
    assert upstream.bodies("/api/chat")[0]["tools"] == tools


# --- embed, health, capabilities -----------------------------------------------------------


async def test_embed(make: Make) -> None:
    backend, upstream = make(lambda r: httpx.Response(200, json={"embeddings": [[1, 2], [3, 4]]}))
    assert await backend.embed(EmbedRequest(inputs=["a", "b"])) == [[1.0, 2.0], [3.0, 4.0]]
    assert upstream.bodies("/api/embed") == [{"model": "qwen2.5-coder:1.5b", "input": ["a", "b"]}]


async def test_health_version_then_tags(make: Make) -> None:
    backend, upstream = make(lambda r: httpx.Response(200, json={"version": "0.9.0"}))
    health = await backend.health()
    assert health.ok
    assert [r.url.path for r in upstream.requests] == ["/api/version"]

    def old(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            return httpx.Response(200, json={"models": []})
        return httpx.Response(404)

    backend, upstream = make(old)
    assert (await backend.health()).ok
    assert [r.url.path for r in upstream.requests] == ["/api/version", "/api/tags"]


async def test_capabilities_and_url_normalisation(make: Make) -> None:
    backend, _ = make(generate, url=URL + "/v1/", tasks=["fim", "rerank"])
    assert backend.base_url == URL
    caps = backend.capabilities
    assert (caps.chat, caps.fim, caps.embed, caps.rerank) == (False, True, False, False)
    assert backend.kind == "ollama"
    with pytest.raises(UpstreamError, match="rerank"):
        await backend.rerank(RerankRequest(query="q", documents=["d"]))
    default = OllamaBackend(EndpointSettings(name="d", kind="ollama", model="m"))
    assert default.base_url == "http://127.0.0.1:11434"
    await default.close()

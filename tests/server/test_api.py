"""The HTTP API in-process over ASGI, on scripted backends: shapes, errors, SSE, metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mimiverse.errors import ContextLengthExceeded, UpstreamError
from mimiverse.server.app import create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with


@pytest.fixture
async def fake() -> FakeBackend:
    return FakeBackend("fake-a", model="fake-model")


@pytest.fixture
async def client(fake: FakeBackend, make_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings: Settings = make_settings(max_body_bytes=50_000)
    gw = gateway_with(fake, FakeBackend("fake-b", model="fake-model-b"))
    app = create_app(settings, gw)
    await gw.start(preload=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c
    await gw.close()


def sse(text: str) -> list[Any]:
    events = []
    for block in text.strip().split("\n\n"):
        data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
        if data:
            events.append("[DONE]" if data[0] == "[DONE]" else json.loads(data[0]))
    return events


async def test_fim_returns_completion_latency_cached(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    fake.enqueue("return ", "a + b")
    body = {"prefix": "def add(a, b):\n    ", "suffix": "\n", "language": "python"}
    first = (await client.post("/api/ai/fim", json=body)).json()
    assert first["completion"] == "return a + b"
    assert first["cached"] is False and first["latency"] >= 0
    second = (await client.post("/api/ai/fim", json=body)).json()
    assert second["completion"] == "return a + b" and second["cached"] is True


async def test_fim_stream_sse(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    fake.enqueue("x", "y")
    resp = await client.post("/api/ai/fim/stream", json={"prefix": "a = ", "suffix": "\nb"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse(resp.text)
    assert events[:2] == [{"text": "x"}, {"text": "y"}]
    assert events[-1]["done"] is True and events[-1]["completion"] == "xy"


async def test_stream_failure_after_tokens_ends_with_error_event(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    fake.enqueue("one", "two", fail_after=1)
    resp = await client.post("/api/ai/fim/stream", json={"prefix": "z = "})
    assert resp.status_code == 200
    assert "event: error" in resp.text and "stream_interrupted" in resp.text
    assert '"done": true' not in resp.text


async def test_chat_completions_stream_openai_shape(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    fake.enqueue("Hel", "lo")
    body = {"model": "fake-a", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = sse((await client.post("/v1/chat/completions", json=body)).text)
    assert events[-1] == "[DONE]"
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Hello"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_chat_completions_interrupted_stream_has_error_and_no_done(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    fake.enqueue("a", "b", fail_after=1)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = sse((await client.post("/v1/chat/completions", json=body)).text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "stream_interrupted"


async def test_chat_completions_non_stream(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    fake.enqueue("pong")
    body = {"messages": [{"role": "user", "content": "ping"}]}
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "pong"}
    assert data["usage"]["completion_tokens"] == 1


async def test_v1_completions_prompt_suffix_is_fim(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    fake.enqueue("middle")
    data = (await client.post("/v1/completions", json={"prompt": "pre", "suffix": "post"})).json()
    assert data["choices"][0]["text"] == "middle"
    request = fake.calls[-1]
    assert (request.prefix, request.suffix) == ("pre", "post")  # type: ignore[attr-defined]


async def test_v1_embeddings(client: httpx.AsyncClient) -> None:
    data = (await client.post("/v1/embeddings", json={"input": ["a", "bb"]})).json()
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert len(data["data"][0]["embedding"]) == 4


async def test_v1_models_and_models_available(client: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids == ["fake-a", "fake-b"]
    available = (await client.get("/api/models/available")).json()
    assert available["defaults"]["fim"] == "fake-a"
    assert available["models"][0]["fim"] is True


async def test_health_green_then_degraded(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    resp = await client.get("/api/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


# --- bad input: 4xx with a message that names the fix ------------------------------------


async def test_malformed_json_is_400_naming_the_fix(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/ai/fim", content=b'{"prefix": "x",', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert "not valid JSON" in message and "Content-Type: application/json" in message


async def test_wrong_field_type_is_400_naming_the_field(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/ai/fim", json={"prefix": "x", "max_tokens": "many"})
    assert resp.status_code == 400
    assert "max_tokens" in resp.json()["error"]["message"]


async def test_empty_prefix_and_suffix_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/ai/fim", json={"prefix": "", "suffix": ""})
    assert resp.status_code == 422
    assert "text before and after the cursor" in resp.json()["error"]["message"]


async def test_unknown_model_is_404_listing_known(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/ai/fim", json={"prefix": "x", "model": "gpt-9"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert "unknown model 'gpt-9'" in error["message"]
    assert error["known"] == ["fake-a", "fake-model", "fake-b", "fake-model-b"]


async def test_prompt_over_context_is_400(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    fake.enqueue(
        fail_before=ContextLengthExceeded(
            "prompt is 9000 tokens but model 'fake-model' takes 4096: shorten the input"
        )
    )
    resp = await client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "long"}], "stream": True},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "context_length_exceeded"
    assert "shorten the input" in resp.json()["error"]["message"]


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/ai/fim", json={"prefix": "x" * 60_000})
    assert resp.status_code == 413
    assert "MIMI_MAX_BODY_BYTES" in resp.json()["error"]["message"]


async def test_all_upstreams_down_is_503(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    gw = client._transport.app.state.gateway  # type: ignore[attr-defined]
    b = gw.router.endpoints["fake-b"].backend
    fake.enqueue(fail_before=UpstreamError("refused"))
    b.enqueue(fail_before=UpstreamError("refused"))
    resp = await client.post("/api/ai/fim", json={"prefix": "y", "temperature": 0.1})
    assert resp.status_code == 503
    assert "mimiverse doctor" in resp.json()["error"]["message"]


# --- cache endpoints and metrics ----------------------------------------------------------


async def test_cache_stats_and_clear(client: httpx.AsyncClient) -> None:
    body = {"prefix": "cache me"}
    await client.post("/api/ai/fim", json=body)
    await client.post("/api/ai/fim", json=body)
    stats = (await client.get("/api/cache/stats")).json()
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["hitRate"] == 0.5
    assert stats["keys"] == 1 and stats["tasks"]["fim"]["hits"] == 1
    cleared = (await client.post("/api/cache/clear", json={"task": "fim"})).json()
    assert cleared["cleared"] == 1
    assert (await client.get("/api/cache/stats")).json()["keys"] == 0


async def test_cache_clear_rejects_unknown_task(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/cache/clear", json={"task": "pizza"})
    assert resp.status_code == 400
    assert "task" in resp.json()["error"]["message"]


async def test_metrics_has_stages_per_backend_endpoint_task(client: httpx.AsyncClient) -> None:
    await client.post("/api/ai/fim", json={"prefix": "m"})
    await client.post("/api/ai/fim", json={"prefix": "m"})
    text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("backend", "fake"), ("endpoint", "fake-a"), ("task", "fim"))
    for name in (
        "mimi_model_queue_wait_seconds_count",
        "mimi_model_time_to_first_token_seconds_count",
        "mimi_model_decode_seconds_count",
        "mimi_model_request_seconds_count",
        "mimi_model_tokens_out_total",
        "mimi_model_tokens_in_total",
    ):
        assert samples[(name, labels)] >= 1, name
    assert samples[("mimi_model_requests_total", (*labels[:2], ("outcome", "ok"), labels[2]))] == 1
    assert samples[("mimi_cache_events_total", (("event", "hit"), ("task", "fim")))] == 1
    assert samples[("mimi_cache_events_total", (("event", "miss"), ("task", "fim")))] == 1
    http = (("method", "POST"), ("route", "/api/ai/fim"), ("status", "200"))
    assert samples[("mimi_http_requests_total", http)] == 2

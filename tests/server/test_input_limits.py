"""Input limits: every oversized field gets a 400 that says the size, the limit and how to
fit; bodies over max_body_bytes get a 413, with or without Content-Length; the OpenAPI
document shows the limits and the errors each operation answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mimiverse.server.app import create_app
from mimiverse.server.schemas import LIMITS
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

BODY_LIMIT = 1_000_000


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        make_settings(max_body_bytes=BODY_LIMIT, embedded=False), gateway_with(FakeBackend())
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **fields}


TOO_BIG = [
    pytest.param(
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": "x"}] * 63),
        "messages: 63 turns; the limit is 50: summarise or drop old turns",
        id="turns",
    ),
    pytest.param(
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": "x" * 10_001}]),
        "messages.0.content: 10001 characters; the limit is 10000: split the text",
        id="message-chars",
    ),
    pytest.param(
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x" * 6000}] * 2}]),
        "messages.0.content: 12000 characters; the limit is 10000",
        id="message-parts-chars",
    ),
    pytest.param(
        "/v1/chat/completions",
        chat(stop=["s"] * 17),
        "stop: 17 stop sequences; the limit is 16",
        id="chat-stops",
    ),
    pytest.param(
        "/v1/chat/completions",
        chat(max_tokens=40_000),
        "max_tokens: Input should be less",
        id="chat-max-tokens",
    ),
    pytest.param("/v1/chat/completions", chat(n=2), "n: Input should be less", id="chat-n"),
    pytest.param(
        "/v1/completions",
        {"prompt": ["a", "b"]},
        "prompt: 2 prompts (batches are not supported); the limit is 1",
        id="prompt-batch",
    ),
    pytest.param(
        "/v1/completions",
        {"prompt": "a", "suffix": "b" * (LIMITS.prompt_chars + 1)},
        f"suffix: {LIMITS.prompt_chars + 1} characters; the limit is {LIMITS.prompt_chars}",
        id="suffix-chars",
    ),
    pytest.param(
        "/v1/completions", {"prompt": "a", "max_tokens": 9000}, "max_tokens", id="completion-tokens"
    ),
    pytest.param(
        "/v1/completions",
        {"prompt": "a", "stop": "s" * 201},
        "stop: 201 characters",
        id="stop-chars",
    ),
    pytest.param(
        "/v1/embeddings",
        {"input": ["a"] * (LIMITS.embed_inputs + 1)},
        f"input: {LIMITS.embed_inputs + 1} texts; the limit is {LIMITS.embed_inputs}",
        id="embed-count",
    ),
    pytest.param(
        "/v1/embeddings",
        {"input": ["a", "b" * (LIMITS.embed_chars + 1)]},
        f"input: {LIMITS.embed_chars + 1} characters in item 1; the limit is",
        id="embed-chars",
    ),
    pytest.param(
        "/api/ai/fim",
        {"prefix": "a", "stop": ["s"] * 17},
        "stop: 17 stop sequences; the limit is 16",
        id="fim-stops",
    ),
    pytest.param(
        "/api/ai/fim",
        {"prefix": "a", "files": [{"path": "f.py", "text": ""}] * 9},
        "files: 9 files; the limit is 8: offer the most relevant open files",
        id="fim-files",
    ),
    pytest.param(
        "/api/ai/fim",
        {"prefix": "a", "max_tokens": 5000},
        "max_tokens: Input should be less than or equal to 2048",
        id="fim-max-tokens",
    ),
]


@pytest.mark.parametrize(("path", "body", "says"), TOO_BIG)
async def test_oversized_fields_say_the_limit_and_how_to_fit(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], says: str
) -> None:
    resp = await client.post(path, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_json"
    assert says in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat(stream="yes")),
        ("/v1/chat/completions", chat(max_tokens="5")),
        ("/v1/chat/completions", chat(cache=0)),
        ("/v1/embeddings", {"input": ["a", ""]}),
        ("/v1/embeddings", {"input": []}),
        ("/api/ai/fim/feedback", {"id": "x", "event": "retained", "retained_chars": "3"}),
    ],
)
async def test_wrong_json_types_are_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    resp = await client.post(path, json=body)
    assert resp.status_code == 400, resp.text


async def test_limits_are_inclusive_and_whole_floats_are_integers(
    client: httpx.AsyncClient,
) -> None:
    body = chat(
        messages=[{"role": "user", "content": "x" * LIMITS.message_chars}] * LIMITS.turns,
        max_tokens=8.0,
        stop=["s"] * LIMITS.stops,
    )
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    resp = await client.post("/v1/embeddings", json={"input": ["a"] * LIMITS.embed_inputs})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == LIMITS.embed_inputs


async def test_a_body_over_the_limit_is_refused_with_or_without_content_length(
    client: httpx.AsyncClient,
) -> None:
    big = {"prefix": "x" * (BODY_LIMIT + 10)}
    resp = await client.post("/api/ai/fim", json=big)
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "request_too_large"

    async def chunked(size: int) -> AsyncIterator[bytes]:
        yield b'{"prefix": "'
        for _ in range(size // 1000):
            yield b"x" * 1000
        yield b'"}'

    headers = {"content-type": "application/json"}
    resp = await client.post("/api/ai/fim", content=chunked(BODY_LIMIT + 10_000), headers=headers)
    assert resp.request.headers.get("content-length") is None
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert error["type"] == "request_too_large" and f"the limit is {BODY_LIMIT}" in error["message"]
    resp = await client.post("/api/ai/fim", content=chunked(100_000), headers=headers)
    assert resp.status_code == 200, resp.text


async def test_the_document_shows_the_limits_and_the_errors(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    chat_body = schemas["ChatCompletionBody"]["properties"]
    assert chat_body["messages"]["maxItems"] == LIMITS.turns
    content = schemas["ChatMessage"]["properties"]["content"]["anyOf"]
    assert {"maxLength": LIMITS.message_chars, "type": "string"} in content
    assert "HTTPValidationError" not in schemas
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "403" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/api/health":
                    assert response["content"]["application/json"]["schema"] == error
    chat_op = doc["paths"]["/v1/chat/completions"]["post"]
    assert {"400", "401", "404", "413", "429", "502", "503"} <= set(chat_op["responses"])
    assert "text/event-stream" in chat_op["responses"]["200"]["content"]
    assert chat_op["security"] == [{"apiToken": []}, {"session": []}]
    assert "security" not in doc["paths"]["/api/health"]["get"]


async def test_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    resp = await client.delete("/api/agent/sessions")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"
    assert resp.json()["error"]["code"] == 405

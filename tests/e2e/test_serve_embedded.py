"""A real `mimiverse serve` on embedded defaults: health, FIM, chat, errors — and a second
`mimiverse serve` that uses the first one's /v1 API as its OpenAI-compatible upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MimiServe

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, fim_gguf: Path
) -> Iterator[MimiServe]:
    data = tmp_path_factory.mktemp("serve")
    # The 0.5B also serves chat here, to keep the suite light; the 1.5B chat model is
    # exercised by `mimiverse doctor --load` and the README's first command.
    server = MimiServe(
        data / "serve.log", data, models_dir=str(models_dir), chat_model_file=str(fim_gguf),
        embedded_chat_ctx="2048", embedded_fim_ctx="1024",
    )  # fmt: skip
    yield server
    server.kill()


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory, serve: MimiServe) -> Iterator[MimiServe]:
    data = tmp_path_factory.mktemp("downstream")
    endpoints = [
        {"name": "upstream", "kind": "openai", "url": serve.url + "/v1", "model": "default",
         "tasks": ["chat", "fim"], "fim_template": "native"},
    ]  # fmt: skip
    server = MimiServe(data / "serve.log", data, embedded="false", endpoints=json.dumps(endpoints))
    yield server
    server.kill()


FIM = {
    "prefix": "def add(a, b):\n    return ",
    "suffix": "\n\nprint(add(1, 2))\n",
    "max_tokens": 12,
}


def test_health_is_green(serve: MimiServe) -> None:
    body = httpx.get(serve.url + "/api/health").json()
    assert body["status"] == "ok"
    assert {e["name"]: e["detail"] for e in body["endpoints"]} == {
        "embedded-fim": "loaded",
        "embedded-chat": "loaded",
        "embedded-embed": "loaded",
    }


def test_fim_returns_real_completion(serve: MimiServe) -> None:
    resp = httpx.post(serve.url + "/api/ai/fim", json=FIM, timeout=60)
    body = resp.json()
    assert resp.status_code == 200, body
    assert "a + b" in body["completion"]
    assert body["cached"] is False and body["latency"] > 0
    again = httpx.post(serve.url + "/api/ai/fim", json=FIM, timeout=60).json()
    assert again["cached"] is True and again["completion"] == body["completion"]


def test_chat_streams(serve: MimiServe) -> None:
    body = {"messages": [{"role": "user", "content": "Say hi."}], "stream": True, "max_tokens": 8}
    with httpx.stream("POST", serve.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines[:-1]
    )
    assert text.strip()


def test_prompt_over_context_is_400_naming_the_fix(serve: MimiServe) -> None:
    # /api/ai/fim cuts its context to the completion budget; the raw OpenAI route does not.
    body = {"prompt": "x = 1\n" * 3000, "max_tokens": 4}
    resp = httpx.post(serve.url + "/v1/completions", json=body, timeout=60)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "context_length_exceeded"
    assert "shorten the input" in error["message"]


def test_metrics_after_traffic(serve: MimiServe) -> None:
    httpx.post(serve.url + "/api/ai/fim", json={**FIM, "max_tokens": 3}, timeout=60)
    text = httpx.get(serve.url + "/metrics").text
    assert (
        'mimi_model_time_to_first_token_seconds_count{backend="embedded",endpoint="embedded-fim",task="fim"}'
        in text
    )


def test_second_serve_uses_first_as_openai_upstream(downstream: MimiServe) -> None:
    models = httpx.get(downstream.url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["upstream"]
    fim = httpx.post(downstream.url + "/api/ai/fim", json={**FIM, "temperature": 0.0}, timeout=60)
    assert fim.status_code == 200, fim.text
    assert "a + b" in fim.json()["completion"]
    assert fim.json()["endpoint"] == "upstream"
    chat = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    answer = httpx.post(downstream.url + "/v1/chat/completions", json=chat, timeout=60).json()
    assert answer["choices"][0]["message"]["content"].strip()


def test_upstream_errors_pass_through_as_4xx(downstream: MimiServe) -> None:
    resp = httpx.post(downstream.url + "/api/ai/fim", json={"prefix": "y = 2\n" * 3000}, timeout=60)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "context_length_exceeded"

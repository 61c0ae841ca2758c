"""OpenAIBackend against a real llama.cpp server process (xllamacpp's, via the test launcher).

The GGUF is the bundled Qwen2.5-Coder-0.5B (``fim_gguf`` fixture). The server runs
``n_ctx=2048`` over 2 slots, so a request may use 1024 tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mimiverse.errors import ContextLengthExceeded, UpstreamError
from mimiverse.gateway.backends.openai import OpenAIBackend
from mimiverse.gateway.base import ChatRequest, Delta, EmbedRequest, FimRequest
from mimiverse.settings import EndpointSettings
from tests.conftest import LlamaServer

pytestmark = pytest.mark.model

SLOT_CONTEXT = 1024  # n_ctx 2048 shared by 2 parallel slots


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fim_gguf: Path) -> Iterator[LlamaServer]:
    proc = LlamaServer(fim_gguf, tmp_path_factory.mktemp("llama") / "server.log")
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory, fim_gguf: Path) -> Iterator[LlamaServer]:
    proc = LlamaServer(
        fim_gguf, tmp_path_factory.mktemp("llama-embed") / "server.log", embedding=True
    )
    yield proc
    proc.kill()


def endpoint(url: str, **fields: Any) -> OpenAIBackend:
    fields.setdefault("name", "llama")
    fields.setdefault("model", "qwen2.5-coder-0.5b")
    fields.setdefault("tasks", ["chat", "fim", "embed"])
    fields.setdefault("timeout_s", 60)
    return OpenAIBackend(EndpointSettings(kind="openai", url=url, **fields))


@pytest.fixture
async def backend(server: LlamaServer) -> AsyncIterator[OpenAIBackend]:
    made = endpoint(server.url)
    yield made
    await made.close()


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


async def test_health_and_learned_context(backend: OpenAIBackend) -> None:
    health = await backend.health()
    assert health.ok, health.detail
    assert health.latency_ms > 0
    # /v1/models reports meta.n_ctx (one slot), not the 32768 the model was trained on.
    assert backend.capabilities.context_length == SLOT_CONTEXT


async def test_chat_stream(backend: OpenAIBackend) -> None:
    request = ChatRequest(
        messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0.0
    )
    deltas = await collect(backend.chat_stream(request))
    assert "".join(d.text for d in deltas).strip()
    assert deltas[-1].finish_reason in ("stop", "length")
    assert all(d.finish_reason is None for d in deltas[:-1])
    usage = deltas[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 6


FIM = FimRequest(prefix="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))\n", max_tokens=8)


async def test_fim_native_suffix(server: LlamaServer) -> None:
    # llama.cpp's /v1/completions accepts `suffix` but ignores it: this is plain completion.
    native = endpoint(server.url, model="local-model")
    try:
        assert native.capabilities.fim_template == ""
        deltas = await collect(native.fim_stream(FIM))
    finally:
        await native.close()
    assert "".join(d.text for d in deltas).strip()
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_fim_qwen_template(backend: OpenAIBackend) -> None:
    assert backend.capabilities.fim_template == "qwen"  # detected from the model id
    deltas = await collect(backend.fim_stream(FIM))
    text = "".join(d.text for d in deltas)
    assert "a + b" in text  # greedy decoding (temperature 0)
    assert "<|" not in text
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_too_long_prompt_raises_context_length(backend: OpenAIBackend) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "hello world " * 800}])
    with pytest.raises(ContextLengthExceeded) as info:
        await collect(backend.chat_stream(request))
    assert f"model 'qwen2.5-coder-0.5b' takes {SLOT_CONTEXT}" in info.value.message
    assert "shorten the input or raise context_length" in info.value.message


async def test_embeddings(embed_server: LlamaServer) -> None:
    embedder = endpoint(embed_server.url, tasks=["embed"])
    try:
        vectors = await embedder.embed(EmbedRequest(inputs=["def f(): pass", "hello", "x = 1"]))
    finally:
        await embedder.close()
    assert len(vectors) == 3
    assert len({len(v) for v in vectors}) == 1
    assert len(vectors[0]) > 0
    assert vectors[0] != vectors[1]


async def test_killed_server_is_unhealthy_and_retryable(tmp_path: Path, fim_gguf: Path) -> None:
    proc = LlamaServer(fim_gguf, tmp_path / "server.log")
    doomed = endpoint(proc.url, context_length=SLOT_CONTEXT)
    try:
        assert (await doomed.health()).ok
        proc.kill()
        health = await doomed.health()
        assert not health.ok
        with pytest.raises(UpstreamError) as info:
            await collect(
                doomed.chat_stream(ChatRequest(messages=[{"role": "user", "content": "x"}]))
            )
        assert info.value.retryable
    finally:
        proc.kill()
        await doomed.close()

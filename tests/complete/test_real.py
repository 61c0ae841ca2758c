"""Completions on real model runtimes: the embedded 0.5B in-process, llama.cpp's own
OpenAI-compatible server as a process (raw template), and the OpenAI ``suffix`` shape
(our own ``/v1/completions`` over the embedded model).

Cancellation is proven on the runtimes' own counters: llama.cpp's ``n_decode_total``
(embedded) and the slot's ``n_decoded`` (server ``/slots``), not by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from mimiverse.complete.engine import Completer, CompletionRequest
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.gateway.backends.openai import OpenAIBackend, server_root
from mimiverse.gateway.base import FimFile
from mimiverse.settings import EndpointSettings
from mimiverse.testing import gateway_with
from tests.conftest import LlamaServer

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

ADD = CompletionRequest(
    prefix="def add(a, b):\n    return ",
    suffix="\n\n\nprint(add(1, 2))\n",
    path="calc.py",
    language="python",
)
LONG = "Write a very long story about a dragon. " * 3


def essay(session: str) -> CompletionRequest:
    """A request the model answers at length (a long block, forced multi-line)."""
    return CompletionRequest(
        prefix=f'def story():\n    """{LONG}\n\n    Once upon a time',
        suffix="",
        path="story.py",
        language="python",
        session=session,
        multiline=True,
        max_tokens=400,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(fim_gguf: Path) -> AsyncIterator[EmbeddedBackend]:
    backend = EmbeddedBackend(  # 1 thread: the machine is shared, and speed is not tested here
        "embedded-fim", fim_gguf, tasks=("fim",), context_length=2048, parallel=2, threads=1
    )
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fim_gguf: Path) -> Iterator[LlamaServer]:
    proc = LlamaServer(fim_gguf, tmp_path_factory.mktemp("llama-fim") / "server.log")
    yield proc
    proc.kill()


def counter(backend: EmbeddedBackend, name: str = "llamacpp:n_decode_total") -> float:
    return backend.counters()[name]


async def settled(backend: EmbeddedBackend) -> float:
    """The decode counter once two readings 0.1 s apart agree (at most ~2 s)."""
    value = counter(backend)
    for _ in range(20):
        await asyncio.sleep(0.1)
        again, value = value, counter(backend)
        if again == value:
            break
    return value


async def first_piece(completer: Completer, request: CompletionRequest) -> asyncio.Task[Any]:
    """Start ``request`` and return once the model has streamed something."""
    got = asyncio.Event()
    task = asyncio.create_task(completer.complete(request, lambda _: got.set()))
    await asyncio.wait_for(got.wait(), timeout=120)
    return task


# --- embedded ------------------------------------------------------------------------------


async def test_embedded_completes_a_line(embedded: EmbeddedBackend) -> None:
    result = await Completer(gateway_with(embedded)).complete(ADD)
    assert result.text.startswith("a + b"), result
    assert result.endpoint == "embedded-fim" and not result.multiline


async def test_embedded_typing_reuses_the_kv_cache(embedded: EmbeddedBackend) -> None:
    """After the first request, a keystroke costs a few prompt tokens, not the prompt."""
    completer = Completer(gateway_with(embedded))
    text = "import os\n\n\ndef list_python_files(folder):\n" + "".join(
        f"    # step {i}: look at every entry of the folder and keep the python ones\n"
        for i in range(12)
    )
    start = "    names = "
    processed = []
    for typed in ("", "s", "so", "sor"):
        before = counter(embedded, "llamacpp:prompt_tokens_total")
        request = CompletionRequest(
            prefix=text + start + typed, suffix="\n    return names\n", path="files.py",
            language="python", session="typist", max_tokens=4,
        )  # fmt: skip
        await completer.complete(request)
        processed.append(counter(embedded, "llamacpp:prompt_tokens_total") - before)
    assert processed[0] > 150, processed  # the whole prompt, once
    assert all(n <= 6 for n in processed[1:]), processed  # then only the new characters


async def test_embedded_cancel_stops_generation(embedded: EmbeddedBackend) -> None:
    completer = Completer(gateway_with(embedded))
    before = counter(embedded)
    task = await first_piece(completer, essay("canceller"))
    flight = completer.sessions.get("canceller").flight
    assert flight is not None and flight.running
    await flight.cancel()  # what a new request elsewhere does
    assert (await task).cancelled
    stopped_at = await settled(embedded)  # the decode step under way may still finish
    for _ in range(5):  # the engine's counter does not move any more
        await asyncio.sleep(0.1)
        assert counter(embedded) == stopped_at
    assert stopped_at - before < 100  # 400 tokens were allowed


async def test_embedded_new_request_cancels_the_old_one(embedded: EmbeddedBackend) -> None:
    completer = Completer(gateway_with(embedded))
    before = counter(embedded)
    old = await first_piece(completer, essay("editor"))
    moved = CompletionRequest(
        prefix=ADD.prefix, suffix=ADD.suffix, path="calc.py", language="python", session="editor"
    )
    new = await completer.complete(moved)
    assert new.text.startswith("a + b")
    assert (await old).cancelled
    after = counter(embedded)
    await asyncio.sleep(0.3)
    assert counter(embedded) == after
    assert after - before < 150


# --- llama.cpp's OpenAI-compatible server (raw template, repo-level context) ----------------


async def test_openai_server_completes_with_related_files(server: LlamaServer) -> None:
    backend = OpenAIBackend(
        EndpointSettings(name="llama", kind="openai", url=server.url, model="qwen2.5-coder-0.5b",
                         tasks=["fim"], timeout_s=120)
    )  # fmt: skip
    try:
        completer = Completer(gateway_with(backend), repo="demo")
        request = CompletionRequest(
            prefix="from geometry import circle_area\n\nprint(circle_area(",
            suffix="))\n",
            path="main.py",
            language="python",
            files=[FimFile("geometry.py", "def circle_area(radius):\n    return 3.14 * radius**2")],
        )
        result = await completer.complete(request)
        assert result.endpoint == "llama" and result.text.strip()
        assert ")" not in result.text[-1:]  # the closing parens after the cursor are not repeated
    finally:
        await backend.close()


async def test_openai_server_cancel_stops_the_slot(server: LlamaServer) -> None:
    backend = OpenAIBackend(
        EndpointSettings(name="llama", kind="openai", url=server.url, model="qwen2.5-coder-0.5b",
                         tasks=["fim"], timeout_s=120)
    )  # fmt: skip
    completer = Completer(gateway_with(backend))
    root = server_root(server.url)
    try:
        task = await first_piece(completer, essay("remote"))
        flight = completer.sessions.get("remote").flight
        assert flight is not None
        await flight.cancel()
        assert (await task).cancelled
        async with httpx.AsyncClient(timeout=10) as client:
            seen = []
            for _ in range(100):  # llama.cpp notices the closed connection at its next token
                slots = (await client.get(root + "/slots")).json()
                busy = [s for s in slots if s.get("is_processing")]
                if not busy:
                    break
                seen.append(busy[0]["next_token"][0]["n_decoded"])
                await asyncio.sleep(0.05)
            assert not busy, "the server kept generating after the stream was closed"
        assert all(n < 100 for n in seen), seen  # it stopped far below the 400 allowed
    finally:
        await backend.close()


# --- the OpenAI ``suffix`` shape (servers that apply their own FIM template) ---------------


async def test_openai_native_suffix_mode(embedded: EmbeddedBackend, make_settings: Any) -> None:
    """Our own /v1/completions takes prompt + suffix: an OpenAI-compatible server that
    applies the template itself. The engine's client backend sends ``suffix`` there."""
    from mimiverse.server.app import create_app

    upstream_gateway = gateway_with(embedded)
    app = create_app(make_settings(index_on_start=False), upstream_gateway)
    sent: list[dict[str, Any]] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/completions"):
                import json

                sent.append(json.loads(request.content))
            return await self.inner.handle_async_request(request)

    backend = OpenAIBackend(
        EndpointSettings(name="native", kind="openai", url="http://127.0.0.1/v1", model="default",
                         tasks=["fim"], fim_template="native", context_length=2048),
        transport=Recording(),
    )  # fmt: skip
    try:
        result = await Completer(gateway_with(backend)).complete(ADD)
        assert result.text.startswith("a + b"), result
        assert sent and sent[0]["suffix"].startswith("\n\n\nprint(add(1, 2))")
        assert sent[0]["prompt"].endswith("return ")
        assert "<|fim_prefix|>" not in sent[0]["prompt"]
    finally:
        await backend.close()
        await app.state.completer.close()

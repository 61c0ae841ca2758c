"""Test helpers shipped with the package (for our tests and yours).

``FakeBackend`` is a scripted model endpoint: ``enqueue()`` what the next requests answer,
or make them fail before or after the first token, so routing, failover and streaming
logic can be tested without a model. End-to-end tests still use real servers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mimiverse.errors import MimiError, UpstreamError
from mimiverse.gateway.base import (
    Capabilities,
    ChatRequest,
    Delta,
    EmbedRequest,
    FimRequest,
    Health,
    ModelBackend,
    RerankRequest,
    RerankResult,
    Usage,
)

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway


@dataclass
class Script:
    """What one request to a ``FakeBackend`` does."""

    pieces: list[str] = field(default_factory=lambda: ["ok"])
    fail_before: MimiError | None = None
    fail_after: int | None = None
    """Raise a retryable UpstreamError after this many pieces."""
    delay_s: float = 0.0


class FakeBackend(ModelBackend):
    """An in-memory endpoint that answers from a script (default: ``"ok"``)."""

    kind = "fake"

    def __init__(
        self,
        name: str = "fake",
        model: str = "fake-model",
        capabilities: Capabilities | None = None,
    ) -> None:
        super().__init__(
            name,
            model,
            capabilities or Capabilities(chat=True, fim=True, embed=True, rerank=True),
        )
        self.scripts: deque[Script] = deque()
        self.default = Script()
        self.healthy = True
        self.calls: list[object] = []

    def enqueue(self, *pieces: str, **options: object) -> FakeBackend:
        """Script the next request: its text pieces and failure options (see ``Script``)."""
        self.scripts.append(Script(list(pieces) or ["ok"], **options))  # type: ignore[arg-type]
        return self

    def _next(self) -> Script:
        return self.scripts.popleft() if self.scripts else self.default

    async def _play(self, script: Script) -> AsyncIterator[Delta]:
        if script.fail_before is not None:
            raise script.fail_before
        for index, piece in enumerate(script.pieces):
            if script.fail_after is not None and index >= script.fail_after:
                raise UpstreamError(f"{self.name} dropped the stream", endpoint=self.name)
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            yield Delta(text=piece)
        yield Delta(finish_reason="stop", usage=Usage(3, len(script.pieces)))

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Play the next script."""
        self.calls.append(request)
        return self._play(self._next())

    def fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        """Play the next script."""
        self.calls.append(request)
        return self._play(self._next())

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """A deterministic 4-dimensional vector per text."""
        self.calls.append(request)
        script = self._next()
        if script.fail_before is not None:
            raise script.fail_before
        return [[float(len(t)), float(sum(map(ord, t)) % 97), 1.0, 0.0] for t in request.inputs]

    async def rerank(self, request: RerankRequest) -> list[RerankResult]:
        """Scores by shared words with the query."""
        self.calls.append(request)
        script = self._next()
        if script.fail_before is not None:
            raise script.fail_before
        words = set(request.query.lower().split())
        scores = [
            RerankResult(i, float(len(words & set(d.lower().split()))))
            for i, d in enumerate(request.documents)
        ]
        return sorted(scores, key=lambda r: -r.score)[: request.top_n or None]

    async def health(self) -> Health:
        """``healthy`` as set by the test."""
        return Health(ok=self.healthy, detail="fake")


def gateway_with(
    *backends: ModelBackend,
    routes: dict[str, list[str]] | None = None,
    max_concurrency: int = 4,
    breaker_failures: int = 3,
    breaker_reset_s: float = 15.0,
    queue_timeout_s: float = 5.0,
) -> Gateway:
    """A gateway over the given backends with a memory cache (no settings file, no models)."""
    from mimiverse.gateway.breaker import CircuitBreaker
    from mimiverse.gateway.cache import ResponseCache
    from mimiverse.gateway.cache_stores.memory import MemoryStore
    from mimiverse.gateway.router import Endpoint, Router
    from mimiverse.gateway.service import Gateway
    from mimiverse.observability import Metrics

    metrics = Metrics()
    endpoints = [
        Endpoint(
            backend=b,
            breaker=CircuitBreaker(breaker_failures, breaker_reset_s),
            max_concurrency=max_concurrency,
        )
        for b in backends
    ]
    router = Router(
        endpoints,
        dict(routes or {}),  # type: ignore[arg-type]
        metrics,
        queue_timeout_s=queue_timeout_s,
    )
    cache = ResponseCache(MemoryStore(1000), on_event=metrics.cache_event)
    return Gateway(router, cache, metrics)

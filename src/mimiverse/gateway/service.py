"""The gateway facade: model selection, response cache and router in one place.

Everything above the gateway (HTTP routes, completions, agent, index) calls this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mimiverse.errors import EmptyInput, UnknownModel
from mimiverse.gateway.base import (
    ChatRequest,
    Delta,
    EmbedRequest,
    FimRequest,
    RerankRequest,
    RerankResult,
    Usage,
)
from mimiverse.gateway.cache import ResponseCache
from mimiverse.gateway.router import Attempt, Router
from mimiverse.observability import Metrics
from mimiverse.settings import Task

log = logging.getLogger("mimiverse.gateway")

# Names a client may send to mean "whatever this task is routed to".
DEFAULT_ALIASES = frozenset({"", "default", "mimiverse", "auto"})


@dataclass
class Completion:
    """A finished (non-streamed) generation."""

    text: str
    cached: bool
    latency_ms: float
    endpoint: str = ""
    model: str = ""
    finish_reason: str = "stop"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


@dataclass
class StreamInfo:
    """Filled in while a stream runs: where it came from and whether it was cached."""

    cached: bool = False
    attempt: Attempt = field(default_factory=Attempt)


class Gateway:
    """One door to every model."""

    def __init__(self, router: Router, cache: ResponseCache, metrics: Metrics) -> None:
        self.router = router
        self.cache = cache
        self.metrics = metrics
        self._preload: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, *, preload: bool = True) -> None:
        """Check endpoints, start health checks, and load embedded models in the background."""
        await self.router.check_all()
        self.router.start_health_checks()
        if preload:
            self._preload = asyncio.create_task(self._load_embedded(), name="mimi-preload")

    async def _load_embedded(self) -> None:
        for endpoint in self.router.endpoints.values():
            start = getattr(endpoint.backend, "start", None)
            if start is None:
                continue
            try:
                await start()
            except Exception as exc:  # reported by health and doctor; never fatal here
                log.error("could not load %s: %s", endpoint.name, exc)
            await self.router.check(endpoint)

    async def close(self) -> None:
        """Stop background work and release every backend and the cache."""
        if self._preload is not None:
            self._preload.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._preload
        await self.router.close()
        await self.cache.close()

    # --- models -------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every endpoint's model with its capabilities and state."""
        return [e.status() for e in self.router.endpoints.values()]

    def known_models(self) -> list[str]:
        """Names a request may use in ``model``."""
        names: list[str] = []
        for e in self.router.endpoints.values():
            for n in (e.name, e.backend.model):
                if n not in names:
                    names.append(n)
        return names

    def resolve(self, model: str | None, task: Task) -> str | None:
        """``None`` for "the task's default", else a validated endpoint or model name."""
        if model is None or model in DEFAULT_ALIASES:
            return None
        for e in self.router.endpoints.values():
            if model in (e.name, e.backend.model):
                if not e.backend.capabilities.supports(task):
                    serving = [x.name for x in self.router.routes.get(task, [])]
                    raise UnknownModel(
                        f"model '{model}' does not serve task '{task}'; models that do: "
                        f"{', '.join(serving) or 'none'}",
                        known=serving,
                    )
                return model
        known = self.known_models()
        raise UnknownModel(
            f"unknown model '{model}': use one of {', '.join(known)} (or 'default')", known=known
        )

    def _cache_model(self, task: Task, model: str | None) -> str:
        if model:
            return model
        route = self.router.routes.get(task) or []
        return route[0].backend.model if route else f"default:{task}"

    # --- FIM ----------------------------------------------------------------------------

    def fim_stream(
        self, request: FimRequest, model: str | None = None, info: StreamInfo | None = None
    ) -> AsyncIterator[Delta]:
        """Stream a fill-in-the-middle completion (cached completions come back whole)."""
        if not request.prefix and not request.suffix and not request.middle:
            raise EmptyInput(
                "prefix and suffix are both empty: send the text before and after the cursor"
            )
        resolved = self.resolve(model, "fim")
        return self._cached_stream(
            "fim",
            resolved,
            _fim_key(request),
            lambda backend: backend.fim_stream(request),
            info or StreamInfo(),
            use_cache=request.temperature == 0,
        )

    def fim_cache_key(self, request: FimRequest, model: str | None = None) -> str:
        """The response-cache key of ``request`` (to store a stream its caller cut short)."""
        resolved = self.resolve(model, "fim")
        return self.cache.cache_key(self._cache_model("fim", resolved), "fim", _fim_key(request))

    async def fim(self, request: FimRequest, model: str | None = None) -> Completion:
        """A whole fill-in-the-middle completion."""
        return await self._collect(self.fim_stream(request, model, info := StreamInfo()), info)

    # --- chat ---------------------------------------------------------------------------

    def chat_stream(
        self,
        request: ChatRequest,
        model: str | None = None,
        *,
        cache: bool = False,
        info: StreamInfo | None = None,
    ) -> AsyncIterator[Delta]:
        """Stream a chat answer; cached only when ``cache`` is asked for."""
        if not request.messages:
            raise EmptyInput("messages is empty: send at least one {role, content} message")
        resolved = self.resolve(model, "chat")
        return self._cached_stream(
            "chat",
            resolved,
            _chat_key(request),
            lambda backend: backend.chat_stream(request),
            info or StreamInfo(),
            use_cache=cache,
        )

    async def chat(
        self, request: ChatRequest, model: str | None = None, *, cache: bool = False
    ) -> Completion:
        """A whole chat answer."""
        info = StreamInfo()
        return await self._collect(self.chat_stream(request, model, cache=cache, info=info), info)

    # --- embed / rerank -----------------------------------------------------------------

    async def embed(
        self, inputs: list[str], model: str | None = None, *, kind: str = "passage"
    ) -> tuple[list[list[float]], int]:
        """Vectors for ``inputs`` in order, and how many came from the cache.

        Each text is cached on its own, so re-embedding a file only computes changed chunks.
        """
        if not inputs:
            raise EmptyInput("input is empty: send one text or a list of texts")
        resolved = self.resolve(model, "embed")
        cache_model = self._cache_model("embed", resolved)
        keys = [
            self.cache.cache_key(cache_model, "embed", {"input": text, "kind": kind})
            for text in inputs
        ]
        found = await asyncio.gather(*(self.cache.get("embed", k) for k in keys))
        vectors: list[list[float] | None] = list(found)
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            batch = EmbedRequest([inputs[i] for i in missing], kind=kind)
            fresh = await self.router.call("embed", lambda b: b.embed(batch), model=resolved)
            for i, vector in zip(missing, fresh, strict=True):
                vectors[i] = vector
                await self.cache.set("embed", keys[i], vector)
        return [v for v in vectors if v is not None], len(inputs) - len(missing)

    async def rerank(self, request: RerankRequest, model: str | None = None) -> list[RerankResult]:
        """Documents scored against the query, best first."""
        if not request.query or not request.documents:
            raise EmptyInput(
                "query and documents are required: send a query and at least one document"
            )
        resolved = self.resolve(model, "rerank")
        key = self.cache.cache_key(self._cache_model("rerank", resolved), "rerank", asdict(request))
        hit = await self.cache.get("rerank", key)
        if hit is not None:
            return [RerankResult(int(r["index"]), float(r["score"])) for r in hit]
        results = await self.router.call("rerank", lambda b: b.rerank(request), model=resolved)
        await self.cache.set("rerank", key, [asdict(r) for r in results])
        return results

    # --- internals ----------------------------------------------------------------------

    async def _cached_stream(
        self,
        task: Task,
        model: str | None,
        payload: dict[str, Any],
        start: Any,
        info: StreamInfo,
        *,
        use_cache: bool,
    ) -> AsyncIterator[Delta]:
        key = (
            self.cache.cache_key(self._cache_model(task, model), task, payload) if use_cache else ""
        )
        if use_cache:
            hit = await self.cache.get(task, key, allow_chat=True)
            if hit is not None:
                info.cached = True
                yield Delta(
                    text=hit.get("text", ""),
                    tool_calls=hit.get("tool_calls"),
                    finish_reason=hit.get("finish_reason") or "stop",
                )
                return
        parts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        finish: str | None = None
        stream = self.router.stream(task, start, model=model, attempt=info.attempt)
        async with contextlib.aclosing(stream):
            async for delta in stream:
                parts.append(delta.text)
                if delta.tool_calls:
                    tool_calls.extend(delta.tool_calls)
                finish = delta.finish_reason or finish
                yield delta
        if use_cache and finish in ("stop", "length", "tool_calls"):
            value = {
                "text": "".join(parts),
                "finish_reason": finish,
                "tool_calls": tool_calls or None,
            }
            await self.cache.set(task, key, value, allow_chat=True)

    async def _collect(self, stream: AsyncIterator[Delta], info: StreamInfo) -> Completion:
        began = time.perf_counter()
        parts: list[str] = []
        calls: list[dict[str, Any]] = []
        finish = "stop"
        usage = Usage()
        async for delta in stream:
            parts.append(delta.text)
            if delta.tool_calls:
                calls.extend(delta.tool_calls)
            if delta.finish_reason:
                finish = delta.finish_reason
            if delta.usage:
                usage = delta.usage
        endpoint = info.attempt.endpoint
        return Completion(
            text="".join(parts),
            cached=info.cached,
            latency_ms=(time.perf_counter() - began) * 1000,
            endpoint=endpoint.name if endpoint else "",
            model=endpoint.backend.model if endpoint else "",
            finish_reason=finish,
            tool_calls=merge_tool_calls(calls),
            usage=usage,
        )


def _fim_key(request: FimRequest) -> dict[str, Any]:
    return {
        "prefix": request.prefix,
        "suffix": request.suffix,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": request.stop,
        "files": [(f.path, f.text) for f in request.files],
        "repo": request.repo,
        "path": request.path,
        "n_indent": request.n_indent,
        "middle": request.middle,
    }


def _chat_key(request: ChatRequest) -> dict[str, Any]:
    return asdict(request)


def merge_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join streamed OpenAI tool-call fragments (by ``index``) into whole calls."""
    merged: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        index = int(chunk.get("index", len(merged)))
        call = merged.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if chunk.get("id"):
            call["id"] = chunk["id"]
        function = chunk.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]
    return [merged[i] for i in sorted(merged)]

"""OpenAI-compatible endpoints: vLLM, llama.cpp server, NIM, Together, another Mimiverse.

``url`` is the API base (``http://host:8000/v1``); the server root (for llama.cpp's
``/health`` and ``/props``) is that URL without a trailing ``/v1``.

FIM goes to ``/completions``: with a FIM template (configured, or detected from the model
id) the raw prompt is rendered here; otherwise the suffix is sent as ``suffix``. Set
``fim_template = "native"`` to force ``suffix`` for a model id that would be detected.
Note that llama.cpp's ``/v1/completions`` ignores ``suffix``: use a template there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from mimiverse.errors import ConfigError, UpstreamError
from mimiverse.gateway.backends._http import (
    HttpBackend,
    SseParser,
    capabilities_for,
    parse_usage,
    resolve_fim_template,
)
from mimiverse.gateway.base import (
    ChatRequest,
    Delta,
    EmbedRequest,
    FimRequest,
    Health,
    RerankRequest,
    RerankResult,
    Usage,
)
from mimiverse.gateway.fim_templates import context_block
from mimiverse.settings import EndpointSettings

log = logging.getLogger("mimiverse.gateway.openai")

DEFAULT_CONTEXT = 4096


def server_root(url: str) -> str:
    """``http://h:8000/v1`` → ``http://h:8000``; other URLs unchanged."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def context_from_models(data: Any, model: str) -> tuple[int, int]:
    """(serving context, trained context) from a ``/models`` answer; 0 when absent."""
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        return 0, 0
    entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == model), entries[0])
    if not isinstance(entry, dict):
        return 0, 0
    meta: dict[str, Any] = entry["meta"] if isinstance(entry.get("meta"), dict) else {}
    for value in (
        entry.get("max_model_len"),  # vLLM
        meta.get("n_ctx"),  # llama.cpp: the context of one slot, what a request may use
        entry.get("context_length"),  # Together, OpenRouter
        entry.get("context_window"),
    ):
        if isinstance(value, int) and value > 0:
            return value, 0
    trained = meta.get("n_ctx_train")
    return 0, trained if isinstance(trained, int) and trained > 0 else 0


def context_from_props(data: Any) -> int:
    """llama.cpp ``/props`` → ``default_generation_settings.n_ctx``; 0 when absent."""
    if not isinstance(data, dict):
        return 0
    settings = data.get("default_generation_settings")
    value = settings.get("n_ctx") if isinstance(settings, dict) else data.get("n_ctx")
    return value if isinstance(value, int) and value > 0 else 0


class OpenAIBackend(HttpBackend):
    """An OpenAI-compatible HTTP server."""

    kind = "openai"

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout_s: float = 2.0,
    ) -> None:
        if not settings.url:
            raise ConfigError(
                f"endpoint '{settings.name}' (kind=openai) needs url, "
                "e.g. http://127.0.0.1:8000/v1",
                endpoint=settings.name,
            )
        self._template = resolve_fim_template(settings, detect=True)
        caps = capabilities_for(settings, self._template, default_context=DEFAULT_CONTEXT)
        super().__init__(
            settings,
            caps,
            base_url=settings.url,
            transport=transport,
            connect_timeout_s=connect_timeout_s,
        )
        self.root_url = server_root(self.base_url)
        self._context_known = settings.context_length > 0
        self._context_lock = asyncio.Lock()

    # --- context length -----------------------------------------------------------------

    async def _learn_context(self, models: Any = None) -> None:
        """Ask the server its context window once (when ``context_length`` is 0)."""
        if self._context_known:
            return
        async with self._context_lock:
            if self._context_known:
                return
            try:
                if models is None:
                    models = await self._json("GET", f"{self.base_url}/models")
                serving, trained = context_from_models(models, self.model)
                if not serving:
                    serving = await self._props_context()
                tokens = serving or trained
            except UpstreamError as exc:
                log.debug("endpoint '%s': context length probe failed: %s", self.name, exc)
                if exc.retryable:
                    return  # the server is down or busy: ask again next time
                tokens = 0
            self._context_known = True
            if tokens:
                self._set_context_length(tokens)
            else:
                log.info(
                    "endpoint '%s' does not report its context window; assuming %d tokens "
                    "(set context_length on the endpoint)",
                    self.name,
                    self.capabilities.context_length,
                )

    async def _props_context(self) -> int:
        response = await self._request("GET", f"{self.root_url}/props", allow_404=True)
        if response.status_code == 404:
            return 0
        return context_from_props(self._decode(response))

    # --- streaming ----------------------------------------------------------------------

    async def _deltas(
        self, path: str, body: dict[str, Any], *, chat: bool
    ) -> AsyncGenerator[Delta, None]:
        """Deltas of one SSE stream; the last one always carries a finish_reason."""
        parser = SseParser(self.name)
        final: Delta | None = None
        usage: Usage | None = None
        async with aclosing(self._lines(f"{self.base_url}{path}", body)) as lines:
            async for line in lines:
                event = parser.feed(line)
                if parser.done:
                    break
                if event is None:
                    continue
                usage = parse_usage(event.get("usage")) or usage
                choices = event.get("choices")
                choice = choices[0] if isinstance(choices, list) and choices else {}
                if chat:
                    delta = choice.get("delta") or {}
                    text = delta.get("content") or ""
                    tool_calls = delta.get("tool_calls") or None
                else:
                    text = choice.get("text") or ""
                    tool_calls = None
                reason = choice.get("finish_reason")
                if final is not None:  # only usage is expected after the finish chunk
                    final.text += text
                elif reason:
                    final = Delta(text=text, finish_reason=reason, tool_calls=tool_calls)
                elif text or tool_calls:
                    yield Delta(text=text, tool_calls=tool_calls)
        parser.finish()
        if final is None:
            if not parser.done:
                raise UpstreamError(
                    f"endpoint '{self.name}' ended the stream without a finish_reason",
                    retryable=True,
                    endpoint=self.name,
                )
            final = Delta(finish_reason="stop")
        final.usage = usage
        yield final

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream ``/chat/completions``."""
        await self._learn_context()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            body["stop"] = request.stop
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.seed is not None:
            body["seed"] = request.seed
        if request.response_format is not None:
            body["response_format"] = request.response_format
        async with aclosing(self._deltas("/chat/completions", body, chat=True)) as deltas:
            async for delta in deltas:
                yield delta

    async def fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        """Stream ``/completions``: a rendered template, or ``prompt`` + native ``suffix``."""
        await self._learn_context()
        stop = list(request.stop)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._template is not None:
            body["prompt"] = self._template.render_request(request)
            stop += [s for s in self._template.stop if s not in stop]
            body["cache_prompt"] = True  # llama.cpp: keep the slot's KV for the next keystroke
            if request.n_indent > 0:
                body["n_indent"] = request.n_indent  # llama.cpp; other servers ignore it
        else:
            body["prompt"] = context_block(None, request.files) + request.prefix + request.middle
            body["suffix"] = request.suffix
        if stop:
            body["stop"] = stop
        async with aclosing(self._deltas("/completions", body, chat=False)) as deltas:
            async for delta in deltas:
                yield delta

    # --- whole answers ------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """``/embeddings``, in input order."""
        if not request.inputs:
            return []
        data = await self._json(
            "POST", f"{self.base_url}/embeddings", {"model": self.model, "input": request.inputs}
        )
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(request.inputs):
            raise UpstreamError(
                f"endpoint '{self.name}' returned {len(items) if isinstance(items, list) else 0} "
                f"embeddings for {len(request.inputs)} inputs",
                retryable=True,
                endpoint=self.name,
            )
        try:
            ordered = sorted(items, key=lambda item: int(item.get("index", 0)))
            return [[float(x) for x in item["embedding"]] for item in ordered]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(
                f"endpoint '{self.name}' sent malformed embeddings ({exc!r})",
                retryable=True,
                endpoint=self.name,
            ) from None

    async def rerank(self, request: RerankRequest) -> list[RerankResult]:
        """``/rerank`` (Jina/Cohere/llama.cpp body), best first."""
        body: dict[str, Any] = {
            "model": self.model,
            "query": request.query,
            "documents": request.documents,
        }
        if request.top_n is not None:
            body["top_n"] = request.top_n
        response = await self._request("POST", f"{self.base_url}/rerank", body, allow_404=True)
        if response.status_code == 404:  # llama.cpp also serves it at the root; Jina at /v1
            other = self.root_url if self.root_url != self.base_url else f"{self.base_url}/v1"
            response = await self._request("POST", f"{other}/rerank", body)
        return _rerank_results(self._decode(response), self.name)

    # --- health -------------------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /models``, or ``/health`` at the server root when /models is 404."""
        start = time.perf_counter()
        try:
            response = await self._request("GET", f"{self.base_url}/models", allow_404=True)
            if response.status_code == 404:
                await self._request("GET", f"{self.root_url}/health")
            elif not self._context_known:
                await self._learn_context(self._decode(response))
        except (UpstreamError, ConfigError) as exc:
            latency = (time.perf_counter() - start) * 1000
            return Health(ok=False, detail=exc.message, latency_ms=latency)
        latency = (time.perf_counter() - start) * 1000
        return Health(ok=True, detail=f"HTTP {response.status_code}", latency_ms=latency)


def _rerank_results(data: Any, endpoint: str) -> list[RerankResult]:
    items = data.get("results", data.get("data")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UpstreamError(
            f"endpoint '{endpoint}' sent a rerank answer without results", endpoint=endpoint
        )
    try:
        results = [
            RerankResult(
                index=int(item["index"]),
                score=float(item.get("relevance_score", item.get("score", 0.0))),
            )
            for item in items
        ]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UpstreamError(
            f"endpoint '{endpoint}' sent malformed rerank results ({exc!r})", endpoint=endpoint
        ) from None
    return sorted(results, key=lambda r: r.score, reverse=True)

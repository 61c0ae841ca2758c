"""Ollama endpoints, through Ollama's native API (``/api/generate``, ``/api/chat``, ``/api/embed``).

FIM sends ``suffix`` and lets Ollama apply the model's own FIM template, unless a
``fim_template`` is configured: then the rendered prompt goes ``raw``.

Ollama silently truncates prompts longer than its ``num_ctx`` (2048 on many versions),
so before each request we estimate the prompt at 3.5 characters a token (a cheap,
tokenizer-free guess; code runs about 3-4) and warn when it would not fit. An estimate
over the model's trained context raises ``ContextLengthExceeded``. A configured
``context_length`` is always sent as ``options.num_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from mimiverse.errors import ConfigError, ContextLengthExceeded, MimiError, UpstreamError
from mimiverse.gateway.backends._http import (
    HttpBackend,
    capabilities_for,
    parse_ndjson,
    resolve_fim_template,
    upstream_message,
)
from mimiverse.gateway.base import (
    ChatRequest,
    Delta,
    EmbedRequest,
    FimRequest,
    Health,
    Usage,
)
from mimiverse.gateway.fim_templates import context_block
from mimiverse.settings import EndpointSettings

log = logging.getLogger("mimiverse.gateway.ollama")

DEFAULT_URL = "http://127.0.0.1:11434"
DEFAULT_NUM_CTX = 2048
"""Ollama's ``num_ctx`` when neither the endpoint nor the model's parameters set one."""
CHARS_PER_TOKEN = 3.5


def estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, estimated at 3.5 characters a token."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def context_from_show(data: Any) -> tuple[int, int]:
    """(trained context, ``num_ctx`` parameter) from ``/api/show``; 0 when absent."""
    if not isinstance(data, dict):
        return 0, 0
    trained = 0
    info = data.get("model_info")
    if isinstance(info, dict):
        arch = info.get("general.architecture")
        value = info.get(f"{arch}.context_length")
        if not isinstance(value, int):
            value = next((v for k, v in info.items() if k.endswith(".context_length")), 0)
        trained = value if isinstance(value, int) else 0
    num_ctx = 0
    parameters = data.get("parameters")
    if isinstance(parameters, str):
        for line in parameters.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "num_ctx" and parts[1].isdigit():
                num_ctx = int(parts[1])
    return trained, num_ctx


def _text_of(content: Any) -> str:
    """OpenAI message content (string or parts) → plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat messages → Ollama's (string content, tool arguments as objects)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {
            "role": message.get("role", "user"),
            "content": _text_of(message.get("content")),
        }
        calls = []
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            arguments = function.get("arguments") or {}
            if isinstance(arguments, str):
                with contextlib.suppress(ValueError):  # not JSON: send the text as it is
                    arguments = json.loads(arguments) if arguments.strip() else {}
            names[str(call.get("id", ""))] = str(function.get("name", ""))
            calls.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
        if calls:
            item["tool_calls"] = calls
        if item["role"] == "tool":
            name = message.get("name") or names.get(str(message.get("tool_call_id", "")))
            if name:
                item["tool_name"] = name
        out.append(item)
    return out


def openai_tool_calls(calls: Any, first_index: int) -> list[dict[str, Any]]:
    """Ollama ``message.tool_calls`` → OpenAI stream tool-call deltas."""
    if not isinstance(calls, list):
        return []
    out = []
    for offset, call in enumerate(c for c in calls if isinstance(c, dict)):
        function = call.get("function") or {}
        arguments = function.get("arguments", {})
        out.append(
            {
                "index": first_index + offset,
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return out


class OllamaBackend(HttpBackend):
    """An Ollama server."""

    kind = "ollama"

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout_s: float = 2.0,
    ) -> None:
        base = (settings.url or DEFAULT_URL).rstrip("/")
        base = base.removesuffix("/v1").removesuffix("/api")
        self._template = resolve_fim_template(settings, detect=False)
        caps = capabilities_for(
            settings, self._template, default_context=DEFAULT_NUM_CTX, rerank=False
        )
        super().__init__(
            settings,
            caps,
            base_url=base,
            transport=transport,
            connect_timeout_s=connect_timeout_s,
        )
        if "rerank" in settings.tasks:
            log.warning("endpoint '%s': Ollama has no rerank API; not routing rerank", self.name)
        self.trained_context = 0
        """The model's trained context window, learned from ``/api/show`` (0 = unknown)."""
        self._known = False
        self._lock = asyncio.Lock()

    def _status_error(self, status: int, body: bytes) -> MimiError:
        message, _ = upstream_message(body)
        if status == 404 and "not found" in message.lower():
            return UpstreamError(
                f"endpoint '{self.name}': Ollama has no model '{self.model}' ({message}): "
                f"run `ollama pull {self.model}` on that server",
                retryable=False,
                endpoint=self.name,
                upstream_status=status,
            )
        return super()._status_error(status, body)

    # --- context ------------------------------------------------------------------------

    async def _learn(self) -> None:
        """Ask ``/api/show`` once for the trained context and any ``num_ctx`` parameter."""
        if self._known:
            return
        async with self._lock:
            if self._known:
                return
            try:
                data = await self._json("POST", f"{self.base_url}/api/show", {"model": self.model})
            except UpstreamError as exc:
                if exc.retryable or exc.details.get("upstream_status") == 404:
                    raise
                log.warning("endpoint '%s': /api/show failed, context unknown: %s", self.name, exc)
                data = {}
            trained, num_ctx = context_from_show(data)
            self.trained_context = trained
            configured = self.settings.context_length
            if configured and trained and configured > trained:
                log.warning(
                    "endpoint '%s': context_length %d is more than model '%s' was trained on (%d)",
                    self.name,
                    configured,
                    self.model,
                    trained,
                )
            self._set_context_length(configured or num_ctx or DEFAULT_NUM_CTX)
            self._known = True

    async def _check_fits(self, chars: int, max_tokens: int) -> None:
        """Raise when the prompt cannot fit the model; warn when Ollama would truncate it."""
        await self._learn()
        tokens = estimate_tokens(chars)
        if self.trained_context and tokens > self.trained_context:
            raise ContextLengthExceeded(
                f"prompt is about {tokens} tokens (estimated at {CHARS_PER_TOKEN} characters a "
                f"token), model '{self.model}' takes {self.trained_context}: shorten the input",
                endpoint=self.name,
                prompt_tokens=tokens,
                context_length=self.trained_context,
            )
        num_ctx = self.capabilities.context_length
        if tokens + max_tokens > num_ctx:
            log.warning(
                "endpoint '%s': prompt is about %d tokens plus %d to generate, but Ollama runs "
                "'%s' with num_ctx=%d and silently truncates the prompt: set context_length on "
                "the endpoint (sent as options.num_ctx)%s",
                self.name,
                tokens,
                max_tokens,
                self.model,
                num_ctx,
                f", up to {self.trained_context}" if self.trained_context else "",
            )

    def _options(self, max_tokens: int, temperature: float, stop: list[str]) -> dict[str, Any]:
        options: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature}
        if stop:
            options["stop"] = stop
        if self.settings.context_length:
            options["num_ctx"] = self.settings.context_length
        return options

    # --- streaming ----------------------------------------------------------------------

    async def _deltas(
        self, path: str, body: dict[str, Any], *, chat: bool
    ) -> AsyncGenerator[Delta, None]:
        """Deltas of one NDJSON stream; the last one always carries a finish_reason."""
        final: Delta | None = None
        calls = 0
        async with aclosing(self._lines(f"{self.base_url}{path}", body)) as lines:
            async for line in lines:
                item = parse_ndjson(line, self.name)
                if item is None:
                    continue
                tool_calls = None
                if chat:
                    message = item.get("message") or {}
                    text = message.get("content") or ""
                    tool_calls = openai_tool_calls(message.get("tool_calls"), calls) or None
                    calls += len(tool_calls or [])
                else:
                    text = item.get("response") or ""
                if item.get("done"):
                    reason = "tool_calls" if calls else item.get("done_reason") or "stop"
                    usage = Usage(
                        prompt_tokens=int(item.get("prompt_eval_count") or 0),
                        completion_tokens=int(item.get("eval_count") or 0),
                    )
                    final = Delta(text, reason, tool_calls, usage)
                    break
                if text or tool_calls:
                    yield Delta(text=text, tool_calls=tool_calls)
        if final is None:
            raise UpstreamError(
                f"endpoint '{self.name}' ended the stream before done",
                retryable=True,
                endpoint=self.name,
            )
        yield final

    async def fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        """Stream ``/api/generate`` with ``suffix`` (or a raw template prompt)."""
        context = sum(len(f.text) + len(f.path) for f in request.files)
        await self._check_fits(
            len(request.prefix) + len(request.suffix) + context, request.max_tokens
        )
        stop = list(request.stop)
        body: dict[str, Any] = {"model": self.model, "stream": True}
        if self._template is not None:
            body["prompt"] = self._template.render_request(request)
            body["raw"] = True
            stop += [s for s in self._template.stop if s not in stop]
        else:
            # Ollama applies the model's own FIM template: related files go at the top of
            # the prefix as commented-path blocks.
            body["prompt"] = context_block(None, request.files) + request.prefix + request.middle
            body["suffix"] = request.suffix
            body["raw"] = False
        body["options"] = self._options(request.max_tokens, request.temperature, stop)
        async with aclosing(self._deltas("/api/generate", body, chat=False)) as deltas:
            async for delta in deltas:
                yield delta

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream ``/api/chat``. ``tool_choice`` has no Ollama equivalent and is not sent."""
        chars = sum(len(_text_of(m.get("content"))) for m in request.messages)
        if request.tools:
            chars += len(json.dumps(request.tools))
        await self._check_fits(chars, request.max_tokens)
        options = self._options(request.max_tokens, request.temperature, request.stop)
        options["top_p"] = request.top_p
        if request.seed is not None:
            options["seed"] = request.seed
        body: dict[str, Any] = {
            "model": self.model,
            "messages": ollama_messages(request.messages),
            "stream": True,
            "options": options,
        }
        if request.tools:
            body["tools"] = request.tools
        fmt = _ollama_format(request.response_format)
        if fmt is not None:
            body["format"] = fmt
        async with aclosing(self._deltas("/api/chat", body, chat=True)) as deltas:
            async for delta in deltas:
                yield delta

    # --- whole answers ------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """``/api/embed``, in input order."""
        if not request.inputs:
            return []
        body: dict[str, Any] = {"model": self.model, "input": request.inputs}
        if self.settings.context_length:
            body["options"] = {"num_ctx": self.settings.context_length}
        data = await self._json("POST", f"{self.base_url}/api/embed", body)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(request.inputs):
            raise UpstreamError(
                f"endpoint '{self.name}' returned "
                f"{len(vectors) if isinstance(vectors, list) else 0} embeddings for "
                f"{len(request.inputs)} inputs",
                retryable=True,
                endpoint=self.name,
            )
        try:
            return [[float(x) for x in vector] for vector in vectors]
        except (TypeError, ValueError) as exc:
            raise UpstreamError(
                f"endpoint '{self.name}' sent malformed embeddings ({exc!r})",
                retryable=True,
                endpoint=self.name,
            ) from None

    async def health(self) -> Health:
        """``GET /api/version``, or ``/api/tags`` when that is 404."""
        start = time.perf_counter()
        try:
            response = await self._request("GET", f"{self.base_url}/api/version", allow_404=True)
            if response.status_code == 404:
                response = await self._request("GET", f"{self.base_url}/api/tags")
        except (UpstreamError, ConfigError) as exc:
            latency = (time.perf_counter() - start) * 1000
            return Health(ok=False, detail=exc.message, latency_ms=latency)
        latency = (time.perf_counter() - start) * 1000
        return Health(ok=True, detail=f"HTTP {response.status_code}", latency_ms=latency)


def _ollama_format(response_format: dict[str, Any] | None) -> Any:
    """OpenAI ``response_format`` → Ollama ``format`` ("json" or a JSON schema)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return spec.get("schema", spec) if isinstance(spec, dict) else "json"
    return None

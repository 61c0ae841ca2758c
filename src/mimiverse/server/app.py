"""The FastAPI app factory: routes, one error handler, body limits, HTTP metrics."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mimiverse import __version__
from mimiverse.errors import InvalidJSON, MimiError, RateLimited, Unauthorized
from mimiverse.gateway.service import Gateway
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mimiverse.accounts.service import Accounts


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    """The Mimiverse HTTP app. Builds the gateway from settings unless one is given."""
    settings = settings or Settings()
    from mimiverse.server.security import check_production

    check_production(settings)
    from mimiverse.observability import install_log_redaction

    install_log_redaction(settings.session_secret, settings.api_token)
    if gateway is None:
        from mimiverse.gateway.factory import build_gateway

        gateway = build_gateway(settings)
    gw = gateway

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start(preload=settings.embedded_preload)
        index = None
        if settings.index_on_start:
            from mimiverse.index.service import IndexService, build_indexer

            index = IndexService(build_indexer(settings, gw), watch=settings.index_watch)
            await index.start()
        app.state.index = index
        try:
            async with contextlib.AsyncExitStack() as stack:
                for enter in app.state.lifespan_contexts:
                    await stack.enter_async_context(enter())
                yield
        finally:
            await app.state.completer.close()
            if app.state.accounts is not None:
                app.state.accounts.close()
                app.state.accounts = None
            if index is not None:
                await index.close()
            await gw.close()

    app = FastAPI(title="Mimiverse", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.gateway = gw
    app.state.started = time.time()
    app.state.index = None
    app.state.lifespan_contexts = []
    """Async context factories entered for the app's life (the MCP session manager …)."""
    app.state.accounts = None
    from mimiverse.workspace.roots import Workspaces

    app.state.workspaces = Workspaces(settings)
    from mimiverse.server.ratelimit import Limiter

    app.state.limiter = Limiter.from_settings(settings)
    from mimiverse.complete.service import build_completer

    app.state.completer = build_completer(settings, gw, lambda: app.state.index)
    _install_error_handlers(app)
    _install_middleware(app, settings)

    from mimiverse.server.routes import (
        admin,
        agent,
        ai,
        auth,
        cache,
        codebase,
        health,
        openai,
        usage,
    )

    for module in (health, auth, admin, usage, openai, ai, cache, codebase, agent):
        app.include_router(module.router)
    from mimiverse.server.routes import projects, terminal

    app.include_router(projects.router)
    app.include_router(terminal.router)
    app.state.indexes = None
    """auth=accounts: the per-project IndexRegistry, while the app runs."""
    app.state.lifespan_contexts.append(lambda: codebase.index_lifespan(app))
    app.state.lifespan_contexts.append(lambda: agent.agent_lifespan(app))
    from mimiverse.server.routes import mesh

    app.include_router(mesh.router)
    app.state.mesh = None
    """The running MeshService while the app runs, when ``settings.mesh`` is on."""
    if settings.mesh:
        app.state.lifespan_contexts.append(lambda: mesh.mesh_lifespan(app))
    from mimiverse.server.metrics_series import series_lifespan
    from mimiverse.server.routes import files, metrics, prefs

    for module in (files, prefs, metrics):
        app.include_router(module.router)
    app.state.lifespan_contexts.append(lambda: files.watch_lifespan(app))
    app.state.lifespan_contexts.append(lambda: series_lifespan(app))
    from mimiverse.server.limiting import limits_lifespan

    # First in, last out: the usage of everything that stops before it is written.
    app.state.lifespan_contexts.insert(0, lambda: limits_lifespan(app))
    from mimiverse.mcp.http import mount_mcp

    mount_mcp(app)
    from mimiverse.server.web import mount_web

    mount_web(app)  # after every API route and /mcp: the IDE's files never shadow them
    from mimiverse.server import openapi as openapi_doc

    openapi_doc.install(app)  # last: documents the errors of every router included above
    return app


def error_response(exc: MimiError) -> JSONResponse:
    """The one way errors become HTTP responses."""
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="mimiverse"'}
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MimiError)
    async def _mimi(request: Request, exc: MimiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_explain(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = MimiError(str(exc.detail))
        err.status, err.code = exc.status_code, "http_error"
        response = error_response(err)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # FastAPI names the methods of one route, not the path's
            from mimiverse.server.openapi import allowed_methods

            if methods := allowed_methods(app, request.url.path):
                response.headers["Allow"] = ", ".join(methods)
        return response


def _explain(errors: Any) -> MimiError:
    """A validation failure as one message that says what to fix."""
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return InvalidJSON(
                f"request body is not valid JSON ({ctx.get('error', 'parse error')}): "
                "send a JSON object with Content-Type: application/json"
            )
    problems = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return InvalidJSON(
        "invalid request: " + "; ".join(problems) + ". Fix these fields and send again",
        fields=[".".join(str(p) for p in e.get("loc", ())) for e in errors],
    )


def accounts_of(app: FastAPI) -> Accounts:
    """The app's accounts service, opened on first use."""
    accounts: Accounts | None = app.state.accounts
    if accounts is None:
        from mimiverse.accounts.service import Accounts

        accounts = Accounts(app.state.settings)
        app.state.accounts = accounts
    return accounts


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    from mimiverse.server.auth import AuthGuard
    from mimiverse.server.limiting import RateLimits

    # The last added runs first: size and metrics, then who is calling, then their limits.
    app.add_middleware(RateLimits, settings=settings)
    app.add_middleware(AuthGuard, settings=settings, accounts=lambda: accounts_of(app))
    app.add_middleware(LimitsAndMetrics, limit=settings.max_body_bytes)


class LimitsAndMetrics:
    """Refuse oversized bodies; count and time every HTTP request by route.

    Plain ASGI rather than ``@app.middleware``: BaseHTTPMiddleware costs a task and a
    memory stream per request, which shows on sub-millisecond cache hits.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(self._too_large(value.decode()))(scope, receive, send)
                return
        status = 500
        received, started, overflow = 0, False, False

        async def counted_receive() -> Message:
            # A chunked body has no Content-Length to check up front: count what arrives.
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit and not started:
                    overflow = True
                    raise StarletteHTTPException(413)
            return message

        async def send_and_record(message: Message) -> None:
            nonlocal status, started
            if overflow:  # the app answers a body it could not read: answer 413 instead
                if message["type"] == "http.response.start":
                    status = 413
                    await error_response(self._too_large(f"over {self.limit}"))(
                        scope, receive, send
                    )
                return
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, counted_receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics = scope["app"].state.gateway.metrics
            metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            metrics.http_latency.labels(scope["method"], route).observe(time.perf_counter() - began)

    def _too_large(self, size: str) -> MimiError:
        err = MimiError(
            f"request body is {size} bytes; the limit is {self.limit}: "
            "send less (or raise MIMI_MAX_BODY_BYTES)"
        )
        err.status, err.code = 413, "request_too_large"
        return err


def dumps(value: Any) -> str:
    """Compact JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

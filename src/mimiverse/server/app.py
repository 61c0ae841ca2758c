"""The FastAPI app factory: routes, one error handler, body limits, HTTP metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mimiverse import __version__
from mimiverse.errors import InvalidJSON, MimiError
from mimiverse.gateway.service import Gateway
from mimiverse.settings import Settings


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    """The Mimiverse HTTP app. Builds the gateway from settings unless one is given."""
    settings = settings or Settings()
    if gateway is None:
        from mimiverse.gateway.factory import build_gateway

        gateway = build_gateway(settings)
    gw = gateway

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start(preload=settings.embedded_preload)
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="Mimiverse", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.gateway = gw
    app.state.started = time.time()
    _install_error_handlers(app)
    _install_middleware(app, settings)

    from mimiverse.server.routes import ai, cache, health, openai

    for module in (health, openai, ai, cache):
        app.include_router(module.router)
    return app


def error_response(exc: MimiError) -> JSONResponse:
    """The one way errors become HTTP responses."""
    return JSONResponse(exc.to_dict(), status_code=exc.status)


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
        return error_response(err)


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


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    limit = settings.max_body_bytes

    @app.middleware("http")
    async def _limits_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            err = MimiError(
                f"request body is {length} bytes; the limit is {limit}: "
                "send less (or raise MIMI_MAX_BODY_BYTES)"
            )
            err.status, err.code = 413, "request_too_large"
            return error_response(err)
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics = request.app.state.gateway.metrics
        metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.http_latency.labels(request.method, path).observe(time.perf_counter() - began)
        return response


def dumps(value: Any) -> str:
    """Compact JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

"""Streamable-HTTP MCP at /mcp, behind a bearer token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mimiverse.errors import MimiError
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mcp.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def mount_mcp(app: FastAPI) -> None:
    """Serve MCP at ``/mcp`` on ``app``: the tools, files and prompts of ``project_root``.

    The SDK's session manager runs for the app's life (its ``run()`` joins
    ``app.state.lifespan_contexts``); requests without the bearer token get a 401.
    """
    settings: Settings = app.state.settings
    endpoint = McpEndpoint(settings, lambda: _build_server(app))
    app.state.mcp = endpoint
    app.state.lifespan_contexts.append(endpoint.running)
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, name="mcp"))


def _build_server(app: FastAPI) -> Server[None]:
    from mimiverse.mcp.server import create_server

    settings: Settings = app.state.settings

    def indexer() -> Any:
        index = app.state.index
        return index.indexer if index is not None else None

    return create_server(
        settings, settings.project_root, gateway=app.state.gateway, indexer=indexer
    )


class McpEndpoint:
    """The ASGI endpoint at /mcp: checks the token, then hands over to the session manager."""

    def __init__(self, settings: Settings, build_server: Callable[[], Server[None]]) -> None:
        self.settings = settings
        self._build_server = build_server
        self._token = ""
        self.manager: StreamableHTTPSessionManager | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run a fresh session manager (one per app lifespan; the SDK's run only once each)."""
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        manager = StreamableHTTPSessionManager(
            app=self._build_server(), security_settings=_security(self.settings)
        )
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    def token(self) -> str:
        """The bearer token clients must send (resolved on first use)."""
        if not self._token:
            from mimiverse.mcp.auth import api_token

            self._token = api_token(self.settings)
        return self._token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await _error(
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'; "
                "`mimiverse mcp --print-token` prints the token (or set MIMI_API_TOKEN)",
                {"WWW-Authenticate": 'Bearer realm="mimiverse"'},
            )(scope, receive, send)
            return
        if self.manager is None:
            await _error(
                503, "mcp_not_running", "MCP is not running: the server is starting or stopping"
            )(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        from mimiverse.mcp.auth import token_matches

        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and token_matches(given.strip(), self.token())
        return False


def _security(settings: Settings) -> TransportSecuritySettings | None:
    """Host/Origin checks against DNS rebinding when bound to loopback (as the SDK does)."""
    from mcp.server.transport_security import TransportSecuritySettings

    if settings.host not in LOOPBACK:
        return None  # the bearer token is the guard; Host names are not known here
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    err = MimiError(message)
    err.status, err.code = status, code
    return JSONResponse(err.to_dict(), status_code=status, headers=headers)

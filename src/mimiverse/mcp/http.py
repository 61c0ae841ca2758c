"""Streamable-HTTP MCP at /mcp: each caller works on a project of their own.

The app's AuthGuard runs first: it lets through only bearer tokens with the ``mcp``
scope and leaves the caller's :class:`Principal` in ``scope["state"]``. This endpoint then
picks the request's project (``?project=<owner>/<name>`` on the URL or the
``X-Mimi-Project`` header, else the caller's default) through ``Workspaces.project``, so
nobody reaches a project they may not use; binds every MCP session id to the user and
project that opened it (:mod:`mimiverse.mcp.sessions`); and hands the request to the
SDK's session manager with the project in ``scope["state"]`` for the server's handlers.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from mimiverse.errors import BadRequest, MimiError, Unauthorized
from mimiverse.mcp.sessions import Owner, SessionOwners
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mcp.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    from mimiverse.accounts.principal import Principal
    from mimiverse.workspace.roots import Workspaces

MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROJECT_PARAM = "project"
"""Query parameter naming the project: ``/mcp?project=alice/app``."""
PROJECT_HEADER = "x-mimi-project"
"""Header naming the project, for clients that cannot change the URL."""
SESSION_HEADER = b"mcp-session-id"


def mount_mcp(app: FastAPI) -> None:
    """Serve MCP at ``/mcp`` on ``app``: the tools, files and prompts of the caller's project.

    The SDK's session manager runs for the app's life (its ``run()`` joins
    ``app.state.lifespan_contexts``).
    """
    settings: Settings = app.state.settings
    endpoint = McpEndpoint(settings, lambda: _build_server(app), lambda: app.state.workspaces)
    app.state.mcp = endpoint
    app.state.lifespan_contexts.append(endpoint.running)
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, name="mcp"))


def _build_server(app: FastAPI) -> Server[None]:
    from mimiverse.mcp.server import create_server
    from mimiverse.server.deps import indexer_lookup

    settings: Settings = app.state.settings
    return create_server(
        settings, None, gateway=app.state.gateway, indexer=indexer_lookup(app.state)
    )


class McpEndpoint:
    """The ASGI endpoint at /mcp: chooses the project, guards sessions, runs the SDK."""

    def __init__(
        self,
        settings: Settings,
        build_server: Callable[[], Server[None]],
        workspaces: Callable[[], Workspaces],
    ) -> None:
        self.settings = settings
        self._build_server = build_server
        self._workspaces = workspaces
        self.owners = SessionOwners()
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
                self.owners = SessionOwners()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mimiverse.mcp.server import PROJECT_STATE

        try:
            principal = _principal(scope)
            project = self._workspaces().project(principal, _project_ref(scope))
            owner = Owner(principal.user_id, project.root.resolve(), project.ref)
            session_id = _header(scope, SESSION_HEADER)
            if session_id:
                self.owners.check(session_id, owner)
        except MimiError as exc:
            await _error(exc)(scope, receive, send)
            return
        manager = self.manager
        if manager is None:
            err = MimiError("MCP is not running: the server is starting or stopping")
            err.status, err.code = 503, "mcp_not_running"
            await _error(err)(scope, receive, send)
            return
        scope.setdefault("state", {})[PROJECT_STATE] = project
        await manager.handle_request(scope, receive, self._watch(scope, send, owner, session_id))

    def _watch(self, scope: Scope, send: Send, owner: Owner, session_id: str) -> Send:
        """``send``, binding a session the response opens and forgetting one that ended."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status: int = message["status"]
                if not session_id:
                    opened = _header(message, SESSION_HEADER)
                    if opened and status < 400:
                        self.owners.bind(opened, owner)
                elif status == 404 or (scope.get("method") == "DELETE" and status < 300):
                    self.owners.forget(session_id)
            await send(message)

        return watched


def _principal(scope: Scope) -> Principal:
    """The caller AuthGuard left in the scope (it refuses /mcp calls without one)."""
    principal: Principal | None = scope.get("state", {}).get("principal")
    if principal is None:
        raise Unauthorized(
            "MCP needs a bearer token: send 'Authorization: Bearer <token>' "
            "(`mimiverse mcp --print-token`, or an API token with the mcp scope)"
        )
    return principal


def _project_ref(scope: Scope) -> str | None:
    """The project a request names (query parameter or header); None for the default."""
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    in_query = [v.strip() for v in query.get(PROJECT_PARAM, [])]
    in_header = _header(scope, PROJECT_HEADER.encode()).strip()
    named = {v for v in [*in_query, in_header] if v}
    if len(named) > 1:
        raise BadRequest(
            f"the MCP request names several projects ({', '.join(sorted(named))}): name one, "
            f"with ?{PROJECT_PARAM}=<owner>/<name> or the X-Mimi-Project header"
        )
    return named.pop() if named else None


def _header(scope: Scope | Message, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _security(settings: Settings) -> TransportSecuritySettings | None:
    """Host/Origin checks against DNS rebinding when bound to loopback (as the SDK does)."""
    from mcp.server.transport_security import TransportSecuritySettings

    if settings.host not in LOOPBACK:
        return None  # AuthGuard and the bearer token guard; Host names are not known here
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def _error(exc: MimiError) -> JSONResponse:
    """A refusal as a JSON-RPC error (MCP clients show its message) with the HTTP status."""
    from mcp_types import INTERNAL_ERROR, INVALID_REQUEST

    headers = {"WWW-Authenticate": 'Bearer realm="mimiverse"'} if exc.status == 401 else None
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": INVALID_REQUEST if exc.status < 500 else INTERNAL_ERROR,
            "message": exc.message,
            "data": {"status": exc.status, "type": exc.code, **exc.details},
        },
    }
    return JSONResponse(body, status_code=exc.status, headers=headers)

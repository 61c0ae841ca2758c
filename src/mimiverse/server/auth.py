"""Who may call what: one ASGI guard in front of every route, default-deny.

Every HTTP and WebSocket request passes here before any route runs, so a route added
later is guarded without doing anything. The guard

1. refuses Host names that are not ours in ``auth=local`` (DNS rebinding);
2. finds the caller: a bearer API token, a session cookie, or (``auth=local`` only) a
   loopback client, the implicit local admin;
3. refuses unauthenticated calls to anything but the public paths, and credentials used
   outside their scopes (``/v1`` needs ``v1``, ``/mcp`` ``mcp``, ``/api/admin`` ``admin``);
4. refuses cross-site writes (CSRF): a foreign ``Origin`` or ``Sec-Fetch-Site:
   cross-site`` on a state-changing request or a WebSocket handshake, and a cookie-borne
   write without the session's ``X-CSRF-Token``;
5. leaves the :class:`Principal` in ``scope["state"]["principal"]`` for the routes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mimiverse.accounts.principal import Principal, local_principal
from mimiverse.errors import Forbidden, MimiError, Unauthorized
from mimiverse.server.clientinfo import client_ip, header, host_name, is_https, is_loopback
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mimiverse.accounts.service import Accounts

SESSION_COOKIE = "mimi_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset(
    {
        "/api/health",
        "/api/auth/login",
        "/api/auth/setup",
        "/api/auth/status",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
    }
)
"""Reachable without credentials (everything else under /api, /v1 and /mcp is not)."""
GUARDED_PREFIXES = ("/api/", "/v1/", "/mcp", "/metrics")


def required_scope(path: str) -> str:
    """The token scope a path needs."""
    if path.startswith("/v1/"):
        return "v1"
    if path == "/mcp" or path.startswith("/mcp/"):
        return "mcp"
    if path.startswith("/api/admin") or path == "/metrics":
        return "admin"
    return "api"


def is_guarded(path: str) -> bool:
    """Whether a path needs credentials."""
    if path in PUBLIC_PATHS:
        return False
    return path.startswith(GUARDED_PREFIXES) or path == "/mcp"


class AuthGuard:
    """The ASGI guard; ``accounts`` is looked up lazily (built with the app's state)."""

    def __init__(self, app: ASGIApp, settings: Settings, accounts: Callable[[], Accounts]) -> None:
        self.app = app
        self.settings = settings
        self.accounts = accounts
        self._local_token: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            principal = self._check(scope)
        except MimiError as exc:
            await _refuse(exc, scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    # --- the checks ---------------------------------------------------------------------

    def _check(self, scope: Scope) -> Principal | None:
        settings = self.settings
        path: str = scope["path"]
        if settings.auth == "local":
            self._check_host(scope)
        principal = self._identify(scope)
        if is_guarded(path):
            if principal is None:
                raise Unauthorized(self._how_to_authenticate(scope))
            scope_name = required_scope(path)
            if scope_name == "mcp" and principal.via != "token":
                raise Unauthorized(
                    "MCP needs a bearer token: send 'Authorization: Bearer <token>' "
                    "(`mimiverse mcp --print-token`, or an API token with the mcp scope)"
                )
            if not principal.allows(scope_name):
                raise Forbidden(
                    f"this credential may not use {path}: it needs the '{scope_name}' scope"
                    + (" and the admin role" if scope_name == "admin" else "")
                )
        self._check_csrf(scope, principal)
        return principal

    def _check_host(self, scope: Scope) -> None:
        host = host_name(scope)
        if not host or is_loopback(host) or host in self.settings.allowed_hosts:
            return
        raise Forbidden(
            f"Host '{host}' is not allowed: in auth=local the server answers only to "
            "loopback names; add the name to MIMI_ALLOWED_HOSTS, or use auth=accounts"
        )

    def _identify(self, scope: Scope) -> Principal | None:
        settings = self.settings
        bearer = _bearer(scope)
        if bearer is not None:
            principal = self._by_token(bearer)
            if principal is None and self._ignores_key(scope):
                return local_principal()
            if principal is None:
                raise Unauthorized(
                    "the bearer token is unknown, expired or revoked: create a new one "
                    "(`mimiverse token create` or POST /api/auth/tokens)"
                    if settings.auth == "accounts"
                    else "wrong bearer token: `mimiverse mcp --print-token` prints the "
                    "server's token (or set MIMI_API_TOKEN)"
                )
            return principal
        if settings.auth == "accounts":
            cookie = _cookie(scope, SESSION_COOKIE)
            return self.accounts().authenticate_session(cookie) if cookie else None
        if is_loopback(client_ip(scope, settings)):
            return local_principal()
        return None

    def _ignores_key(self, scope: Scope) -> bool:
        """auth=local, a loopback client, not /mcp: an OpenAI client's placeholder key.

        Editors and SDKs insist on sending some API key; against a local server it means
        nothing (as with Ollama), and loopback trust already decides. /mcp still needs
        the server's token.
        """
        return (
            self.settings.auth == "local"
            and required_scope(scope["path"]) != "mcp"
            and is_loopback(client_ip(scope, self.settings))
        )

    def _by_token(self, raw: str) -> Principal | None:
        if self.settings.auth == "accounts":
            return self.accounts().authenticate_token(raw)
        from mimiverse.mcp.auth import api_token, token_matches

        if self._local_token is None:
            self._local_token = api_token(self.settings)
        if token_matches(raw, self._local_token):
            return dataclasses.replace(local_principal(), via="token")
        return None

    def _how_to_authenticate(self, scope: Scope) -> str:
        if self.settings.auth == "local":
            return (
                "auth=local serves loopback clients only: connect from this machine, send the "
                "API token as 'Authorization: Bearer <token>', or run with auth=accounts"
            )
        return (
            "log in first (POST /api/auth/login sets a session cookie) or send an API token "
            "as 'Authorization: Bearer <token>'"
        )

    def _check_csrf(self, scope: Scope, principal: Principal | None) -> None:
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        if method in SAFE_METHODS:
            return
        if principal is not None and principal.via == "token":
            return  # a bearer token is not sent by browsers on their own: no ambient authority
        origin = header(scope, "origin")
        if origin and origin != "null" and not self._same_origin(scope, origin):
            raise Forbidden(
                f"cross-origin request from {origin} refused; add it to MIMI_ALLOWED_ORIGINS "
                "if it is yours"
            )
        if origin == "null" or (not origin and header(scope, "sec-fetch-site") == "cross-site"):
            raise Forbidden("cross-site request refused")
        if (
            principal is not None
            and principal.via == "session"
            and method != "WEBSOCKET"
            and is_guarded(scope["path"])  # login and setup: the Origin check is the guard
        ):
            from mimiverse.accounts.tokens import same_secret

            if not same_secret(header(scope, CSRF_HEADER), principal.csrf):
                raise Forbidden(
                    "missing or wrong X-CSRF-Token header: send the csrf value from "
                    "POST /api/auth/login or GET /api/auth/me with every change"
                )

    def _same_origin(self, scope: Scope, origin: str) -> bool:
        if origin in self.settings.allowed_origins:
            return True
        scheme = "https" if is_https(scope, self.settings) else "http"
        host = header(scope, "host")
        if self.settings.trust_proxy_headers and header(scope, "x-forwarded-host"):
            host = header(scope, "x-forwarded-host").split(",")[0].strip()
        return origin.rstrip("/") == f"{scheme}://{host}"


def _bearer(scope: Scope) -> str | None:
    value = header(scope, "authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""  # present but unusable: refused like a wrong token
    return token.strip()


def _cookie(scope: Scope, name: str) -> str:
    from http.cookies import SimpleCookie

    raw = header(scope, "cookie")
    if not raw:
        return ""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


async def _refuse(exc: MimiError, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        # Close before accepting: the client sees the handshake fail (HTTP 403).
        await send({"type": "websocket.close", "code": 4401 if exc.status == 401 else 4403})
        return
    headers = {"WWW-Authenticate": 'Bearer realm="mimiverse"'} if exc.status == 401 else None
    await JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)(scope, receive, send)


def principal_of(request: Request | WebSocket | Any) -> Principal:
    """The caller of a guarded route (the guard has already refused anonymous ones)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise Unauthorized("this route needs credentials")
    return principal

"""Where a request comes from and how: client address and scheme, proxy-aware."""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

from mimiverse.settings import Settings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def header(scope: Scope, name: str) -> str:
    """The first value of a request header ('' when absent)."""
    return _header(scope, name.lower().encode("latin-1"))


def client_ip(scope: Scope, settings: Settings) -> str:
    """The caller's address; the proxy's X-Forwarded-For (first hop) when trusted."""
    if settings.trust_proxy_headers:
        forwarded = _header(scope, b"x-forwarded-for").split(",")[0].strip()
        if forwarded:
            return forwarded
    client = scope.get("client")
    return str(client[0]) if client else ""


def is_https(scope: Scope, settings: Settings) -> bool:
    """Whether the request reached us over HTTPS (directly or through a trusted proxy)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    if settings.trust_proxy_headers:
        return _header(scope, b"x-forwarded-proto").split(",")[0].strip() in ("https", "wss")
    return False


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost' (httpx's test transport says 127.0.0.1)."""
    if address in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(scope: Scope) -> str:
    """The Host header without its port."""
    host = _header(scope, b"host")
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

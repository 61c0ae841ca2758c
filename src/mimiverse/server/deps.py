"""Request-scoped lookups shared by route modules."""

from __future__ import annotations

from fastapi import Request

from mimiverse.gateway.service import Gateway


def gateway_of(request: Request) -> Gateway:
    """The app's gateway."""
    gateway: Gateway = request.app.state.gateway
    return gateway

"""Request-scoped lookups shared by route modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from mimiverse.gateway.service import Gateway

if TYPE_CHECKING:
    from mimiverse.index.indexer import Indexer


def gateway_of(request: Request) -> Gateway:
    """The app's gateway."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def indexer_lookup(state: Any) -> Callable[[Path], Indexer | None]:
    """Each project's own code index, when one is ready (the app's ``state``).

    auth=local: the app's index of ``project_root``; auth=accounts: the per-project
    registry's (``state.indexes``), asked to open one for next time when it has none.
    """
    settings = state.settings
    indexed = Path(settings.project_root).expanduser().resolve()

    def indexer_for(root: Path) -> Indexer | None:
        if settings.auth == "local":
            index = state.index
            if index is None or root.resolve() != indexed:
                return None
            local: Indexer = index.indexer
            return local
        registry = getattr(state, "indexes", None)
        if registry is None:
            return None
        service = registry.peek(root)
        if service is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to open on
                registry.open_soon(root)
            return None
        indexer: Indexer | None = service.indexer if service.ready.is_set() else None
        return indexer

    return indexer_for

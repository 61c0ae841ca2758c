"""Build the completer from settings, with the index's symbol map when the index runs."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mimiverse.complete.context import Budget
from mimiverse.complete.engine import Completer
from mimiverse.complete.feedback import FeedbackStore
from mimiverse.complete.related import Related, SymbolSource
from mimiverse.gateway.service import Gateway
from mimiverse.settings import Settings

if TYPE_CHECKING:
    from mimiverse.index.service import IndexService

log = logging.getLogger("mimiverse.complete")

STORE_FILE = "mimiverse.sqlite3"
"""The project's SQLite store in the data dir (feedback lives in table fim_suggestions)."""


def budget_of(settings: Settings) -> Budget:
    """The token budgets settings ask for."""
    return Budget(
        prefix_tokens=settings.complete_prefix_tokens,
        suffix_tokens=settings.complete_suffix_tokens,
        context_tokens=settings.complete_context_tokens,
        line_tokens=settings.complete_line_tokens,
        block_tokens=settings.complete_block_tokens,
    )


class LazySymbols:
    """The index's symbol map once it is built; building starts on first use, off the
    request path (a first build parses every file), and requests go without until then."""

    def __init__(self, index: Callable[[], IndexService | None]) -> None:
        self._index = index
        self._map: SymbolSource | None = None
        self._building = False
        self._lock = threading.Lock()

    def __call__(self) -> SymbolSource | None:
        if self._map is not None:
            return self._map
        service = self._index()
        if service is None or not service.ready.is_set():
            return None
        with self._lock:
            if not self._building:
                self._building = True
                threading.Thread(
                    target=self._build, args=(service,), name="mimi-symbols", daemon=True
                ).start()
        return None

    def _build(self, service: Any) -> None:
        try:
            self._map = service.indexer.symbol_map()
        except Exception as exc:  # completions work without it
            log.warning("symbol map for completions unavailable: %s", exc)
            self._building = False


def open_feedback(settings: Settings) -> FeedbackStore | None:
    """The feedback store, or None (with a warning) when its file cannot be opened."""
    try:
        return FeedbackStore(settings.data_dir / STORE_FILE)
    except (OSError, sqlite3.Error) as exc:
        log.warning("completion feedback is off: cannot open %s: %s", STORE_FILE, exc)
        return None


def build_completer(
    settings: Settings, gateway: Gateway, index: Callable[[], IndexService | None]
) -> Completer:
    """The completer `mimiverse serve` runs."""
    root = settings.project_root.resolve()
    return Completer(
        gateway,
        budget=budget_of(settings),
        related=Related(root, LazySymbols(index)),
        feedback=open_feedback(settings),
        recent_files=settings.complete_recent_files,
        repo=root.name,
    )

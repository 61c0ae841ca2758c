"""Split a list of items into numbered pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def page_count(total: int, per_page: int) -> int:
    """How many pages ``total`` items fill, ``per_page`` to a page (the last may be short)."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return total // per_page


def page(items: Sequence[T], number: int, per_page: int) -> list[T]:
    """The items on page ``number`` (1-based); an empty list past the last page."""
    if number < 1:
        raise ValueError("pages are numbered from 1")
    start = (number - 1) * per_page
    return list(items[start : start + per_page])

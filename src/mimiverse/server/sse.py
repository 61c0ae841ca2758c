"""Server-sent events: priming a stream so early errors get a real HTTP status."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


def event(data: Any, name: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()


async def prime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Pull the first item now, so errors before the first token raise here (→ 4xx/5xx)
    instead of inside a 200 response; then replay it and the rest."""
    iterator = stream.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return _replay(None, iterator, empty=True)
    return _replay(first, iterator, empty=False)


async def _replay(first: T | None, rest: AsyncIterator[T], *, empty: bool) -> AsyncIterator[T]:
    if empty:
        return
    async with contextlib.aclosing(rest):  # type: ignore[type-var]
        yield first  # type: ignore[misc]
        async for item in rest:
            yield item

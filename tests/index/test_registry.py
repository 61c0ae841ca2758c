"""IndexRegistry: one index per project root, opened on first use, least recently used closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from mimiverse.errors import MimiError
from mimiverse.gateway.base import Capabilities
from mimiverse.index.registry import IndexRegistry
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

WORDS = {"a": "zebra", "b": "walrus", "c": "pangolin"}


def project(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "mod.py").write_text(f"def {WORDS[name]}():\n    return 1\n")
    return root


async def test_each_root_gets_its_own_index_and_the_oldest_is_closed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    gateway = gateway_with(FakeBackend("embed", capabilities=Capabilities(embed=True)))
    registry = IndexRegistry(make_settings(index_watch=False), gateway, limit=2)
    a, b, c = (project(tmp_path, n) for n in ("a", "b", "c"))
    first = await registry.get(a)
    assert await registry.get(a) is first and registry.peek(a) is first
    await asyncio.wait_for(first.ready.wait(), 30)
    hits = await first.indexer.search("zebra", mode="lexical")
    assert [h.path for h in hits.hits] == ["mod.py"]
    assert (await first.indexer.search("walrus", mode="lexical")).hits == []

    await registry.get(b)
    registry.peek(a)  # a is now the most recently used: b goes first
    await registry.get(c)
    assert len(registry) == 2 and b not in registry and a in registry and c in registry
    await registry.get(b)
    assert a not in registry  # least recently used in turn

    await registry.close()
    assert len(registry) == 0
    with pytest.raises(MimiError, match="shutting down"):
        await registry.get(a)
    await gateway.close()

"""Fixtures for the netns mesh tests: a 5-host lab and the peer processes in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .driver import PeerProcess
from .network import Lab, unavailable

HOSTS = 5


@pytest.fixture(scope="session")
def netns_ready() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def lab(netns_ready: None) -> Iterator[Lab]:
    """Five hosts (10.73.1.1–5) on a bridge, each in its own network namespace."""
    with Lab(HOSTS) as made:
        yield made


@pytest.fixture
def spawn(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., PeerProcess]]:
    """``spawn(host, directory, dial=[…], shim="…")`` starts a peer; all stop at the end."""
    started: list[PeerProcess] = []

    def start(host: int, directory: Path, **options: Any) -> PeerProcess:
        peer = PeerProcess(lab, host, directory, log_dir=tmp_path, **options)
        started.append(peer)
        return peer.start()

    yield start
    for peer in started:
        peer.stop()

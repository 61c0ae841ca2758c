"""Fixtures for the mesh transport: device keys, a roster, real nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from nacl.signing import SigningKey

from mimiverse.mesh.transport import Channel, ChannelLimits, MeshNode, PeerReport

MESH = b"test-mesh"
FAST = ChannelLimits(handshake_timeout_s=2.0, ping_interval_s=0)


class Roster:
    """The roster check: a set of allowed device keys."""

    def __init__(self, *keys: SigningKey) -> None:
        self.allowed = {bytes(k.verify_key) for k in keys}

    def __call__(self, key: bytes) -> bool:
        return key in self.allowed


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``check()`` holds (polling), or fail."""
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)


@dataclass
class Peer:
    """A node plus what it received and reported."""

    node: MeshNode
    key: SigningKey
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    reports: list[PeerReport] = field(default_factory=list)
    ups: list[Channel] = field(default_factory=list)
    downs: list[Channel] = field(default_factory=list)

    @property
    def public(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def url(self) -> str:
        return self.node.url()

    def kinds(self) -> list[str]:
        return [r.kind for r in self.reports]


MakePeer = Callable[..., Awaitable[Peer]]


@pytest.fixture
def keys() -> list[SigningKey]:
    return [SigningKey.generate() for _ in range(4)]


@pytest.fixture
async def make_peer() -> AsyncIterator[MakePeer]:
    """``await make_peer(key, roster, listen=True, **node_kwargs)``; all closed at the end."""
    made: list[Peer] = []

    async def make(
        key: SigningKey,
        authorize: Callable[[bytes], bool],
        *,
        listen: bool = True,
        port: int = 0,
        **kw: Any,
    ) -> Peer:
        holder: list[Peer] = []

        async def on_message(peer_key: bytes, message: bytes) -> None:
            holder[0].messages.append((peer_key, message))

        kw.setdefault("limits", FAST)
        node = MeshNode(
            key,
            kw.pop("mesh_id", MESH),
            authorize,
            on_message=kw.pop("on_message", on_message),
            on_peer_up=lambda c: holder[0].ups.append(c),
            on_peer_down=lambda c: holder[0].downs.append(c),
            reporter=lambda r: holder[0].reports.append(r),
            **kw,
        )
        peer = Peer(node, key)
        holder.append(peer)
        if listen:
            await node.listen("127.0.0.1", port)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.node.close()

"""Nodes over real WebSockets: manual peers, reconnect with backoff, health, shutdown."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from nacl.signing import SigningKey

from mimiverse.mesh.transport import Backoff, ChannelClosed, PeerNotConnected

from .conftest import MakePeer, Roster, eventually


def test_backoff_grows_exponentially_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 2.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays[-1] >= 1.0 and len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 0.1


async def test_reconnects_with_backoff_after_the_server_restarts(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    port = server.node.port
    client = await make_peer(a, Roster(b), listen=False, backoff=(0.05, 0.4))
    dialer = client.node.add_peer(server.url)
    await eventually(lambda: client.node.channel(server.public) is not None)
    await client.node.send(server.public, b"before")
    await eventually(lambda: len(server.messages) == 1)

    await server.node.close()
    await eventually(lambda: dialer.failures >= 3, timeout_s=5)
    status = client.node.peers()[0]
    assert not status.connected and status.failures >= 3 and status.last_error
    assert dialer.backoff.attempt >= 3  # the delays grew

    again = await make_peer(b, Roster(a), port=port or 0)
    await eventually(lambda: client.node.channel(server.public) is not None, timeout_s=5)
    assert dialer.connects == 2 and dialer.failures == 0
    await client.node.send(server.public, b"after")
    await eventually(lambda: again.messages == [(client.public, b"after")])
    assert client.ups[0] is not client.ups[1] and len(client.downs) == 1


async def test_two_nodes_dialing_each_other_keep_one_channel(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    node_a = await make_peer(a, Roster(b), backoff=(0.05, 0.2))
    node_b = await make_peer(b, Roster(a), backoff=(0.05, 0.2))
    node_a.node.add_peer(node_b.url)
    node_b.node.add_peer(node_a.url)
    await eventually(lambda: node_a.node.channel(node_b.public) is not None)
    await eventually(lambda: node_b.node.channel(node_a.public) is not None)
    await asyncio.sleep(0.5)  # let duplicates settle
    ca, cb = node_a.node.channel(node_b.public), node_b.node.channel(node_a.public)
    assert ca is not None and cb is not None
    assert ca.session.session_id == cb.session.session_id  # both kept the same connection
    assert len(node_a.node.channels()) == 1 and len(node_b.node.channels()) == 1
    await node_a.node.send(node_b.public, b"ping")
    await node_b.node.send(node_a.public, b"pong")
    await eventually(lambda: node_b.messages == [(node_a.public, b"ping")])
    await eventually(lambda: node_a.messages == [(node_b.public, b"pong")])


async def test_peer_health_and_ping(keys: list[SigningKey], make_peer: MakePeer) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(b), listen=False)
    client.node.add_peer(server.url, expect=server.public)
    await eventually(lambda: client.node.channel(server.public) is not None)
    channel = client.node.channel(server.public)
    assert channel is not None
    await channel.ping()
    [status] = client.node.peers()
    assert status.connected and status.key == server.public and status.direction == "out"
    assert status.rtt_s is not None and status.last_seen is not None and status.failures == 0
    await eventually(lambda: len(server.node.peers()) == 1)
    assert server.node.peers()[0].direction == "in"


async def test_pinned_key_mismatch_fails_the_dial(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b, c = keys[0], keys[1], keys[2]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(b, c), listen=False, backoff=(0.05, 0.1))
    dialer = client.node.add_peer(server.url, expect=bytes(c.verify_key))
    await eventually(lambda: dialer.failures >= 1)
    assert "not the one expected" in dialer.last_error
    assert client.node.channels() == []


async def test_clean_shutdown_flushes_and_says_bye(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(b), listen=False)
    client.node.add_peer(server.url)
    await eventually(lambda: client.node.channel(server.public) is not None)
    for i in range(50):
        await client.node.send(server.public, f"m{i}".encode())
    await client.node.close()
    await eventually(lambda: len(server.downs) == 1)
    assert [m for _, m in server.messages] == [f"m{i}".encode() for i in range(50)]
    assert server.downs[0].close_reason == "peer said bye: node shutting down"
    with pytest.raises(PeerNotConnected, match="not connected"):
        await client.node.send(server.public, b"late")


async def test_only_the_mesh_path_upgrades(keys: list[SigningKey], make_peer: MakePeer) -> None:
    server = await make_peer(keys[1], Roster(keys[0]))
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{server.node.port}/other")
    assert answer.status_code in (400, 404, 426)


async def test_connection_limit(keys: list[SigningKey], make_peer: MakePeer) -> None:
    a, b, c = keys[0], keys[1], keys[2]
    server = await make_peer(b, Roster(a, c), max_connections=1)
    first = await make_peer(a, Roster(b), listen=False)
    second = await make_peer(c, Roster(b), listen=False)
    await first.node.connect(server.url)
    with pytest.raises(ChannelClosed, match="1013 too many peers"):
        await second.node.connect(server.url)
    assert second.reports == []  # a busy peer is not a misbehaving one

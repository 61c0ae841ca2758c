"""Mutual authentication over real WebSockets: who may connect, and what replays achieve."""

from __future__ import annotations

import asyncio

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey
from websockets.asyncio.client import connect

from mimiverse.mesh.transport import (
    ChannelLimits,
    HandshakeFailed,
    Link,
    PeerRefused,
    WebSocketLink,
    initiate,
    memory_pair,
    respond,
)
from mimiverse.mesh.transport.handshake import PROTOCOL, transcript_hash

from .conftest import MESH, MakePeer, Roster, eventually

HELLO, REPLY, AUTH = b"MMH1\x01", b"MMH1\x02", b"MMH1\x03"


class Recorder:
    """A Link that keeps a copy of everything sent and received."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    @property
    def address(self) -> str:
        return self.inner.address

    async def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        await self.inner.send(frame)

    async def recv(self) -> bytes:
        frame = await self.inner.recv()
        self.received.append(frame)
        return frame

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


async def raw_link(url: str) -> WebSocketLink:
    return WebSocketLink(await connect(url, compression=None, proxy=None))


async def test_handshake_proves_both_keys_and_messages_flow(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(b), listen=False)
    channel = await client.node.connect(server.url)
    assert channel.peer_key == server.public
    await eventually(lambda: server.node.channel(client.public) is not None)
    await client.node.send(server.public, b"hello")
    await server.node.send(client.public, b"hi back")
    await eventually(lambda: server.messages == [(client.public, b"hello")])
    await eventually(lambda: client.messages == [(server.public, b"hi back")])
    assert server.node.channel(client.public).session.session_id == channel.session.session_id  # type: ignore[union-attr]
    assert server.reports == [] and client.reports == []


async def test_unauthorized_key_is_refused_and_reported(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    stranger, b = keys[0], keys[1]
    server = await make_peer(b, Roster())  # nobody on the roster
    client = await make_peer(stranger, Roster(b), listen=False)
    with pytest.raises(PeerRefused) as refused:
        await client.node.connect(server.url)
    assert refused.value.by_peer
    await eventually(lambda: server.kinds() == ["refused"])
    assert server.reports[0].peer_key == bytes(stranger.verify_key)
    assert server.node.channels() == []


async def test_client_refuses_a_server_off_its_roster(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(), listen=False)
    with pytest.raises(PeerRefused) as refused:
        await client.node.connect(server.url)
    assert not refused.value.by_peer
    assert client.kinds() == ["refused"]
    await asyncio.sleep(0.05)
    assert server.reports == [] and server.node.channels() == []  # being refused is no offence


async def test_forged_signature_is_refused(keys: list[SigningKey], make_peer: MakePeer) -> None:
    """An attacker claims an authorised device key but can only sign with its own."""
    victim, attacker, b = keys[0], keys[1], keys[2]
    server = await make_peer(b, Roster(victim))
    link = await raw_link(server.url)
    nonce, eph = b"\x11" * 32, bytes(PrivateKey.generate().public_key)
    claimed = bytes(victim.verify_key)
    await link.send(HELLO + bytes((len(MESH),)) + MESH + claimed + nonce + eph)
    reply = await link.recv()
    assert reply.startswith(REPLY)
    body = reply[5:]
    th = transcript_hash(MESH, (claimed, nonce, eph), (body[:32], body[32:64], body[64:96]))
    forged = attacker.sign(PROTOCOL + b" initiator" + th).signature
    await link.send(AUTH + forged)
    refusal = await link.recv()
    assert refusal == b"MMH1\xfffailed"
    await eventually(lambda: server.kinds() == ["handshake_failed"])
    assert "signature" in server.reports[0].detail
    assert server.node.channels() == []


async def test_replayed_handshake_to_the_responder_is_refused(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    """Record a real initiator's HELLO and AUTH, replay them on a new connection."""
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    recorder = Recorder(await raw_link(server.url))
    session = await initiate(recorder, a, MESH, Roster(b))
    assert session.peer_key == bytes(b.verify_key)
    hello, auth = recorder.sent
    await recorder.close()

    replay = await raw_link(server.url)
    await replay.send(hello)
    fresh_reply = await replay.recv()
    assert fresh_reply.startswith(REPLY) and fresh_reply != recorder.received[0]  # fresh nonce
    await replay.send(auth)
    assert await replay.recv() == b"MMH1\xfffailed"
    await eventually(lambda: server.kinds() == ["handshake_failed"])
    await eventually(lambda: server.node.channels() == [])


async def test_replayed_handshake_to_the_initiator_is_refused(keys: list[SigningKey]) -> None:
    """Record a real responder's REPLY and READY, replay them to a new initiator."""
    a, b = keys[0], keys[1]
    la, lb = memory_pair()
    recorder = Recorder(lb)
    await asyncio.gather(initiate(la, a, MESH, Roster(b)), respond(recorder, b, MESH, Roster(a)))
    reply, ready = recorder.sent

    la2, fake = memory_pair()

    async def replaying_responder() -> None:
        await fake.recv()  # the new HELLO, with a fresh nonce
        await fake.send(reply)
        await fake.send(ready)

    task = asyncio.create_task(replaying_responder())
    with pytest.raises(HandshakeFailed, match="signature"):
        await initiate(la2, a, MESH, Roster(b))
    await task


async def test_wrong_mesh_pinned_key_and_self_are_refused(keys: list[SigningKey]) -> None:
    a, b, c = keys[0], keys[1], keys[2]
    everyone = Roster(a, b, c)
    la, lb = memory_pair()
    results = await asyncio.gather(
        initiate(la, a, b"other-mesh", everyone),
        respond(lb, b, MESH, everyone),
        return_exceptions=True,
    )
    assert all(isinstance(r, HandshakeFailed) for r in results)
    assert "wrong mesh" in str(results[0])

    la, lb = memory_pair()
    results = await asyncio.gather(
        initiate(la, a, MESH, everyone, expect=bytes(c.verify_key)),
        respond(lb, b, MESH, everyone),
        return_exceptions=True,
    )
    assert isinstance(results[0], HandshakeFailed) and "not the one expected" in str(results[0])

    la, lb = memory_pair()
    results = await asyncio.gather(
        initiate(la, a, MESH, everyone), respond(lb, a, MESH, everyone), return_exceptions=True
    )
    assert isinstance(results[0], HandshakeFailed)


async def test_low_order_ephemeral_key_is_refused(keys: list[SigningKey]) -> None:
    a, b = keys[0], keys[1]
    la, lb = memory_pair()
    task = asyncio.create_task(respond(lb, b, MESH, Roster(a)))
    nonce, zero_point = b"\x22" * 32, bytes(32)
    await la.send(HELLO + bytes((len(MESH),)) + MESH + bytes(a.verify_key) + nonce + zero_point)
    body = (await la.recv())[5:]
    th = transcript_hash(
        MESH, (bytes(a.verify_key), nonce, zero_point), (body[:32], body[32:64], body[64:96])
    )
    await la.send(AUTH + a.sign(PROTOCOL + b" initiator" + th).signature)
    with pytest.raises(HandshakeFailed, match="low order"):
        await task


async def test_silent_peer_times_out(keys: list[SigningKey]) -> None:
    _la, lb = memory_pair()
    with pytest.raises(HandshakeFailed, match="timed out"):
        await respond(
            lb, keys[1], MESH, Roster(keys[0]), limits=ChannelLimits(handshake_timeout_s=0.1)
        )


async def test_garbage_and_wrong_version_are_refused(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    server = await make_peer(keys[1], Roster(keys[0]))
    for first in (b"GET / HTTP/1.1", b"MMH2\x01" + bytes(100)):
        link = await raw_link(server.url)
        await link.send(first)
        assert (await link.recv()).startswith(b"MMH1\xff")
    await eventually(lambda: server.kinds() == ["handshake_failed", "handshake_failed"])
    assert "version" in server.reports[1].detail


async def test_a_peer_that_refuses_us_is_not_reported(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a))
    client = await make_peer(a, Roster(b), listen=False, mesh_id=b"another-mesh")
    with pytest.raises(HandshakeFailed, match="wrong mesh") as failed:
        await client.node.connect(server.url)
    assert failed.value.details["by_peer"] is True
    assert client.reports == []  # the server did nothing wrong
    await eventually(lambda: server.kinds() == ["handshake_failed"])
    assert "another mesh id" in server.reports[0].detail

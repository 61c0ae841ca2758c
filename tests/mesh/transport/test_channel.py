"""The encrypted channel over real WebSockets: tampering, replays, sizes, floods, backpressure."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import tracemalloc

import pytest
from nacl.signing import SigningKey

from mimiverse.mesh.transport import (
    Channel,
    ChannelClosed,
    FrameTooLarge,
    PeerReport,
    frames,
    initiate,
    memory_pair,
    respond,
)
from mimiverse.mesh.transport.link import CLOSE_BAD_FRAMES, CLOSE_FLOOD, CLOSE_SILENT, CLOSE_TOO_BIG

from .conftest import FAST, MESH, MakePeer, Peer, Roster, eventually


async def pair(
    keys: list[SigningKey], make_peer: MakePeer, **server_kw: object
) -> tuple[Peer, Peer, Channel]:
    """A server node and a client node; returns the client's channel to the server."""
    server = await make_peer(keys[1], Roster(keys[0]), **server_kw)
    client = await make_peer(keys[0], Roster(keys[1]), listen=False)
    channel = await client.node.connect(server.url)
    await eventually(lambda: server.node.channel(client.public) is not None)
    return server, client, channel


async def raw(channel: Channel, kind: int, payload: bytes) -> bytes:
    """Seal and send one frame straight onto the wire (no queue, no pacing); returns it."""
    frame = channel.session.sealer.seal(kind, payload)
    await channel.link.send(frame)
    return frame


async def test_tampered_frame_is_refused_and_reported(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    server, client, channel = await pair(keys, make_peer)
    frame = bytearray(channel.session.sealer.seal(frames.DATA, b"pay me 10"))
    frame[-1] ^= 0x01
    await channel.link.send(bytes(frame))
    forged_counter = bytearray(channel.session.sealer.seal(frames.DATA, b"pay me 20"))
    forged_counter[7] ^= 0x40  # a counter the MAC does not cover
    await channel.link.send(bytes(forged_counter))
    await channel.send(b"still here")
    await eventually(lambda: server.messages == [(client.public, b"still here")])
    assert server.kinds() == ["tampered", "tampered"]
    assert server.reports[0].peer_key == client.public
    inbound = server.node.channel(client.public)
    assert inbound is not None and inbound.stats.rejected["tampered"] == 2
    # a forged high counter did not poison the replay window
    assert inbound.session.opener.window.highest < 100


async def test_replayed_and_too_old_frames_are_refused(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    limits = dataclasses.replace(FAST, replay_window=4)
    server, _client, channel = await pair(keys, make_peer, limits=limits)
    first = await raw(channel, frames.DATA, b"once")
    await channel.link.send(first)  # replayed
    held = channel.session.sealer.seal(frames.DATA, b"late")  # counter 2, sent after 3..8
    for i in range(6):
        await raw(channel, frames.DATA, f"m{i}".encode())
    await channel.link.send(held)  # 6 behind the newest: outside a window of 4
    await eventually(lambda: len(server.messages) == 7 and len(server.reports) == 2)
    assert [m for _, m in server.messages] == [b"once", b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]
    assert server.kinds() == ["replayed", "too_old"]


async def test_reordered_frames_within_the_window_arrive_once(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    server, _client, channel = await pair(keys, make_peer)
    a = channel.session.sealer.seal(frames.DATA, b"a")
    b = channel.session.sealer.seal(frames.DATA, b"b")
    for frame in (b, a, a, b):
        await channel.link.send(frame)
    await eventually(lambda: len(server.reports) == 2 and len(server.messages) == 2)
    assert [m for _, m in server.messages] == [b"b", b"a"]
    assert server.kinds() == ["replayed", "replayed"]


async def test_oversized_messages_are_refused(keys: list[SigningKey], make_peer: MakePeer) -> None:
    limits = dataclasses.replace(FAST, max_message=1024)
    server, _client, channel = await pair(keys, make_peer, limits=limits)
    with pytest.raises(FrameTooLarge, match="split it"):
        await channel.send(b"x" * (FAST.max_message + 1))  # over our own limit: never sent
    await channel.send(b"x" * 1024)  # at the server's limit: fine
    await eventually(lambda: len(server.messages) == 1)
    await raw(channel, frames.DATA, b"x" * 4096)  # over the server's limit
    await eventually(lambda: server.kinds() == ["oversized"])
    await channel.wait_closed()
    inbound_closed = server.ups[0]
    assert inbound_closed.close_code == CLOSE_TOO_BIG
    assert len(server.messages) == 1


async def test_many_bad_frames_disconnect(keys: list[SigningKey], make_peer: MakePeer) -> None:
    limits = dataclasses.replace(FAST, max_rejects=3)
    server, _client, channel = await pair(keys, make_peer, limits=limits)
    frame = await raw(channel, frames.DATA, b"one")
    for _ in range(4):
        await channel.link.send(frame)
    await channel.wait_closed()
    assert channel.close_code == CLOSE_BAD_FRAMES or "bye" in channel.close_reason
    assert server.kinds() == ["replayed"] * 4
    with pytest.raises(ChannelClosed):
        await channel.send(b"more")


async def test_flood_is_disconnected_reported_and_memory_bounded(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    limits = dataclasses.replace(FAST, messages_per_s=200, message_burst=400)
    server, _client, channel = await pair(keys, make_peer, limits=limits)
    tracemalloc.start()
    started = time.monotonic()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sent = 0
        with pytest.raises(ChannelClosed):
            for _ in range(20_000):  # 20 MB if it were all kept
                await raw(channel, frames.DATA, b"f" * 1000)
                sent += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await eventually(lambda: "flood" in server.kinds())
    lasted = time.monotonic() - started
    assert server.ups[0].close_code == CLOSE_FLOOD
    assert sent < 20_000
    assert len(server.messages) <= 400 + 200 * lasted  # the burst, plus the rate while it lasted
    assert peak - base < 4 << 20, f"flood grew memory by {(peak - base) >> 10} KiB"


async def test_a_slow_reader_pushes_back_instead_of_buffering(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    gate = asyncio.Event()

    async def slow(peer_key: bytes, message: bytes) -> None:
        await gate.wait()

    server, client, channel = await pair(keys, make_peer, on_message=slow)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sent = 0

        async def push() -> None:
            nonlocal sent
            while True:
                await channel.send(b"p" * 4096)
                sent += 1

        pusher = asyncio.create_task(push())
        await asyncio.sleep(1.0)
        _, peak = tracemalloc.get_traced_memory()
        inbound = server.node.channel(client.public)
        assert inbound is not None
        assert inbound.queued[1] <= FAST.recv_queue and channel.queued[0] <= FAST.send_queue
        pusher.cancel()
    finally:
        tracemalloc.stop()
    assert sent < 5000, "send() should block once every queue and buffer is full"
    assert peak - base < 8 << 20
    gate.set()


async def test_ping_measures_rtt_and_close_says_bye(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    server, client, channel = await pair(keys, make_peer)
    rtt = await channel.ping()
    assert 0 < rtt < 1 and channel.health.rtt_s == rtt
    await channel.send(b"last words")
    await channel.close("done here")
    await eventually(lambda: server.downs != [])
    assert server.messages == [(client.public, b"last words")]
    assert server.downs[0].close_reason == "peer said bye: done here"


async def test_silent_peer_is_disconnected(keys: list[SigningKey]) -> None:
    a, b = keys[0], keys[1]
    la, lb = memory_pair()
    _, session = await asyncio.gather(
        initiate(la, a, MESH, Roster(b)), respond(lb, b, MESH, Roster(a))
    )
    reports: list[PeerReport] = []
    limits = dataclasses.replace(FAST, ping_interval_s=0.05, idle_timeout_s=0.2)
    channel = Channel(lb, session, limits=limits, reporter=reports.append).start()
    # nobody runs a channel on the other end: our PINGs go unanswered
    await asyncio.wait_for(channel.wait_closed(), 3)
    assert [r.kind for r in reports] == ["silent"]
    assert channel.close_code == CLOSE_SILENT

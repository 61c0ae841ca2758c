"""LAN discovery: TXT records (public facts only), and a real announce/browse on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid

import pytest

from mimiverse.mesh.transport import SERVICE_TYPE, Announcement, Discovery
from mimiverse.mesh.transport.discovery import (
    announcement_of,
    build_properties,
    parse_properties,
    service_info,
    service_name,
)

DEVICE = "a1" * 32  # 64 hex characters, like a device key
MESH = "b2" * 32


def test_properties_round_trip_and_carry_only_ids() -> None:
    properties = build_properties(DEVICE, MESH)
    assert properties == {b"v": b"1", b"dev": DEVICE.encode(), b"mesh": MESH.encode()}
    assert parse_properties(dict(properties)) == (DEVICE, MESH)


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {b"v": b"2", b"dev": b"a", b"mesh": b"m"},  # another version
        {b"v": b"1", b"dev": b"a"},  # no mesh
        {b"v": b"1", b"dev": b"a b", b"mesh": b"m"},  # space
        {b"v": b"1", b"dev": b"\xff", b"mesh": b"m"},  # not ASCII
        {b"v": b"1", b"dev": b"a" * 65, b"mesh": b"m"},  # too long
        {b"v": b"1", b"dev": None, b"mesh": b"m"},  # key without value
    ],
)
def test_invalid_records_are_ignored(properties: dict[bytes, bytes | None]) -> None:
    assert parse_properties(properties) is None


def test_ids_that_cannot_go_in_a_record_are_refused() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        build_properties("has space", MESH)
    with pytest.raises(ValueError, match="letters, digits"):
        build_properties(DEVICE, "x" * 65)


def test_service_info_round_trip() -> None:
    me = Announcement(DEVICE, MESH, 7420, ("127.0.0.1",))
    info = service_info(me)
    assert info.type == SERVICE_TYPE
    assert info.name == service_name(DEVICE) and len(info.name.split(".")[0]) <= 63
    assert announcement_of(info) == me
    assert me.urls == ["ws://127.0.0.1:7420/mesh/v1"]


def _multicast_loops_back() -> bool:
    """Whether an mDNS-style multicast sent on 127.0.0.1 comes back here."""
    group, port = "224.0.0.251", 0
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        recv.bind(("0.0.0.0", port))
        port = recv.getsockname()[1]
        membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
        recv.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        recv.settimeout(1.0)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        send.sendto(b"probe", (group, port))
        return recv.recv(16) == b"probe"
    except OSError:
        return False
    finally:
        recv.close()
        send.close()


async def test_announce_and_browse_on_loopback() -> None:
    if not _multicast_loops_back():
        pytest.skip("multicast does not loop back on 127.0.0.1 here, so mDNS cannot be tested")
    mesh = uuid.uuid4().hex  # other test runs on this host announce other meshes
    dev_a, dev_b = f"a-{mesh}", f"b-{mesh}"
    found: dict[str, list[Announcement]] = {"a": [], "b": []}
    lost: list[str] = []
    a = Discovery(dev_a, mesh, 7001, on_found=found["a"].append, interfaces=["127.0.0.1"])
    b = Discovery(
        dev_b,
        mesh,
        7002,
        on_found=found["b"].append,
        on_lost=lost.append,
        interfaces=["127.0.0.1"],
    )
    stranger = Discovery(
        f"c-{mesh}", uuid.uuid4().hex, 7003, on_found=lambda _: None, interfaces=["127.0.0.1"]
    )
    try:
        await asyncio.gather(a.start(), b.start(), stranger.start())
        async with asyncio.timeout(10):
            while not (found["a"] and found["b"]):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # time for the stranger's record to be (wrongly) reported
        assert found["a"] == [Announcement(dev_b, mesh, 7002, ("127.0.0.1",))]
        assert found["b"] == [Announcement(dev_a, mesh, 7001, ("127.0.0.1",))]
        await a.close()
        async with asyncio.timeout(10):
            while not lost:
                await asyncio.sleep(0.05)
        assert lost == [dev_a]
    finally:
        await asyncio.gather(a.close(), b.close(), stranger.close())

"""Mesh devices syncing over the real transport (WebSockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import MeshService, create_mesh, join_mesh, open_replica


async def converged(services: list[MeshService], timeout_s: float = 20.0) -> bool:
    """Wait until every service holds the same state hash and Merkle roots."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        hashes = {s.replica.state_hash() for s in services}
        roots = {tuple(sorted(s.replica.merkle_roots().items())) for s in services}
        if len(hashes) == 1 and len(roots) == 1:
            return True
        await asyncio.sleep(0.05)
    return False


async def owner_and_members(tmp_path: Path, members: int) -> list[MeshService]:
    owner = await MeshService(create_mesh(tmp_path / "owner"), sync_interval_s=1).start()
    services = [owner]
    for i in range(members):
        invite = owner.replica.create_invite()
        replica = await join_mesh(tmp_path / f"m{i}", invite.to_text(), owner.url(), name=f"m{i}")
        services.append(await MeshService(replica, sync_interval_s=1).start())
    return services


async def test_join_then_writes_spread_both_ways(tmp_path: Path) -> None:
    services = await owner_and_members(tmp_path, 2)
    try:
        owner, a, b = services
        assert await a.wait_for_peers(1) and await b.wait_for_peers(1)
        assert await converged(services)
        assert a.replica.roster.role_of(a.replica.author) == "member"
        async with a.writing() as replica:
            replica.put("note", "from-a", "hello")
        async with b.writing() as replica:
            replica.remember("m1", {"text": "remember me"})
        assert await converged(services)
        # b is not connected to a: a's note reached b through the owner (gossip).
        assert b.replica.state.get("note", "from-a") == "hello"
        assert "m1" in a.replica.state.memory()
        status = owner.status()
        assert status["role"] == "owner" and status["blocks"] >= 4
        assert {p["connected"] for p in status["peers"]} == {True}
    finally:
        await asyncio.gather(*(s.close() for s in services))


async def test_a_used_or_wrong_invite_is_refused_and_leaves_no_mesh(tmp_path: Path) -> None:
    owner = await MeshService(create_mesh(tmp_path / "owner")).start()
    try:
        invite = owner.replica.create_invite()
        first = await join_mesh(tmp_path / "a", invite.to_text(), owner.url())
        first.close()
        with pytest.raises(MeshRejected, match="owner refused"):
            await join_mesh(tmp_path / "b", invite.to_text(), owner.url())
        assert not (tmp_path / "b" / "mesh.sqlite3").exists()
        assert any(e.kind == "join" and "refused" in e.detail for e in owner.events)
    finally:
        await owner.close()


async def test_revoked_device_is_dropped_and_cannot_reconnect(tmp_path: Path) -> None:
    services = await owner_and_members(tmp_path, 1)
    owner, member = services
    try:
        assert await owner.wait_for_peers(1)
        async with owner.writing() as replica:
            replica.revoke(member.replica.author)
        for _ in range(100):
            if not owner.connected():
                break
            await asyncio.sleep(0.05)
        assert owner.connected() == []
        await asyncio.sleep(1.0)  # the member's dialer retries; the handshake refuses it
        assert owner.connected() == []
        with pytest.raises(MeshRejected, match="revoked"):
            member.replica.put("note", "x", "late")
    finally:
        await asyncio.gather(*(s.close() for s in services))


async def test_restart_keeps_state_and_catches_up(tmp_path: Path) -> None:
    services = await owner_and_members(tmp_path, 1)
    owner, member = services
    await member.close()
    member.replica.close()
    async with owner.writing() as replica:
        for i in range(50):
            replica.put("note", f"n{i}", i)
    member = await MeshService(open_replica(tmp_path / "m0"), sync_interval_s=1).start()
    try:
        assert await converged([owner, member])
        assert member.replica.state.get("note", "n49") == 49
    finally:
        await asyncio.gather(owner.close(), member.close())


async def test_a_restored_device_writes_only_after_it_caught_up(tmp_path: Path) -> None:
    from mimiverse.mesh.identity import DeviceKey
    from mimiverse.mesh.snapshot import restore_snapshot, write_snapshot

    services = await owner_and_members(tmp_path, 1)
    owner, member = services
    try:
        assert await converged(services)
        async with member.writing() as replica:
            replica.put("note", "before", 1)
        write_snapshot(member.replica, tmp_path / "member.snap")
        async with member.writing() as replica:
            replica.put("note", "after-backup", 2)  # lives on the owner only, once synced
        assert await converged(services)
    finally:
        await member.close()
    member.replica.close()
    key = DeviceKey.load(tmp_path / "m0" / "device.key")
    restore_snapshot(tmp_path / "member.snap", tmp_path / "restored", key)
    restored = open_replica_with(tmp_path / "restored", key)
    with pytest.raises(MeshRejected, match="restored from a backup"):
        restored.put("note", "too-soon", 3)
    service = await MeshService(restored, peers=[owner.url()], sync_interval_s=1).start()
    try:
        assert await converged([owner, service])
        for _ in range(100):  # the owner's vector says it holds nothing newer of ours
            if not service.replica.restored:
                break
            await asyncio.sleep(0.05)
        async with service.writing() as replica:
            replica.put("note", "now", 4)  # seq follows the block the owner gave back
        assert await converged([owner, service])
        assert not owner.replica.fork_proofs()
        assert service.replica.state.get("note", "after-backup") == 2
    finally:
        await asyncio.gather(owner.close(), service.close())


def open_replica_with(directory: Path, key: object) -> Replica:
    from mimiverse.mesh.identity import DeviceKey

    assert isinstance(key, DeviceKey)
    return Replica.open(directory, key)


async def test_devices_of_one_mesh_find_each_other_by_mdns(tmp_path: Path) -> None:
    owner_replica = create_mesh(tmp_path / "owner")
    invite = owner_replica.create_invite()
    owner = await MeshService(owner_replica, discovery=True, sync_interval_s=1).start()
    try:
        joined = await join_mesh(tmp_path / "m", invite.to_text(), owner.url())
        from mimiverse.mesh.service import save_peers

        save_peers(joined, [])  # forget the owner's address: mDNS must find it
        member = await MeshService(joined, discovery=True, sync_interval_s=1).start()
        try:
            assert await member.wait_for_peers(1, timeout_s=15)
            assert await converged([owner, member])
        finally:
            await member.close()
    finally:
        await owner.close()


async def test_join_with_the_short_code_alone(tmp_path: Path) -> None:
    owner = await MeshService(create_mesh(tmp_path / "owner")).start()
    try:
        code = owner.replica.create_invite().code()
        replica = await join_mesh(tmp_path / "m", code.lower().replace("-", " "), owner.url())
        assert replica.mesh == owner.replica.mesh
        replica.close()
        with pytest.raises(MeshRejected, match="owner refused"):
            await join_mesh(tmp_path / "m2", code, owner.url())  # used up
    finally:
        await owner.close()


async def test_a_node_that_cannot_prove_the_invite_is_not_trusted(tmp_path: Path) -> None:
    """On the join path nobody is authenticated: a fake 'owner' must not enrol us."""
    from websockets.asyncio.server import ServerConnection, serve

    from mimiverse.mesh import codec
    from mimiverse.mesh.identity import Invite

    async def impostor(ws: ServerConnection) -> None:
        message = await ws.recv(decode=False)
        if codec.decode(bytes(message)) == {"t": "mesh?"}:
            await ws.send(codec.encode({"mesh": b"\x01" * 32}))
        else:
            await ws.send(codec.encode({"ok": True, "proof": b"\x00" * 32}))

    async with serve(impostor, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        invite = Invite.create(b"\x01" * 32, "member", 2**62)
        for answer in (invite.code(), invite.to_text()):
            with pytest.raises(MeshRejected, match="not the mesh's owner"):
                await join_mesh(tmp_path / "m", answer, f"127.0.0.1:{port}")
            assert not (tmp_path / "m" / "mesh.sqlite3").exists()

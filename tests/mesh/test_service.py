"""Mesh devices syncing over the real transport (WebSockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mimiverse.mesh.errors import MeshRejected
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

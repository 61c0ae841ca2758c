"""Deltas that bring blocks a replica already holds (gossip sends many twice): the held
prefix is refused as "replayed" without being decoded again, and anything after it —
new blocks, or a different block at a held seq — is still checked one by one."""

from __future__ import annotations

import pytest

from mimiverse.mesh.blocks import Block
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.sync import Delta, LogDelta, Vector

from .conftest import Mesh, forge


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every wire block that gets decoded from now on."""
    seen: list[bytes] = []
    original = Block.from_bytes.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Block], data: bytes) -> Block:
        seen.append(data)
        return original(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Block, "from_bytes", classmethod(counting))
    return seen


def _writes(replica: Replica, count: int, tag: str) -> list[Block]:
    return [replica.put("note", f"{tag}{i}", i) for i in range(count)]


def test_a_delta_received_twice_is_replayed_without_decoding(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = mesh.replicas[1], mesh.replicas[2]
    _writes(writer, 40, "n")
    delta = writer.diff_for(reader.vector())
    first = reader.apply_delta(delta)
    assert len(first.accepted) == 40
    before = (reader.vector(), reader.merkle_roots(), reader.state_hash())
    decoded = _count_decodes(monkeypatch)
    again = reader.apply_delta(delta)
    assert again.accepted == [] and dict(again.counts) == {"replayed": 40}
    assert decoded == []
    assert (reader.vector(), reader.merkle_roots(), reader.state_hash()) == before
    assert [r.seq for r in again.rejected[:3]] == [1, 2, 3]
    assert again.rejected[0].hash == reader.hash_at(writer.author, 1)


def test_an_overlapping_delta_takes_only_the_new_blocks(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = mesh.replicas[1], mesh.replicas[2]
    _writes(writer, 30, "n")
    stale = reader.vector()  # what a peer saw before the first delta arrived
    reader.apply_delta(writer.diff_for(stale))
    new = _writes(writer, 5, "m")
    delta = writer.diff_for(stale)  # blocks 1..35, of which the reader holds 1..30
    decoded = _count_decodes(monkeypatch)
    report = reader.apply_delta(delta)
    assert dict(report.counts) == {"replayed": 30}
    assert [r.hash for r in report.accepted] == [b.hash for b in new]
    assert decoded == [b.to_bytes() for b in new]
    assert reader.root(writer.author) == writer.root(writer.author)


def test_a_different_block_after_a_held_prefix_is_still_a_fork(mesh: Mesh) -> None:
    member, victim = mesh.replicas[1], mesh.replicas[2]
    held = _writes(member, 6, "n")
    victim.apply_delta(member.diff_for(victim.vector()))
    third = held[2]
    other = forge(
        mesh.keys[1], mesh.mesh, member.author, third.seq,
        prev=third.prev_hash, hlc=third.hlc,
        payload={"op": "put", "key": "n2", "value": "evil", "base": []},
    )  # fmt: skip
    first_two = member.block_bytes(member.author, 1, 2)
    blocks = [*first_two, other.to_bytes()]
    entry = LogDelta(member.author, 0, 3, member.root(member.author, 3), [], blocks)
    report = victim.apply_delta(Delta(mesh.mesh, [entry]))
    assert report.counts["replayed"] == 2 and report.counts["equivocation"] == 1
    assert len(report.forks) == 1 and victim.cap(member.author) == third.seq - 1
    assert victim.size(member.author) == third.seq - 1


def test_fork_probes_are_each_checked(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    """Probes (no consistency proof) are not a run of seqs from ``start``: none is skipped."""
    member, victim = mesh.replicas[1], mesh.replicas[2]
    _writes(member, 4, "n")
    victim.apply_delta(member.diff_for(Vector(mesh.mesh)))
    blocks = member.block_bytes(member.author, 2, 3)
    entry = LogDelta(member.author, 1, 4, member.root(member.author), None, blocks)
    decoded = _count_decodes(monkeypatch)
    report = victim.apply_delta(Delta(mesh.mesh, [entry]))
    assert dict(report.counts) == {"replayed": 2} and report.accepted == []
    assert decoded == blocks

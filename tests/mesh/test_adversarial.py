"""Byzantine input: every bad block is refused and reported with its reason; nothing
refused changes a replica's logs, roots or state."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from mimiverse.mesh import codec
from mimiverse.mesh.blocks import MAX_BLOCK_BYTES, Block, ForkProof
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.pending import BLOCKS as PENDING_BLOCKS
from mimiverse.mesh.pending import PER_AUTHOR as PENDING_PER_AUTHOR
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.sync import Delta, LogDelta
from mimiverse.mesh.validate import Report

from .conftest import Mesh, forge, make_mesh, next_block


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    built = make_mesh(tmp_path, members=2)
    member = built.replicas[1]
    member.put("note", "a", "one")
    member.put("note", "b", "two")
    sync_pair(member, built.replicas[2])
    sync_pair(member, built.owner)
    yield built
    built.close()


def _snapshot(replica: Replica) -> tuple[object, ...]:
    return (replica.vector(), replica.merkle_roots(), replica.state_hash())


def _refused(replica: Replica, blocks: list[bytes], reason: str) -> Report:
    """Offer ``blocks``; assert nothing changed and every one was refused for ``reason``."""
    before = _snapshot(replica)
    report = replica.receive(blocks)
    assert report.accepted == []
    assert set(report.counts) == {reason}, report.rejected
    assert sum(report.counts.values()) == len(blocks)
    assert _snapshot(replica) == before
    return report


def test_forged_signature_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    intruder = DeviceKey.generate()
    block = next_block(victim, intruder, member.author)  # member's author, wrong key
    _refused(victim, [block.to_bytes()], "bad signature")


def test_signature_from_another_mesh_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    good = next_block(victim, mesh.keys[1], member.author)
    other = forge(
        mesh.keys[1], b"\x01" * 32, good.author, good.seq, prev=good.prev_hash, hlc=good.hlc
    )
    _refused(victim, [other.to_bytes()], "bad signature")


def test_tampered_payload_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    good = next_block(victim, mesh.keys[1], member.author)
    fields = codec.decode(good.body)
    assert isinstance(fields, list)
    fields[7] = {"op": "put", "key": "k", "value": "tampered", "base": []}
    tampered = codec.encode([codec.encode(fields), good.signature])
    _refused(victim, [tampered], "bad signature")


def test_non_canonical_encoding_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    good = next_block(victim, mesh.keys[1], member.author)
    wire = good.to_bytes()
    # The same value with a non-minimal length prefix on the body byte string.
    assert wire[:2] == b"\x82\x58"  # array(2), bytes with a 1-byte length
    padded = b"\x82\x59" + len(good.body).to_bytes(2, "big") + wire[3:]
    assert cbor2.loads(padded) == cbor2.loads(wire)  # same value, other bytes
    _refused(victim, [padded, wire + b"\x00", b"\xff" * 10], "malformed")


def test_replayed_block_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    old = member.block_at(member.author, 1).to_bytes()
    _refused(victim, [old, old], "replayed")


def test_sequence_gap_is_buffered_not_accepted(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    b3 = member.put("note", "c", "three")
    b4 = member.put("note", "d", "four")
    report = _refused(victim, [b4.to_bytes()], "sequence gap")
    assert report.waiting == 1 and victim.pending_count == 1
    filled = victim.receive([b3.to_bytes()])
    assert [r.seq for r in filled.accepted] == [3, 4]
    assert victim.pending_count == 0


def test_wrong_prev_hash_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    block = next_block(victim, mesh.keys[1], member.author, prev=hashlib.sha256(b"x").digest())
    _refused(victim, [block.to_bytes()], "wrong prev_hash")


def test_clock_going_backwards_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    block = next_block(victim, mesh.keys[1], member.author, hlc=1)
    _refused(victim, [block.to_bytes()], "hlc not increasing")


def test_oversized_block_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    with pytest.raises(MeshRejected, match="at most"):
        member.put("note", "big", "x" * MAX_BLOCK_BYTES)
    good = next_block(victim, mesh.keys[1], member.author)
    fields = codec.decode(good.body)
    assert isinstance(fields, list)
    fields[7] = {"op": "put", "key": "big", "value": "x" * MAX_BLOCK_BYTES, "base": []}
    body = codec.encode(fields)
    signature = mesh.keys[1].sign(b"block", mesh.mesh, hashlib.sha256(body).digest())
    _refused(victim, [codec.encode([body, signature])], "oversized")


def test_unknown_author_is_refused(mesh: Mesh) -> None:
    victim = mesh.replicas[2]
    stranger = DeviceKey.generate()
    block = forge(stranger, mesh.mesh, stranger.public, 1)
    _refused(victim, [block.to_bytes()], "unknown author")


def test_bad_payload_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    block = next_block(victim, mesh.keys[1], member.author, payload={"op": "put"})
    _refused(victim, [block.to_bytes()], "bad payload")
    yjs = next_block(
        victim, mesh.keys[1], member.author, kind="crdt-update",
        payload={"doc": "d", "update": b"not yjs"},
    )  # fmt: skip
    _refused(victim, [yjs.to_bytes()], "bad payload")


def test_roster_block_from_a_member_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    op = {"op": "add", "device": DeviceKey.generate().public, "role": "member", "name": "x"}
    block = next_block(victim, mesh.keys[1], member.author, kind="roster", payload=op)
    _refused(victim, [block.to_bytes()], "not owner")


def test_read_only_device_cannot_write(tmp_path: Path) -> None:
    built = make_mesh(tmp_path, members=2, roles=["read-only", "member"])
    reader, victim = built.replicas[1], built.replicas[2]
    with pytest.raises(MeshRejected, match="read-only"):
        reader.put("note", "a", "x")
    block = forge(built.keys[1], built.mesh, reader.author, 1)
    _refused(victim, [block.to_bytes()], "read-only device")
    built.close()


def test_revoked_key_is_refused_and_later_blocks_are_cut(mesh: Mesh) -> None:
    owner, member, victim = mesh.owner, mesh.replicas[1], mesh.replicas[2]
    owner.revoke(member.author)  # after seq 2, the head the owner holds
    late = member.put("note", "late", "written before it heard")
    sync_pair(member, victim)  # the victim takes seq 3: it has not heard of the revocation
    assert victim.size(member.author) == 3
    sync_pair(owner, victim)  # now it hears, and cuts the log back to 2
    assert victim.size(member.author) == 2
    assert victim.state.get("note", "late") is None
    _refused(victim, [late.to_bytes()], "revoked key")
    sync_pair(owner, member)  # the member hears it too, and cuts its own log back
    assert member.size(member.author) == 2
    with pytest.raises(MeshRejected, match="revoked"):
        member.put("note", "more", "x")


def test_equivocation_makes_a_fork_proof_quarantines_and_gossips(mesh: Mesh) -> None:
    owner, member, victim = mesh.owner, mesh.replicas[1], mesh.replicas[2]
    b3 = member.put("note", "c", "honest")
    sync_pair(member, victim)
    other = forge(
        mesh.keys[1], mesh.mesh, member.author, 3,
        prev=b3.prev_hash, hlc=b3.hlc, payload={"op": "put", "key": "c", "value": "evil", "base": []},
    )  # fmt: skip
    report = victim.receive([other.to_bytes()])
    assert report.accepted == [] and set(report.counts) == {"equivocation"}
    assert len(report.forks) == 1
    proof = report.forks[0]
    assert {proof.first.hash, proof.second.hash} == {b3.hash, other.hash}
    # Quarantined: the log is cut before the fork, nothing more is taken from the author.
    assert victim.size(member.author) == 2
    assert victim.state.get("note", "c") is None
    _refused(victim, [b3.to_bytes()], "author quarantined")
    # Gossip: the owner has never seen the evil block, but takes the proof from a sync.
    assert owner.cap(member.author) is None
    sync_pair(victim, owner)
    assert owner.cap(member.author) == 2
    assert owner.size(member.author) == 2
    assert owner.state_hash() == victim.state_hash()
    assert owner.merkle_roots() == victim.merkle_roots()
    # The proof survives a restart.
    restarted = mesh.restart(2)
    assert restarted.cap(member.author) == 2


def test_forged_fork_proof_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    real = member.block_at(member.author, 2)
    fake = forge(DeviceKey.generate(), mesh.mesh, member.author, 2, prev=real.prev_hash)
    proof = ForkProof.of(real, fake).to_bytes()
    report = victim.apply_delta(Delta(mesh.mesh, forks=[proof]))
    assert set(report.counts) == {"bad fork proof"}
    assert victim.cap(member.author) is None


def test_delta_with_a_bad_consistency_proof_is_refused(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    b3 = member.put("note", "c", "x")
    b4 = member.put("note", "d", "y")
    good = member.diff_for(victim.vector())
    [entry] = [e for e in good.logs if e.author == member.author]
    assert entry.start == 2 and entry.proof
    bad_proof = [bytes(32), *entry.proof[1:]]
    bad = LogDelta(entry.author, entry.start, entry.size, entry.root, bad_proof, entry.blocks)
    before = _snapshot(victim)
    report = victim.apply_delta(Delta(mesh.mesh, [bad]))
    assert set(report.counts) == {"inconsistent log"} and report.accepted == []
    assert _snapshot(victim) == before
    report = victim.apply_delta(good)
    assert [r.hash for r in report.accepted] == [b3.hash, b4.hash]


def test_malformed_sync_messages_raise(mesh: Mesh) -> None:
    victim = mesh.replicas[2]
    for message in (
        b"\x00",
        codec.encode(
            {"t": "vector", "mesh": b"\x00" * 32, "heads": [], "forks": [], "reply": False}
        ),
        codec.encode(
            {
                "t": "vector",
                "mesh": mesh.mesh,
                "heads": [[b"x", 1, b"y"]],
                "forks": [],
                "reply": False,
            }
        ),
        codec.encode({"t": "nope", "mesh": mesh.mesh}),
    ):
        with pytest.raises(MeshRejected, match="sync message"):
            victim.handle(message)


def test_flood_of_blocks_keeps_memory_bounded(mesh: Mesh) -> None:
    victim, member = mesh.replicas[2], mesh.replicas[1]
    key = mesh.keys[1]
    before = _snapshot(victim)
    # Validly signed blocks far ahead (gaps that will never fill), forgeries and junk.
    ahead = [
        forge(key, mesh.mesh, member.author, seq, hlc=seq).to_bytes()
        for seq in range(10, 10 + PENDING_PER_AUTHOR + 300)
    ]
    intruder = DeviceKey.generate()
    forged = [forge(intruder, mesh.mesh, member.author, s).to_bytes() for s in range(3, 600)]
    junk = [bytes([i % 256]) * (i % 97 + 1) for i in range(3000)]
    tracemalloc.start()
    victim.receive(ahead[:50])  # warm up
    base, _ = tracemalloc.get_traced_memory()
    total = Report()
    for _ in range(3):
        total.merge(victim.receive(ahead + forged + junk))
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert total.accepted == []
    assert victim.pending_count <= min(PENDING_PER_AUTHOR, PENDING_BLOCKS)
    assert total.counts["pending buffer full"] > 0
    assert total.counts["bad signature"] == 3 * len(forged)
    assert total.counts["malformed"] == 3 * len(junk)
    assert grown < 2_000_000, f"memory grew by {grown} bytes"
    assert len(total.rejected) <= 200
    assert _snapshot(victim)[1:] == before[1:]


def test_blocks_signed_with_a_rotated_out_key_are_refused(mesh: Mesh) -> None:
    owner, member, victim = mesh.owner, mesh.replicas[1], mesh.replicas[2]
    old_key, new_key = mesh.keys[1], DeviceKey.generate()
    op = member.begin_rotation(new_key)
    mesh.keys[1] = new_key
    # Needs both signatures: a rotation the old key did not sign is refused.
    forged_op = dict(op, key=DeviceKey.generate().public)
    with pytest.raises(MeshRejected, match="old_sig"):
        owner.accept_rotation(forged_op)
    owner.accept_rotation(op)
    b3 = member.put("note", "after", "rotation")
    assert b3.key_epoch == 1
    sync_pair(owner, victim)
    sync_pair(member, victim)
    assert victim.hash_at(member.author, 3) == b3.hash
    # The old key can no longer write at the new seqs, even validly chained.
    stale = next_block(victim, old_key, member.author)
    _refused(victim, [stale.to_bytes()], "wrong key epoch")
    assert Block.from_bytes(b3.to_bytes()).signed_by(new_key.public, mesh.mesh)

"""Signed snapshots: a round trip restores the same logs and state; anything altered,
cut short, signed by an outsider or inconsistent is refused, and leaves nothing behind."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from mimiverse.mesh import codec
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import STORE_NAME, Replica
from mimiverse.mesh.snapshot import (
    MAGIC,
    PURPOSE,
    SnapshotRefused,
    read_snapshot_info,
    restore_snapshot,
    write_snapshot,
)
from tests.mesh.conftest import Mesh, forge, make_mesh


def fill(mesh: Mesh) -> None:
    """Notes, memories, a shared document and a concurrent edit, synced everywhere."""
    owner, a, b = mesh.replicas
    owner.put("decision", "db", "sqlite")
    a.put("note", "plan", "ship it")
    b.put("note", "plan", "test it first")  # concurrent with a's
    a.remember("m1", {"text": "likes tabs"})
    b.edit("readme", lambda doc: doc.get("text", type=pycrdt.Text).insert(0, "hi"))
    for x, y in ((owner, a), (a, b), (b, owner), (owner, a)):
        sync_pair(x, y)


def restored(mesh: Mesh, index: int, snap: Path, target: Path) -> Replica:
    restore_snapshot(snap, target, mesh.keys[index])
    return Replica.open(target, mesh.keys[index])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else ["(none)"]


# --- records by hand (the format as the module docstring states it) ------------------------


def records(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    pos, out = len(MAGIC), []
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        value = codec.decode(data[pos + 4 : pos + 4 + size])
        assert isinstance(value, dict)
        out.append(value)
        pos += 4 + size
    return out


def assemble(body: list[dict[str, Any]], key: DeviceKey, mesh: bytes) -> bytes:
    """A snapshot file of header + records, with a correct trailer, signed by ``key``."""

    def framed(value: dict[str, Any]) -> bytes:
        data = codec.encode(value)
        return len(data).to_bytes(4, "big") + data

    head = MAGIC + b"".join(framed(r) for r in body)
    blocks = sum(r["t"] == "block" for r in body)
    forks = sum(r["t"] == "fork" for r in body)
    trailer: dict[str, Any] = {
        "t": "trailer",
        "blocks": blocks,
        "forks": forks,
        "digest": hashlib.sha256(head).digest(),
    }
    message = (
        hashlib.sha256(codec.encode(body[0])).digest()
        + hashlib.sha256(codec.encode(trailer)).digest()
    )
    signature: dict[str, Any] = {"t": "signature", "signature": key.sign(PURPOSE, mesh, message)}
    return head + framed(trailer) + framed(signature)


def resigned(path: Path, signer: DeviceKey, mesh: bytes, **header: Value) -> Path:
    """The snapshot at ``path`` with header fields changed, re-signed by ``signer``."""
    body = [r for r in records(path) if r["t"] not in ("trailer", "signature")]
    body[0] = {**body[0], **header}
    out = path.with_name("resigned.mimisnap")
    out.write_bytes(assemble(body, signer, mesh))
    return out


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Mesh]:
    mesh = make_mesh(tmp_path / "mesh")
    fill(mesh)
    yield mesh
    mesh.close()


@pytest.fixture
def snap(filled: Mesh, tmp_path: Path) -> Path:
    path = tmp_path / "backup.mimisnap"
    write_snapshot(filled.replicas[1], path)
    return path


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_restores_the_same_logs_roots_and_state(
    filled: Mesh, snap: Path, tmp_path: Path
) -> None:
    member = filled.replicas[1]
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    info = read_snapshot_info(snap)
    assert info.device == member.author and info.mesh == member.mesh
    assert info.blocks == sum(member.size(a) for a in member.authors())
    assert {a: h.root for a, h in info.logs.items()} == member.merkle_roots()
    assert next(iter(info.logs)) == member.mesh  # the owner's log first
    assert info.sha256 == hashlib.sha256(snap.read_bytes()).hexdigest()

    summary = restore_snapshot(snap, tmp_path / "new", filled.keys[1])
    assert summary.device == member.author and summary.role == "member"
    assert summary.own_blocks == member.size(member.author)
    assert leftovers(tmp_path / "new") == [STORE_NAME]
    back = Replica.open(tmp_path / "new", filled.keys[1])
    try:
        assert back.author == member.author and back.mesh == member.mesh
        assert back.state_hash() == member.state_hash() == summary.state_hash
        assert back.merkle_roots() == member.merkle_roots()
        assert back.vector() == member.vector()
        assert back.state.conflicts("note", "plan")  # the concurrent edit is still shown
        # It syncs with the mesh as the device it was, and its next write is accepted
        # once a peer's vector showed it holds nothing newer of this device.
        owner = filled.owner
        with pytest.raises(MeshRejected, match="restored from a backup"):
            back.put("note", "too", "soon")
        assert not sync_pair(owner, back).report.counts
        block = back.put("note", "after", "restore")
        sync_pair(back, owner)
        assert owner.hash_at(back.author, block.seq) == block.hash
    finally:
        back.close()


def test_any_device_on_the_roster_may_restore_and_a_rotated_key_is_recognised(
    filled: Mesh, tmp_path: Path
) -> None:
    owner, member = filled.owner, filled.replicas[2]
    new_key = DeviceKey.generate()
    op = member.begin_rotation(new_key)
    owner.accept_rotation(op)
    sync_pair(owner, member)
    path = tmp_path / "owner.mimisnap"
    write_snapshot(owner, path)
    summary = restore_snapshot(path, tmp_path / "m2", new_key)
    assert summary.device == member.author and summary.role == "member"
    back = Replica.open(tmp_path / "m2", new_key)
    try:
        assert back.author == member.author and back.epoch == 1
        sync_pair(owner, back)  # settles the restore (nothing newer of ours out there)
        block = back.put("note", "rotated", "yes")
        assert not owner.receive([block.to_bytes()]).counts
    finally:
        back.close()


def test_a_forked_author_stays_quarantined_with_its_proof(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path / "mesh")
    try:
        member, victim = mesh.replicas[1], mesh.replicas[2]
        member.put("note", "a", "one")
        member.put("note", "b", "two")
        b3 = member.put("note", "c", "honest")
        sync_pair(member, victim)
        evil = forge(
            mesh.keys[1], mesh.mesh, member.author, b3.seq, prev=b3.prev_hash, hlc=b3.hlc,
            payload={"op": "put", "key": "c", "value": "evil", "base": []},
        )  # fmt: skip
        assert victim.receive([evil.to_bytes()]).forks
        path = tmp_path / "victim.mimisnap"
        info = write_snapshot(victim, path)
        assert info.forks == {member.author: 3}
        back = restored(mesh, 2, path, tmp_path / "back")
        try:
            assert back.cap(member.author) == 2 and back.size(member.author) == 2
            assert set(back.fork_proofs()) == {member.author}
            assert back.state_hash() == victim.state_hash()
            assert set(back.receive([b3.to_bytes()]).counts) == {"author quarantined"}
        finally:
            back.close()
    finally:
        mesh.close()


# --- refusals ------------------------------------------------------------------------------


def test_a_changed_byte_anywhere_is_refused(snap: Path, filled: Mesh, tmp_path: Path) -> None:
    data = snap.read_bytes()
    tail = len(data) - 120  # the trailer and the signature: every byte
    offsets = sorted({*range(0, tail, max(1, tail // 300)), *range(tail, len(data))})
    bad = tmp_path / "bad.mimisnap"
    for offset in offsets:
        bad.write_bytes(data[:offset] + bytes([data[offset] ^ 0x41]) + data[offset + 1 :])
        with pytest.raises(SnapshotRefused):
            read_snapshot_info(bad)
    for offset in offsets[:: max(1, len(offsets) // 12)]:
        bad.write_bytes(data[:offset] + bytes([data[offset] ^ 0x41]) + data[offset + 1 :])
        target = tmp_path / f"r{offset}"
        with pytest.raises(SnapshotRefused):
            restore_snapshot(bad, target, filled.keys[1])
        assert leftovers(target) == ["(none)"]  # nothing half-restored


def test_a_truncated_or_extended_file_is_refused(snap: Path, filled: Mesh, tmp_path: Path) -> None:
    data = snap.read_bytes()
    bad = tmp_path / "short.mimisnap"
    for size in sorted({0, 3, len(MAGIC), *range(8, len(data), max(1, len(data) // 100))}):
        bad.write_bytes(data[:size])
        with pytest.raises(SnapshotRefused, match=r"truncated|not a Mimiverse"):
            read_snapshot_info(bad)
    bad.write_bytes(data[:-1])
    with pytest.raises(SnapshotRefused, match="truncated"):
        restore_snapshot(bad, tmp_path / "r", filled.keys[1])
    assert leftovers(tmp_path / "r") == ["(none)"]
    bad.write_bytes(data + b"\x00")
    with pytest.raises(SnapshotRefused, match="after the signature"):
        read_snapshot_info(bad)


def test_a_signer_outside_the_roster_is_refused(snap: Path, filled: Mesh, tmp_path: Path) -> None:
    outsider = DeviceKey.generate()
    forged = resigned(snap, outsider, filled.mesh, key=outsider.public, device=outsider.public)
    assert read_snapshot_info(forged).key == outsider.public  # well formed, self-consistent …
    with pytest.raises(SnapshotRefused, match="roster does not give") as caught:
        restore_snapshot(forged, tmp_path / "r", filled.keys[1])
    assert caught.value.reason == "unknown signer"
    assert leftovers(tmp_path / "r") == ["(none)"]
    # A member's key presented as another device (the owner) is refused too.
    member = filled.keys[2]
    claims = resigned(snap, member, filled.mesh, key=member.public, device=filled.mesh)
    with pytest.raises(SnapshotRefused, match="roster does not give"):
        restore_snapshot(claims, tmp_path / "r2", filled.keys[1])
    # Re-signing without changing the named key breaks the signature.
    other = resigned(snap, outsider, filled.mesh)
    with pytest.raises(SnapshotRefused, match="not signed by the device key"):
        read_snapshot_info(other)


def test_a_signed_but_inconsistent_snapshot_is_refused(
    snap: Path, filled: Mesh, tmp_path: Path
) -> None:
    member, key = filled.replicas[1], filled.keys[1]
    logs = records(snap)[0]["logs"]
    assert isinstance(logs, list) and isinstance(logs[1], list)
    wrong_root = [list(logs[0]), [*logs[1][:3], bytes(32)], *logs[2:]]
    bad = resigned(snap, key, member.mesh, logs=wrong_root)
    with pytest.raises(SnapshotRefused, match="Merkle roots") as caught:
        restore_snapshot(bad, tmp_path / "r", key)
    assert caught.value.reason == "mismatch" and leftovers(tmp_path / "r") == ["(none)"]
    # A block no device signed, carried by a validly signed snapshot, is refused.
    body = [r for r in records(snap) if r["t"] not in ("trailer", "signature")]
    last = max(i for i, r in enumerate(body) if r["t"] == "block")
    stranger = DeviceKey.generate()
    size = member.size(member.author)
    tip = member.block_at(member.author, size)
    fake = forge(stranger, member.mesh, member.author, size + 1, prev=tip.hash, hlc=tip.hlc + 1)
    body.insert(last + 1, {"t": "block", "data": fake.to_bytes()})
    heads = [
        [a, n + 1, fake.hash, r] if a == member.author else [a, n, h, r]
        for a, n, h, r in body[0]["logs"]
    ]
    body[0] = {**body[0], "logs": heads, "blocks": int(body[0]["blocks"]) + 1}
    smuggled = tmp_path / "smuggled.mimisnap"
    smuggled.write_bytes(assemble(body, key, member.mesh))
    with pytest.raises(SnapshotRefused, match="bad signature") as caught:
        restore_snapshot(smuggled, tmp_path / "r3", key)
    assert caught.value.reason == "refused blocks" and leftovers(tmp_path / "r3") == ["(none)"]


def test_restore_needs_an_empty_folder_and_a_key_on_the_roster(
    snap: Path, filled: Mesh, tmp_path: Path
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(SnapshotRefused, match="not empty"):
        restore_snapshot(snap, busy, filled.keys[1])
    assert leftovers(busy) == ["notes.txt"]
    with pytest.raises(SnapshotRefused, match="not empty"):
        restore_snapshot(snap, filled.root / "r1", filled.keys[1])  # a live mesh folder
    with pytest.raises(SnapshotRefused, match="not on the snapshot's roster"):
        restore_snapshot(snap, tmp_path / "new", DeviceKey.generate())
    assert leftovers(tmp_path / "new") == ["(none)"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotRefused, match="not on the snapshot's roster"):
        restore_snapshot(snap, tmp_path / "empty", DeviceKey.generate())
    assert leftovers(tmp_path / "empty") == []  # a folder we did not make stays
    # After a disk loss the key file comes back first: a folder with only it is fine.
    home = tmp_path / "home"
    filled.keys[1].save(home / "device.key")
    restore_snapshot(snap, home, filled.keys[1])
    assert leftovers(home) == ["device.key", STORE_NAME]


def test_write_refuses_to_overwrite_and_a_device_off_the_roster(
    snap: Path, filled: Mesh, tmp_path: Path
) -> None:
    before = snap.read_bytes()
    with pytest.raises(SnapshotRefused, match="exists"):
        write_snapshot(filled.replicas[1], snap)
    assert snap.read_bytes() == before and leftovers(snap.parent).count(snap.name) == 1
    loner = Replica.open(tmp_path / "loner", DeviceKey.generate(), mesh=filled.mesh)
    try:
        with pytest.raises(MeshRejected, match="not on the roster"):
            write_snapshot(loner, tmp_path / "loner.mimisnap")
        assert not (tmp_path / "loner.mimisnap").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        loner.close()


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotRefused, match="no snapshot"):
        read_snapshot_info(tmp_path / "nothing.mimisnap")

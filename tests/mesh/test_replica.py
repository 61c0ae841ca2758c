"""One replica: writing, merging, restarting from its store, joining by invite."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimiverse.mesh.blocks import Block
from mimiverse.mesh.errors import MeshBusy, MeshRejected
from mimiverse.mesh.identity import DeviceKey, join_request, secret_from_code
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import STORE_NAME, Replica
from mimiverse.mesh.state import MeshState

from .conftest import Mesh, make_mesh


def test_restart_rebuilds_everything_from_the_store(mesh: Mesh) -> None:
    member = mesh.replicas[1]
    member.put("note", "n", {"title": "t"})
    member.remember("m", "fact")
    member.edit("doc", lambda d: d.get("text", type=pycrdt.Text).insert(0, "hello"))
    sync_pair(member, mesh.owner)
    before = (member.vector(), member.merkle_roots(), member.state_hash())
    restarted = mesh.restart(1)
    assert (restarted.vector(), restarted.merkle_roots(), restarted.state_hash()) == before
    assert str(restarted.doc("doc").get("text", type=pycrdt.Text)) == "hello"
    # It keeps writing where it stopped.
    block = restarted.put("note", "n", {"title": "t2"})
    assert block.seq == member.size(member.author) + 1
    assert (mesh.root / "r1" / STORE_NAME).exists()


def test_a_store_of_another_mesh_is_refused(mesh: Mesh) -> None:
    mesh.replicas[1].close()
    with pytest.raises(MeshRejected, match="another mesh"):
        Replica.open(mesh.root / "r1", mesh.keys[1], mesh=b"\x07" * 32)
    Replica.open(mesh.root / "r1", mesh.keys[1]).close()  # the refusal released the store


def test_a_store_is_open_in_one_process_at_a_time(mesh: Mesh) -> None:
    with pytest.raises(MeshBusy, match="in use by another process"):
        Replica.open(mesh.root / "r1", mesh.keys[1])


def test_concurrent_writes_are_kept_and_last_writer_wins(mesh: Mesh) -> None:
    a, b = mesh.replicas[1], mesh.replicas[2]
    a.put("decision", "db", "postgres")
    sync_pair(a, b)
    a.put("decision", "db", "sqlite")  # both build on "postgres", without seeing each other
    mesh.clock.now += 10
    b.put("decision", "db", "duckdb")
    sync_pair(a, b)
    assert a.state_hash() == b.state_hash()
    assert a.state.get("decision", "db") == "duckdb"  # the later clock wins
    assert [w.value for w in a.state.conflicts("decision", "db")] == ["sqlite", "duckdb"]
    a.put("decision", "db", "duckdb")  # resolving: builds on the winner
    sync_pair(a, b)
    assert b.state.conflicts("decision", "db") == []


def test_or_set_add_wins_over_a_concurrent_remove(mesh: Mesh) -> None:
    a, b = mesh.replicas[1], mesh.replicas[2]
    a.remember("fact", "v1")
    sync_pair(a, b)
    b.forget("fact")  # removes the add it saw
    a.remember("fact", "v2")  # a concurrent add
    sync_pair(a, b)
    assert a.state.memory() == b.state.memory() == {"fact": "v2"}
    a.forget("fact")
    sync_pair(a, b)
    assert b.state.memory() == {}


def test_writes_need_a_roster_entry(tmp_path: Path) -> None:
    built = make_mesh(tmp_path, members=0)
    stranger = Replica.open(tmp_path / "x", DeviceKey.generate(), mesh=built.mesh)
    with pytest.raises(MeshRejected, match="not on the roster"):
        stranger.put("note", "a", 1)
    with pytest.raises(MeshRejected, match="bad note payload"):
        built.owner.write("note", {"op": "put"})
    member = built.join()
    with pytest.raises(MeshRejected, match="only the owner"):
        member.add_device(DeviceKey.generate().public)
    stranger.close()
    built.close()


def test_join_by_invite_code(tmp_path: Path) -> None:
    built = make_mesh(tmp_path, members=0)
    owner = built.owner
    invite = owner.create_invite("member", ttl_s=60)
    device = DeviceKey.generate()
    replica = Replica.open(tmp_path / "new", device, mesh=owner.mesh, clock=built.clock)
    request = join_request(secret_from_code(invite.code()), owner.mesh, device, "laptop")
    owner.admit(request)
    sync_pair(replica, owner)
    assert replica.roster.role_of(device.public) == "member"
    replica.put("note", "hello", "from the laptop")
    sync_pair(replica, owner)
    assert owner.state.get("note", "hello") == "from the laptop"
    with pytest.raises(MeshRejected, match="no open invite"):
        owner.admit(request)  # one use only
    replica.close()
    built.close()


def test_delta_sends_only_what_is_missing(mesh: Mesh) -> None:
    a, b = mesh.replicas[1], mesh.replicas[2]
    for i in range(50):
        a.put("note", f"k{i}", i)
    sync_pair(a, b)
    new = [a.put("note", f"new{i}", i) for i in range(3)]
    delta = a.diff_for(b.vector())
    assert [len(log.blocks) for log in delta.logs] == [3]
    [log] = delta.logs
    assert log.start == 50 and log.size == 53 and log.proof
    assert log.blocks == [blk.to_bytes() for blk in new]
    report = b.apply_delta(delta)
    assert [r.seq for r in report.accepted] == [51, 52, 53]
    assert not b.diff_for(a.vector()) and not a.diff_for(b.vector())


def test_large_logs_sync_in_several_messages(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    from mimiverse.mesh import sync

    monkeypatch.setattr(sync, "MAX_DELTA_BLOCKS", 7)
    a, b = mesh.replicas[1], mesh.replicas[2]
    for i in range(30):
        a.put("note", f"k{i}", i)
    delta = a.diff_for(b.vector())
    assert delta.more and delta.block_count == 7
    done = sync_pair(b, a)
    assert b.merkle_roots() == a.merkle_roots()
    assert done.messages >= 5


def test_sync_messages_stay_under_the_message_limit(mesh: Mesh) -> None:
    from mimiverse.mesh.sync import MAX_MESSAGE_BYTES

    a, b = mesh.replicas[1], mesh.replicas[2]
    with a.batch():
        for i in range(60):
            a.put("snippet", f"s{i}", "x" * 60_000)  # near the block limit
    done = sync_pair(b, a)
    assert b.merkle_roots() == a.merkle_roots()
    assert MAX_MESSAGE_BYTES // 2 < done.largest <= MAX_MESSAGE_BYTES


def test_clock_going_back_across_a_restart_keeps_the_log_valid(mesh: Mesh) -> None:
    member = mesh.replicas[1]
    last = member.put("note", "a", 1)
    mesh.clock.now -= 10 * 3600 * 1000  # the wall clock jumps back ten hours
    restarted = mesh.restart(1)
    block = restarted.put("note", "a", 2)
    assert block.hlc > last.hlc
    report = mesh.replicas[2].receive([last.to_bytes(), block.to_bytes()])
    assert len(report.accepted) == 2


def test_diverged_logs_find_the_fork_below_the_heads(tmp_path: Path) -> None:
    """A device that wrote two histories (a cloned disk): replicas holding one each find
    the first differing block and agree on the common prefix."""
    built = make_mesh(tmp_path, members=2)
    member, other = built.replicas[1], built.replicas[2]
    for i in range(3):
        member.put("note", f"k{i}", i)
    sync_pair(member, other)
    member.close()  # the last connection checkpoints the WAL into the file
    clone_dir = tmp_path / "clone"
    clone_dir.mkdir()
    (clone_dir / STORE_NAME).write_bytes((tmp_path / "r1" / STORE_NAME).read_bytes())
    clone = Replica.open(clone_dir, built.keys[1], clock=built.clock)
    built.replicas[1] = Replica.open(tmp_path / "r1", built.keys[1], clock=built.clock)
    member = built.replicas[1]
    for i in range(20):
        member.put("note", f"a{i}", i)
        clone.put("note", f"b{i}", i)
    sync_pair(member, other)
    done = sync_pair(clone, other)
    assert other.cap(member.author) == 3  # the fork is at seq 4, right after the shared part
    assert done.report.forks
    sync_pair(other, member)
    sync_pair(other, built.owner)
    for replica in (member, clone, built.owner):
        sync_pair(replica, other)
        assert replica.cap(member.author) == 3
        assert replica.merkle_roots() == other.merkle_roots()
        assert replica.state_hash() == other.state_hash()
    clone.close()
    built.close()


def _prepend(text: str, doc: pycrdt.Doc) -> None:  # type: ignore[type-arg]
    doc.get("t", type=pycrdt.Text).insert(0, text)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_state_does_not_depend_on_the_order_blocks_arrive(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    rnd = random.Random(seed)  # a seed, not st.randoms: the keys below are random anyway
    built = make_mesh(tmp_path_factory.mktemp("order"), members=2)
    writers = built.replicas
    for step in range(12):
        w = writers[rnd.randrange(3)]
        choice = rnd.randrange(4)
        if choice == 0:
            w.put("note", rnd.choice("ab"), step)
        elif choice == 1:
            w.remember(rnd.choice("xy"), step)
        elif choice == 2:
            w.forget(rnd.choice("xy"))
        else:
            w.edit("d", functools.partial(_prepend, str(step)))
        if rnd.random() < 0.3:
            sync_pair(w, writers[rnd.randrange(3)])
    blocks: list[Block] = []
    for w in writers:
        for author in w.authors():
            blocks.extend(w.block_at(author, s) for s in range(1, w.size(author) + 1))
    unique = {b.hash: b for b in blocks}
    by_author: dict[bytes, list[Block]] = {}
    for b in sorted(unique.values(), key=lambda b: b.seq):
        by_author.setdefault(b.author, []).append(b)
    hashes = set()
    for _ in range(3):  # interleave the authors' logs at random, each log in order
        queues = [list(q) for q in by_author.values()]
        state = MeshState()
        while any(queues):
            q = rnd.choice([q for q in queues if q])
            block = q.pop(0)
            if block.kind != "roster":
                state.apply(block)
        hashes.add(state.state_hash())
    assert len(hashes) == 1
    built.close()


def test_authorizes_current_keys_only(mesh: Mesh) -> None:
    owner, member = mesh.owner, mesh.replicas[1]
    assert owner.authorizes(owner.mesh) and owner.authorizes(member.author)
    assert not owner.authorizes(DeviceKey.generate().public)
    old = mesh.keys[1]
    new = DeviceKey.generate()
    owner.accept_rotation(member.begin_rotation(new))
    assert owner.authorizes(new.public) and not owner.authorizes(old.public)
    owner.revoke(member.author)
    assert not owner.authorizes(new.public)
    assert new.signing_key.verify_key.encode() == new.public

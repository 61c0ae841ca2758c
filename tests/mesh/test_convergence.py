"""The acceptance test: 3–7 replicas on a simulated network that drops, duplicates,
reorders and partitions messages, with crashes and restarts from the store. After the
partition heals and anti-entropy runs until quiet, every replica has the same state hash
and the same Merkle roots — and no honest replica ever refused a block for anything but
a duplicate or a gap."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import pycrdt
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.state import doc_digest
from mimiverse.mesh.validate import Report

# What honest replicas may refuse on a lossy, reordering, duplicating network: duplicates,
# gaps, a rotated key's blocks that outran the owner's roster block, and blocks a device
# wrote before it heard it was revoked.
BENIGN = {"replayed", "sequence gap", "unknown key epoch", "revoked key"}
KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=4), st.none())


class SkewedClock:
    """A shared simulated time, seen by each device with its own offset (ms)."""

    def __init__(self, world: list[int], offset: int) -> None:
        self.world, self.offset = world, offset

    def __call__(self) -> int:
        return self.world[0] + self.offset


class MeshNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mesh-sm-"))
        self.world = [1_700_000_000_000]
        self.keys: list[DeviceKey] = []
        self.replicas: list[Replica] = []
        self.clocks: list[SkewedClock] = []
        self.side: list[int] = []  # partition side of each replica
        self.wire: list[tuple[int, int, bytes]] = []  # in flight: (from, to, message)
        self.refusals = Report()
        self.revoked = 0

    # --- setup ------------------------------------------------------------------------

    @initialize(
        n=st.integers(min_value=3, max_value=7),
        skews=st.lists(st.integers(-3_000, 3_000), min_size=7, max_size=7),
    )
    def setup(self, n: int, skews: list[int]) -> None:
        for i in range(n):
            key = DeviceKey.generate()
            clock = SkewedClock(self.world, skews[i])
            mesh = None if i == 0 else self.replicas[0].mesh
            self.keys.append(key)
            self.clocks.append(clock)
            self.replicas.append(Replica.open(self.dir / str(i), key, mesh=mesh, clock=clock))
            if i:
                self.replicas[0].add_device(key.public, "member", f"d{i}")
        for replica in self.replicas[1:]:
            sync_pair(self.replicas[0], replica)  # everyone learns the roster
        self.side = [0] * n

    def teardown(self) -> None:
        try:
            if self.replicas:
                self._heal_and_flush()
                self._check_converged()
        finally:
            for replica in self.replicas:
                replica.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- writes -----------------------------------------------------------------------

    def _pick(self, data: st.DataObject) -> Replica:
        return self.replicas[data.draw(st.integers(0, len(self.replicas) - 1))]

    def _write(self, action: Callable[[], object]) -> None:
        """Write, unless this device knows it was revoked (then it may not)."""
        try:
            action()
        except MeshRejected as exc:
            assert exc.reason == "revoked key", exc

    @rule(data=st.data(), kind=st.sampled_from(["note", "decision", "setting"]), key=KEYS)
    def put(self, data: st.DataObject, kind: str, key: str) -> None:
        replica, value = self._pick(data), data.draw(VALUES)
        self._write(lambda: replica.put(kind, key, value))  # type: ignore[arg-type]

    @rule(data=st.data(), key=KEYS)
    def delete(self, data: st.DataObject, key: str) -> None:
        replica = self._pick(data)
        self._write(lambda: replica.delete("note", key))

    @rule(data=st.data(), item=KEYS)
    def remember(self, data: st.DataObject, item: str) -> None:
        replica, value = self._pick(data), data.draw(VALUES)
        self._write(lambda: replica.remember(item, value))

    @rule(data=st.data(), item=KEYS)
    def forget(self, data: st.DataObject, item: str) -> None:
        replica = self._pick(data)
        self._write(lambda: replica.forget(item))

    @rule(data=st.data(), text=st.text(alphabet="xyz", min_size=1, max_size=3))
    def edit_doc(self, data: st.DataObject, text: str) -> None:
        replica = self._pick(data)
        position = data.draw(st.integers(0, 10))

        def change(doc: pycrdt.Doc) -> None:  # type: ignore[type-arg]
            body = doc.get("body", type=pycrdt.Text)
            body.insert(min(position, len(body)), text)

        self._write(lambda: replica.edit("shared", change))

    @rule(data=st.data())
    def rotate_key(self, data: st.DataObject) -> None:
        """A member rotates its key; the owner countersigns at once (the op travels out of
        band), but the owner's roster block reaches the others only through sync."""
        i = data.draw(st.integers(1, len(self.replicas) - 1))
        owner, member = self.replicas[0], self.replicas[i]
        if owner.roster.role_of(member.author) is None:
            return  # revoked
        if owner.roster.devices[member.author].current.epoch != member.epoch:
            return  # an earlier rotation of this device has not reached it yet
        new_key = DeviceKey.generate()
        op = member.begin_rotation(new_key)
        self.keys[i] = new_key
        owner.accept_rotation(op)

    @precondition(lambda self: self.revoked < 1)
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        """The owner revokes a member after the last block of it the owner holds."""
        i = data.draw(st.integers(1, len(self.replicas) - 1))
        self.replicas[0].revoke(self.replicas[i].author)
        self.revoked += 1

    @rule(ms=st.integers(0, 5_000))
    def tick(self, ms: int) -> None:
        self.world[0] += ms

    # --- the network ------------------------------------------------------------------

    @rule(data=st.data())
    def start_sync(self, data: st.DataObject) -> None:
        n = len(self.replicas)
        a = data.draw(st.integers(0, n - 1))
        b = data.draw(st.integers(0, n - 1).filter(lambda x: x != a))
        self.wire.append((a, b, self.replicas[a].vector().to_message()))

    @precondition(lambda self: self.wire)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Deliver any in-flight message (any order: reordering is the default)."""
        sender, receiver, message = self.wire.pop(data.draw(st.integers(0, len(self.wire) - 1)))
        if self.side[sender] != self.side[receiver]:
            return  # partitioned: lost
        replies, report = self.replicas[receiver].handle(message)
        self._note(report)
        self.wire.extend((receiver, sender, reply) for reply in replies)

    @precondition(lambda self: self.wire)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.wire.pop(data.draw(st.integers(0, len(self.wire) - 1)))

    @precondition(lambda self: self.wire)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self.wire.append(self.wire[data.draw(st.integers(0, len(self.wire) - 1))])

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        n = len(self.replicas)
        self.side = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))

    @rule()
    def heal(self) -> None:
        self.side = [0] * len(self.replicas)

    @rule(data=st.data())
    def crash_and_restart(self, data: st.DataObject) -> None:
        """Kill a replica (its buffers are lost) and bring it back from its store."""
        i = data.draw(st.integers(0, len(self.replicas) - 1))
        before = (self.replicas[i].merkle_roots(), self.replicas[i].state_hash())
        self.replicas[i].close()
        self.replicas[i] = Replica.open(self.dir / str(i), self.keys[i], clock=self.clocks[i])
        assert (self.replicas[i].merkle_roots(), self.replicas[i].state_hash()) == before

    # --- checks -----------------------------------------------------------------------

    def _note(self, report: Report) -> None:
        self.refusals.merge(report)
        assert set(report.counts) <= BENIGN, report.rejected[:5]
        assert not report.forks

    @invariant()
    def pending_is_bounded(self) -> None:
        for replica in self.replicas:
            assert replica.pending_count <= 4096

    def _heal_and_flush(self) -> None:
        self.heal()
        for _ in range(20_000):  # what is still in flight arrives (in order now)
            if not self.wire:
                break
            sender, receiver, message = self.wire.pop(0)
            replies, report = self.replicas[receiver].handle(message)
            self._note(report)
            self.wire.extend((receiver, sender, reply) for reply in replies)
        assert not self.wire, "in-flight sync traffic did not go quiet"
        for _ in range(len(self.replicas) + 2):  # anti-entropy rounds until quiet
            before = [r.vector() for r in self.replicas]
            for a, b in combinations(range(len(self.replicas)), 2):
                self._note(sync_pair(self.replicas[a], self.replicas[b]).report)
            if [r.vector() for r in self.replicas] == before:
                return
        raise AssertionError("anti-entropy did not go quiet")

    def _check_converged(self) -> None:
        roots = [r.merkle_roots() for r in self.replicas]
        assert all(x == roots[0] for x in roots), "Merkle roots differ after heal and flush"
        first = self.replicas[0]
        for other in self.replicas[1:]:  # name the part that differs, if one does
            assert other.roster.digest_value() == first.roster.digest_value()
            assert other.state.memory() == first.state.memory()
            for kind in ("note", "decision", "setting"):
                assert list(other.state.items(kind)) == list(first.state.items(kind)), kind
            assert doc_digest(other.doc("shared")) == doc_digest(first.doc("shared"))
        hashes = {r.state_hash() for r in self.replicas}
        assert len(hashes) == 1, "state hashes differ after heal and flush"
        texts = {str(r.doc("shared").get("body", type=pycrdt.Text)) for r in self.replicas}
        assert len(texts) == 1


MeshNetwork.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMeshConverges = MeshNetwork.TestCase


class MeshNetworkLong(MeshNetwork):
    pass


MeshNetworkLong.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMeshConvergesLong = pytest.mark.timeout(1200)(pytest.mark.slow(MeshNetworkLong.TestCase))

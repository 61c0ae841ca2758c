"""One device's replica: its logs, the roster, the merged state, and the sync entry points.

``Replica.open(dir, key)`` loads (or creates) ``dir/mesh.sqlite3`` and rebuilds everything
in memory from it; nothing but the store is needed to restart. ``write`` appends to this
device's own log; ``receive`` / ``apply_delta`` / ``handle`` take what peers send and
report on every block. Out-of-order blocks wait in a bounded ``PendingBuffer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pycrdt

from mimiverse.mesh import merkle, payloads
from mimiverse.mesh.blocks import GENESIS, Block, ForkProof, Kind
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.hlc import HybridClock, wall_ms
from mimiverse.mesh.identity import (
    DeviceKey,
    Invite,
    JoinRequest,
    Role,
    check_join,
    owner_proof,
)
from mimiverse.mesh.merkle import MerkleLog
from mimiverse.mesh.pending import PendingBuffer
from mimiverse.mesh.roster import Roster, add_op, revoke_op, role_op, rotation_request
from mimiverse.mesh.state import MeshState
from mimiverse.mesh.store import MeshStore
from mimiverse.mesh.sync import Delta, Vector, decode_message, diff, peer_has_more
from mimiverse.mesh.validate import Reason, Rejection, Report, check_block, check_fork_proof

STORE_NAME = "mesh.sqlite3"
RESTORED_META = "restored"
"""Set by a restore: this device's newest blocks may live only on its peers until a sync."""


@dataclass
class AuthorLog:
    """In-memory index of one author's log (the blocks themselves stay in the store)."""

    hashes: list[bytes] = field(default_factory=list)
    hlcs: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    tree: MerkleLog = field(default_factory=MerkleLog)

    def append(self, digest: bytes, hlc: int, epoch: int) -> None:
        self.hashes.append(digest)
        self.hlcs.append(hlc)
        self.epochs.append(epoch)
        self.tree.append(merkle.leaf_hash(digest))

    def truncate(self, size: int) -> None:
        del self.hashes[size:], self.hlcs[size:], self.epochs[size:]
        self.tree.truncate(size)


class Replica:
    """One device's view of the mesh."""

    def __init__(
        self,
        store: MeshStore,
        key: DeviceKey,
        *,
        mesh: bytes | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.store = store
        self.key = key
        self._wall = clock
        stored_mesh = store.get_meta("mesh")
        if stored_mesh is None:
            with store.transaction():
                store.set_meta("mesh", mesh or key.public)
                store.set_meta("author", key.public)
                store.set_meta("epoch", b"0")
            stored_mesh = mesh or key.public
        elif mesh is not None and mesh != stored_mesh:
            store.close()
            raise MeshRejected(
                "this store belongs to another mesh: use another directory", reason="wrong mesh"
            )
        self.mesh = stored_mesh
        self.author = cast(bytes, store.get_meta("author"))
        self.epoch = int(cast(bytes, store.get_meta("epoch")))
        self.clock = HybridClock(clock=clock)
        self.restored = store.get_meta(RESTORED_META) is not None
        self._rebuilding = False
        self.pending = PendingBuffer()
        self._load()

    @classmethod
    def open(
        cls,
        directory: Path,
        key: DeviceKey,
        *,
        mesh: bytes | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> Replica:
        """Open the replica stored in ``directory`` (``mesh``: None makes this the owner)."""
        return cls(MeshStore(directory / STORE_NAME), key, mesh=mesh, clock=clock)

    def close(self) -> None:
        self.store.close()

    # --- loading and rebuilding -----------------------------------------------------

    def _load(self) -> None:
        self.forks: dict[bytes, ForkProof] = {}
        for data in self.store.forks():
            proof = ForkProof.from_bytes(data)
            self.forks[proof.author] = proof
        self._rebuild()

    def _rebuild(self) -> None:
        """Recompute logs, roster and state from the store (after a load or a cut-back).

        The owner's log goes first (it defines the roster); any block the roster now
        rules out — and every block after it — is dropped from the store.
        """
        self._rebuilding = True
        self.roster = Roster(self.mesh)
        self.state = MeshState()
        self.logs: dict[bytes, AuthorLog] = {}
        authors = sorted({a for a, *_ in self.store.index()}, key=self._order)
        with self._transaction():
            for author in authors:
                log = self.logs.setdefault(author, AuthorLog())
                cap = self.cap(author)
                for data in self.store.all_blocks(author):
                    block = Block.from_bytes(data)
                    if self._ruled_out(author, block.seq, block.key_epoch) or (
                        cap is not None and block.seq > cap
                    ):
                        self.store.truncate(author, block.seq - 1)
                        break
                    self._fold(block)
                    log.append(block.hash, block.hlc, block.key_epoch)
                if not log.hashes:
                    del self.logs[author]
        self._rebuilding = False
        for log in self.logs.values():
            for stamp in log.hlcs[-1:]:
                self.clock.observe(stamp)
        own = self.logs.get(self.author)
        if own is not None:  # our next block must come after our last, whatever the wall says
            self.clock.last = max(self.clock.last, own.hlcs[-1])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One store transaction (inner ones join it); on failure memory is rebuilt."""
        if self.store.db.in_transaction:
            yield
            return
        self.store.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.store.db.execute("ROLLBACK")
            self._rebuild()
            raise
        self.store.db.execute("COMMIT")

    def _order(self, author: bytes) -> tuple[bool, bytes]:
        return author != self.mesh, author

    def _fold(self, block: Block) -> None:
        """Apply an accepted block to the roster or the state."""
        if block.kind == "roster":
            change = self.roster.apply(block.payload)
            if change is not None:
                self._recheck(*change)
        else:
            self.state.apply(block)

    def _recheck(self, device: bytes, from_seq: int) -> None:
        """A roster change from ``from_seq``: cut the device's log at the first bad block."""
        log = self.logs.get(device)
        if log is None or self._rebuilding:
            return
        for seq in range(from_seq, len(log.hashes) + 1):
            if self._ruled_out(device, seq, log.epochs[seq - 1]):
                self._cut(device, seq - 1)
                return

    def _ruled_out(self, author: bytes, seq: int, epoch: int) -> bool:
        """Does the roster refuse a held block? Our own blocks signed with a key whose
        rotation the owner's roster block has not yet brought us are kept."""
        device = self.roster.devices.get(author)
        if device is None:
            return True
        term = device.term_at(seq)
        if term.revoked or term.role == "read-only":
            return True
        if term.epoch == epoch:
            return False
        return not (author == self.author and device.current.epoch < epoch <= self.epoch)

    def _cut(self, author: bytes, size: int) -> None:
        """Drop the author's blocks after ``size`` and recompute everything from the store."""
        self.store.truncate(author, size)
        self._rebuild()

    # --- reading ---------------------------------------------------------------------

    def authors(self) -> list[bytes]:
        """Authors with blocks, the owner first."""
        return sorted(self.logs, key=self._order)

    def size(self, author: bytes) -> int:
        log = self.logs.get(author)
        return len(log.hashes) if log else 0

    def hash_at(self, author: bytes, seq: int) -> bytes | None:
        log = self.logs.get(author)
        if log is None or not 1 <= seq <= len(log.hashes):
            return None
        return log.hashes[seq - 1]

    def hlc_at(self, author: bytes, seq: int) -> int:
        return self.logs[author].hlcs[seq - 1]

    def block_at(self, author: bytes, seq: int) -> Block:
        return Block.from_bytes(self.store.block(author, seq))

    def block_bytes(self, author: bytes, first: int, last: int) -> list[bytes]:
        return self.store.blocks(author, first, last)

    def cap(self, author: bytes) -> int | None:
        """The last seq accepted from a quarantined author (None: not quarantined)."""
        proof = self.forks.get(author)
        return proof.seq - 1 if proof else None

    def root(self, author: bytes, size: int | None = None) -> bytes:
        log = self.logs.get(author)
        return log.tree.root(size) if log else merkle.EMPTY_ROOT

    def consistency_proof(self, author: bytes, old: int, new: int) -> list[bytes]:
        return self.logs[author].tree.consistency_proof(old, new)

    def inclusion_proof(self, author: bytes, seq: int) -> list[bytes]:
        return self.logs[author].tree.inclusion_proof(seq - 1)

    def fork_proofs(self) -> dict[bytes, ForkProof]:
        return dict(self.forks)

    def merkle_roots(self) -> dict[bytes, bytes]:
        """RFC 6962 root of each author's log."""
        return {a: log.tree.root() for a, log in sorted(self.logs.items())}

    def authorizes(self, key: bytes) -> bool:
        """May a peer presenting device key ``key`` connect (the transport's roster check)?"""
        return self.roster.holder_of(key) is not None

    def vector(self) -> Vector:
        heads = {a: (len(log.hashes), log.hashes[-1]) for a, log in self.logs.items()}
        return Vector(self.mesh, heads, {a: p.seq for a, p in self.forks.items()})

    def state_hash(self) -> bytes:
        """Hash of the merged state, the roster and the quarantined authors."""
        quarantined: list[Value] = [[a, p.seq] for a, p in sorted(self.forks.items())]
        return self.state.state_hash([self.roster.digest_value(), quarantined])

    def doc(self, name: str) -> pycrdt.Doc:  # type: ignore[type-arg]
        """The shared document ``name``; read it, change it only through ``edit``."""
        return self.state.doc(name)

    # --- writing ---------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes (or receives) into one store commit: all or nothing."""
        with self._transaction():
            yield

    def write(self, kind: Kind, payload: Value) -> Block:
        """Append a block to this device's log (raises MeshRejected if it may not)."""
        term = self.roster.term(self.author, self.size(self.author) + 1)
        if term is None:
            raise MeshRejected(
                "this device is not on the roster yet: sync with the owner first",
                reason="unknown author",
            )
        if term.revoked:
            raise MeshRejected("this device's key was revoked", reason="revoked key")
        if term.role == "read-only":
            raise MeshRejected("this device is read-only", reason="read-only device")
        if self.author in self.forks:
            raise MeshRejected("this device is quarantined", reason="author quarantined")
        if self.restored:
            raise MeshRejected(
                "this device was restored from a backup: sync with a peer first (`mimiverse "
                "mesh sync`) so the blocks it wrote after the backup come back, or a new "
                "write would fork it",
                reason="restored, not synced",
            )
        if kind == "roster" and self.author != self.mesh:
            raise MeshRejected("only the owner writes the roster", reason="not owner")
        problem = self.roster.check(payload) if kind == "roster" else payloads.check(kind, payload)
        if problem is not None:
            raise MeshRejected(f"bad {kind} payload: {problem}", reason="bad payload")
        size = self.size(self.author)
        block = Block.create(
            self.key,
            self.mesh,
            author=self.author,
            seq=size + 1,
            prev_hash=self.hash_at(self.author, size) or GENESIS,
            hlc=self.clock.now(),
            key_epoch=self.epoch,
            kind=kind,
            payload=payload,
        )
        with self._transaction():
            self._accept(block)
        return block

    def put(self, kind: Kind, key: str, value: Value) -> Block:
        """Set ``key`` in the ``kind`` map, building on the value this replica sees."""
        base = self.state.heads_of(kind, key)[: payloads.MAX_BASE]
        return self.write(kind, payloads.put(key, value, base))

    def delete(self, kind: Kind, key: str) -> Block:
        base = self.state.heads_of(kind, key)[: payloads.MAX_BASE]
        return self.write(kind, payloads.delete(key, base))

    def remember(self, item_id: str, value: Value) -> Block:
        return self.write("memory", payloads.add(item_id, value))

    def forget(self, item_id: str) -> Block:
        return self.write("memory", payloads.remove(item_id, self.state.live_tags(item_id)))

    def edit(self, name: str, change: Callable[[pycrdt.Doc], None]) -> Block | None:  # type: ignore[type-arg]
        """Change document ``name`` with ``change(doc)`` and log the Yjs update it made."""
        doc = self.state.doc(name)
        before = doc.get_state()
        change(doc)
        update = doc.get_update(before)
        if update == b"\x00\x00":
            return None
        try:
            return self.write("crdt-update", payloads.crdt_update(name, update))
        except MeshRejected:
            self._rebuild()  # the doc was changed in place: undo that
            raise

    # --- roster (owner) and rotation (device) -----------------------------------------

    def add_device(self, device: bytes, role: Role = "member", name: str = "") -> Block:
        return self.write("roster", add_op(device, role, name))

    def revoke(self, device: bytes) -> Block:
        """Refuse the device's blocks after the last one this replica holds."""
        return self.write("roster", revoke_op(device, self._settled(device)))

    def set_role(self, device: bytes, role: Role) -> Block:
        return self.write("roster", role_op(device, role, self._settled(device)))

    def _settled(self, device: bytes) -> int:
        """The seq a role change or revocation takes effect after: the device's last
        block we hold, but not before its current term (e.g. a rotation) began."""
        known = self.roster.devices.get(device)
        start = known.current.from_seq - 1 if known else 0
        return max(self.size(device), start)

    def create_invite(self, role: Role = "member", ttl_s: int = 24 * 3600) -> Invite:
        """A one-time invite (owner only); kept in the store until used or expired."""
        if self.author != self.mesh:
            raise MeshRejected("only the owner invites devices", reason="not owner")
        invite = Invite.create(self.mesh, role, self._wall() + ttl_s * 1000)
        with self._transaction():
            self.store.put_invite(invite.id, invite.to_text())
        return invite

    def admit(self, request: JoinRequest) -> Block:
        """Add the device of a join request that answers one of our open invites."""
        return self.admit_with_proof(request)[0]

    def admit_with_proof(self, request: JoinRequest) -> tuple[Block, bytes]:
        """``admit``, plus the owner proof the joiner checks (``identity.owner_proof``)."""
        now = self._wall()
        for invite_id, text in self.store.open_invites():
            invite = Invite.from_text(text)
            try:
                check_join(invite, request, now)
            except MeshRejected as exc:
                if exc.reason == "bad invite proof":
                    continue
                raise
            with self._transaction():
                self.store.use_invite(invite_id)
                block = self.add_device(request.device, invite.role, request.name)
            return block, owner_proof(invite.secret, self.mesh, request.device)
        raise MeshRejected("no open invite matches this request", reason="bad invite proof")

    def begin_rotation(self, new_key: DeviceKey) -> dict[str, Value]:
        """Switch this device to ``new_key`` now; returns the op the owner must write.

        The caller keeps ``new_key`` (``DeviceKey.save``). Until the owner's roster block
        arrives, peers wait for the new epoch ("unknown key epoch").
        """
        if self.author == self.mesh:
            raise MeshRejected("the owner's key is the mesh id and does not rotate")
        op = rotation_request(
            self.key, self.mesh, self.author, self.epoch + 1, new_key.public,
            self.size(self.author) + 1,
        )  # fmt: skip
        with self._transaction():
            self.store.set_meta("epoch", str(self.epoch + 1).encode())
            self.store.set_meta("key", new_key.public)  # which key file is current
        self.key, self.epoch = new_key, self.epoch + 1
        return op

    def accept_rotation(self, op: dict[str, Value]) -> Block:
        """Owner: countersign a device's rotation request by writing it to the roster."""
        return self.write("roster", op)

    # --- receiving -------------------------------------------------------------------

    def receive(self, blocks: Iterable[bytes]) -> Report:
        """Validate and take blocks (wire bytes) from a peer; report on each."""
        report = Report()
        with self._transaction():
            self._receive(blocks, report)
        return report

    def _receive(self, blocks: Iterable[bytes], report: Report) -> None:
        decoded: list[Block] = []
        for data in blocks:
            try:
                decoded.append(Block.from_bytes(data))
            except MeshRejected as exc:
                reason: Reason = "oversized" if exc.reason == "oversized" else "malformed"
                report.refuse(Rejection(reason, exc.message))
        decoded.sort(key=lambda b: (*self._order(b.author), b.seq))
        for block in decoded:
            self._offer(block, report)

    def _offer(self, block: Block, report: Report) -> None:
        verdict = check_block(block, self.mesh, self.roster, self)
        if verdict.action == "accept":
            self._accept(block)
            report.accepted.append(block.ref())
            self._drain(block.author, report)
        elif verdict.action == "wait":
            assert verdict.reason is not None
            if self.pending.add(block):
                report.waiting += 1
                report.refuse_block(block, verdict.reason, verdict.detail + " (buffered)")
            else:
                report.refuse_block(block, "pending buffer full", verdict.detail)
        elif verdict.action == "fork":
            assert verdict.fork is not None
            report.refuse_block(block, "equivocation", verdict.detail)
            if self._quarantine(verdict.fork):
                report.forks.append(verdict.fork)
        else:
            assert verdict.reason is not None
            report.refuse_block(block, verdict.reason, verdict.detail)

    def _accept(self, block: Block) -> None:
        self.store.append([(block.author, block.seq, block.hash, block.hlc, block.to_bytes())])
        self.logs.setdefault(block.author, AuthorLog()).append(
            block.hash, block.hlc, block.key_epoch
        )
        self.clock.observe(block.hlc)
        self._fold(block)

    def _drain(self, author: bytes, report: Report) -> None:
        """Offer the author's waiting blocks that now follow its log."""
        while True:
            size = self.size(author)
            block = self.pending.take(author, size + 1)
            if block is None:
                return
            self._offer(block, report)
            if self.size(author) == size:
                return

    def caught_up_with(self, peer: Vector) -> None:
        """A peer's vector: once it holds nothing of ours we lack, a restore is settled."""
        held = peer.heads.get(self.author)
        if self.restored and (held is None or held[0] <= self.size(self.author)):
            with self._transaction():
                self.store.delete_meta(RESTORED_META)
            self.restored = False

    @property
    def pending_count(self) -> int:
        return self.pending.count

    def _quarantine(self, proof: ForkProof) -> bool:
        """Record a fork proof; cut the author's log before the fork. False if not new."""
        known = self.forks.get(proof.author)
        if known is not None and known.seq <= proof.seq:
            return False
        self.forks[proof.author] = proof
        self.store.put_fork(proof.author, proof.seq, proof.to_bytes())
        if self.size(proof.author) >= proof.seq:
            self._cut(proof.author, proof.seq - 1)
        self.pending.discard_from(proof.author, proof.seq)
        return True

    def receive_fork_proofs(self, proofs: Iterable[bytes], report: Report) -> None:
        for data in proofs:
            try:
                proof = ForkProof.from_bytes(data)
            except MeshRejected as exc:
                report.refuse(Rejection("bad fork proof", exc.message))
                continue
            verdict = check_fork_proof(proof, self.mesh, self.roster)
            if verdict.action != "fork":
                assert verdict.reason is not None
                report.refuse(Rejection(verdict.reason, verdict.detail, proof.author, proof.seq))
            elif self._quarantine(proof):
                report.forks.append(proof)

    # --- sync ------------------------------------------------------------------------

    def diff_for(self, vector: Vector) -> Delta:
        """The delta a peer holding ``vector`` lacks."""
        return diff(self, vector)

    def apply_delta(self, delta: Delta) -> Report:
        """Check a delta's consistency proofs, then take its fork proofs and blocks."""
        report = Report()
        if delta.mesh != self.mesh:
            report.refuse(Rejection("wrong mesh", "a delta for another mesh"))
            return report
        with self._transaction():
            self.receive_fork_proofs(delta.forks, report)
            for log in sorted(delta.logs, key=lambda entry: self._order(entry.author)):
                held = self.size(log.author)
                if log.proof is not None and 0 < log.start <= held:
                    old_root = self.root(log.author, log.start)
                    if not merkle.verify_consistency(
                        log.start, log.size, log.proof, old_root, log.root
                    ):
                        report.refuse(
                            Rejection(
                                "inconsistent log",
                                f"the sender's head ({log.size}) does not extend ours at "
                                f"{log.start}: its blocks were not taken",
                                log.author,
                            )
                        )
                        continue
                blocks = log.blocks
                if log.proof is not None:
                    blocks = self._skip_held(log.author, log.start, blocks, report)
                self._receive(blocks, report)
                if (
                    log.proof is not None
                    and self.size(log.author) == log.size
                    and self.root(log.author) != log.root
                ):
                    report.refuse(
                        Rejection("inconsistent log", "root differs from the sender's", log.author)
                    )
        return report

    def _skip_held(
        self, author: bytes, start: int, blocks: list[bytes], report: Report
    ) -> list[bytes]:
        """Drop the leading blocks that are byte for byte the ones we hold at
        ``start+1 …`` (reported "replayed", as ``check_block`` would), without decoding or
        verifying them: peers that gossip to each other often send a block twice."""
        overlap = min(len(blocks), self.size(author) - start)
        if overlap <= 0:
            return blocks
        same = 0
        held = self.store.blocks(author, start + 1, start + overlap)
        for data, mine in zip(blocks, held, strict=False):
            if data != mine:
                break
            same += 1
            seq = start + same
            report.refuse(
                Rejection(
                    "replayed", f"already hold block {seq}", author, seq, self.hash_at(author, seq)
                )
            )
        return blocks[same:]

    def handle(self, message: bytes) -> tuple[list[bytes], Report]:
        """One sync message in; the messages to send back to that peer, and a report.

        A vector is answered with the delta the peer lacks (if any) and, unless it was
        itself a reply, with our vector when the peer holds something we lack. A delta is
        answered with our vector when it made progress and has ``more``, or brought a
        new fork proof. Malformed messages raise MeshRejected (report and drop them).
        """
        return self.answer(decode_message(message, self.mesh))

    def answer(self, received: Vector | Delta) -> tuple[list[bytes], Report]:
        """``handle`` for a message already decoded (``sync.decode_message``)."""
        if isinstance(received, Vector):
            self.caught_up_with(received)
            replies = []
            delta = self.diff_for(received)
            if delta:
                replies.append(delta.to_message())
            caps = {a: p.seq - 1 for a, p in self.forks.items()}
            if not received.reply and peer_has_more(self.vector(), received, caps):
                replies.append(self.vector().to_message(reply=True))
            return replies, Report()
        report = self.apply_delta(received)
        go_on = (received.more and bool(report.accepted)) or bool(report.forks)
        return ([self.vector().to_message()] if go_on else []), report

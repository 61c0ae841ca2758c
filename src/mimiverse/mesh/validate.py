"""Checking one incoming block against the roster and the logs a replica holds.

``check_block`` returns a ``Verdict``: accept, wait (a sequence gap: buffered until the
blocks before it arrive), fork (a valid block that contradicts one we hold: equivocation),
or reject with a reason. Every refusal lands in a ``Report`` with its reason; nothing
refused changes the logs or the state. Cheap checks run before the signature, and the
signature before anything that could be stored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mimiverse.mesh import payloads
from mimiverse.mesh.blocks import GENESIS, Block, BlockRef, ForkProof
from mimiverse.mesh.roster import Roster

Reason = Literal[
    "oversized",  # over MAX_BLOCK_BYTES (or a message over its limit)
    "malformed",  # not canonical CBOR, or not the block / message shape
    "wrong mesh",  # a message for another mesh
    "unknown author",  # not on the roster (yet: the roster block may still be on its way)
    "revoked key",  # the device's term at this seq is revoked
    "unknown key epoch",  # an epoch the roster does not know (yet)
    "wrong key epoch",  # an epoch that is not the one for this seq
    "bad signature",  # forged, or tampered after signing
    "replayed",  # a block we already hold
    "equivocation",  # a second, different block at a held (author, seq): fork proof made
    "author quarantined",  # past the last block before the author's proven fork
    "sequence gap",  # blocks before it are missing: buffered, not accepted
    "pending buffer full",  # a gap and no room left to buffer it
    "wrong prev_hash",  # does not chain onto the block we hold before it
    "hlc not increasing",  # an author's clock went backwards
    "read-only device",  # read-only devices may not write
    "not owner",  # only the owner writes roster blocks
    "bad payload",  # the payload is not what its kind carries
    "inconsistent log",  # a consistency proof that does not verify
    "bad fork proof",  # a gossiped fork proof that does not prove a fork
]
MAX_REPORTED = 200


class Logs(Protocol):
    """What validation needs to know about the logs a replica holds."""

    def size(self, author: bytes) -> int: ...
    def hash_at(self, author: bytes, seq: int) -> bytes | None: ...
    def hlc_at(self, author: bytes, seq: int) -> int: ...
    def block_at(self, author: bytes, seq: int) -> Block: ...
    def cap(self, author: bytes) -> int | None: ...


@dataclass(frozen=True)
class Verdict:
    action: Literal["accept", "wait", "fork", "reject"]
    reason: Reason | None = None
    detail: str = ""
    fork: ForkProof | None = None


ACCEPT = Verdict("accept")


def reject(reason: Reason, detail: str = "") -> Verdict:
    return Verdict("reject", reason, detail)


def check_block(block: Block, mesh: bytes, roster: Roster, logs: Logs) -> Verdict:
    """Decide what to do with ``block`` (it decoded strictly, within the size limit)."""
    author, seq = block.author, block.seq
    held = logs.hash_at(author, seq)
    if held == block.hash:
        return reject("replayed", f"already hold block {seq}")
    cap = logs.cap(author)
    if cap is not None and seq > cap:
        return reject("author quarantined", f"the author forked at {cap + 1}")
    device = roster.devices.get(author)
    if device is None:
        return reject("unknown author", "not on the roster this replica holds")
    term = device.term_at(seq)
    if term.revoked:
        return reject("revoked key", f"the device is revoked from seq {term.from_seq}")
    if block.key_epoch != term.epoch:
        known = any(t.epoch == block.key_epoch for t in device.terms)
        reason: Reason = "wrong key epoch" if known else "unknown key epoch"
        return reject(reason, f"block {seq} must be signed with epoch {term.epoch}")
    if not block.signed_by(term.key, mesh):
        return reject("bad signature", f"not signed by the epoch-{term.epoch} key")
    if held is not None:
        proof = ForkProof.of(logs.block_at(author, seq), block)
        return Verdict("fork", "equivocation", f"two blocks at seq {seq}", proof)
    size = logs.size(author)
    if seq > size + 1:
        return Verdict("wait", "sequence gap", f"have {size}, got {seq}")
    expected = GENESIS if seq == 1 else logs.hash_at(author, seq - 1)
    if block.prev_hash != expected:
        return reject("wrong prev_hash", f"block {seq} does not chain onto block {seq - 1}")
    if seq > 1 and block.hlc <= logs.hlc_at(author, seq - 1):
        return reject("hlc not increasing", f"block {seq}'s clock is not after block {seq - 1}'s")
    if term.role == "read-only":
        return reject("read-only device")
    if block.kind == "roster":
        if author != mesh:
            return reject("not owner", "only the owner writes roster blocks")
        problem = roster.check(block.payload)
    else:
        problem = payloads.check(block.kind, block.payload)
    if problem is not None:
        return reject("bad payload", problem)
    return ACCEPT


def check_fork_proof(proof: ForkProof, mesh: bytes, roster: Roster) -> Verdict:
    """A gossiped fork proof counts only if both blocks are validly signed for their seq."""
    device = roster.devices.get(proof.author)
    if device is None:
        return reject("unknown author", "cannot check a fork proof for an unknown author")
    term = device.term_at(proof.seq)
    for block in (proof.first, proof.second):
        if block.key_epoch != term.epoch or not block.signed_by(term.key, mesh):
            return reject("bad fork proof", "a block of the proof is not validly signed")
    return Verdict("fork", "equivocation", f"two blocks at seq {proof.seq}", proof)


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str = ""
    author: bytes | None = None
    seq: int | None = None
    hash: bytes | None = None


@dataclass
class Report:
    """What became of the blocks and proofs a replica was given."""

    accepted: list[BlockRef] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)  # first MAX_REPORTED
    counts: Counter[str] = field(default_factory=Counter)  # every refusal, by reason
    forks: list[ForkProof] = field(default_factory=list)  # proofs new to this replica
    waiting: int = 0  # blocks buffered for a sequence gap

    def refuse(self, rejection: Rejection) -> None:
        self.counts[rejection.reason] += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append(rejection)

    def refuse_block(self, block: Block, reason: Reason, detail: str = "") -> None:
        self.refuse(Rejection(reason, detail, block.author, block.seq, block.hash))

    def merge(self, other: Report) -> None:
        self.accepted.extend(other.accepted)
        for rejection in other.rejected:
            if len(self.rejected) < MAX_REPORTED:
                self.rejected.append(rejection)
        self.counts.update(other.counts)
        self.forks.extend(other.forks)
        self.waiting += other.waiting

    @property
    def reasons(self) -> set[str]:
        return set(self.counts)

    def summary(self) -> dict[str, object]:
        return {
            "accepted": len(self.accepted),
            "rejected": dict(self.counts),
            "forks": len(self.forks),
            "waiting": self.waiting,
        }

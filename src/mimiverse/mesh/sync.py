"""Anti-entropy messages and the delta between two replicas.

Two messages, both canonical CBOR maps (``decode_message`` is strict)::

    vector: {"t": "vector", "mesh": mesh id,
             "heads": [[author, seq, head hash], …]   sorted by author
             "forks": [[author, seq], …]              fork proofs the sender holds
             "reply": bool}                           false: "send me what I lack, and
                                                      your vector if I hold more"

    delta:  {"t": "delta", "mesh": mesh id,
             "logs": [{"author": a, "start": n, "size": m, "root": r,
                       "proof": [hash, …] | null, "blocks": [wire block, …]}, …],
             "forks": [fork proof bytes, …],
             "more": bool}

A ``delta`` answers a ``vector``; a vector with ``reply`` false is also answered with
the receiver's own vector (``reply`` true) when the sender holds more, so one round
syncs both ways. A delta is answered with a vector (``reply`` false) only when it made
progress and says there is more (``more``), or brought a new fork proof: so an exchange
always ends, even between peers that hold blocks the other refuses. Per author, ``blocks`` are the sender's blocks
``start+1 …`` (cut short by the message budget: then ``more`` is true and the receiver
sends its vector again), ``(size, root)`` is the sender's tree head for that log, and
``proof`` is the RFC 6962 consistency proof from the receiver's tree at ``start`` (the
head in its vector) to ``(size, root)``: the receiver checks it against its own root
before taking any block. ``proof`` is null only when the sender's block at the
receiver's head differs: then ``blocks`` are *fork probes* — the sender's blocks at the
receiver's head, the 7 before it, and at exponentially spaced seqs below (head-8,
head-16, …, 1). The lowest one that contradicts the receiver's becomes a fork proof;
the receiver cuts the author's log before it and answers with its vector, so the
search goes on until both sides hold the same prefix.
Each block is still checked on its own (signature, chain, roster). Reconciliation is by
exact version vectors, never by Bloom filters. The owner's log (the roster) goes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, cast

from mimiverse.mesh import codec
from mimiverse.mesh.blocks import HASH_SIZE, ForkProof
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected, NotCanonical
from mimiverse.mesh.identity import KEY_SIZE

MAX_MESSAGE_BYTES = 1 << 20  # one sync message (the transport's max_message must allow it)
MAX_DELTA_BYTES = 768 * 1024  # blocks, proofs and fork proofs in one delta (the rest: framing)
MAX_DELTA_BLOCKS = 4096  # blocks in one delta
ENTRY_OVERHEAD = 160  # bytes of one log entry besides its blocks and proof (a bound)
MAX_AUTHORS = 4096  # entries in one vector
FORK_WINDOW = 8  # contiguous fork probes below a contradicted head (then exponential)


@dataclass(frozen=True)
class Vector:
    """What a replica holds: per author (seq, head hash), and which forks it has proven."""

    mesh: bytes
    heads: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    forks: dict[bytes, int] = field(default_factory=dict)
    reply: bool = False

    def to_message(self, *, reply: bool = False) -> bytes:
        heads: list[Value] = [[a, s, h] for a, (s, h) in sorted(self.heads.items())]
        forks: list[Value] = [[a, s] for a, s in sorted(self.forks.items())]
        return codec.encode(
            {"t": "vector", "mesh": self.mesh, "heads": heads, "forks": forks, "reply": reply}
        )


@dataclass(frozen=True)
class LogDelta:
    author: bytes
    start: int
    size: int
    root: bytes
    proof: list[bytes] | None
    blocks: list[bytes]

    def to_value(self) -> Value:
        proof: Value = None if self.proof is None else list[Value](self.proof)
        return {
            "author": self.author,
            "start": self.start,
            "size": self.size,
            "root": self.root,
            "proof": proof,
            "blocks": list[Value](self.blocks),
        }


@dataclass(frozen=True)
class Delta:
    mesh: bytes
    logs: list[LogDelta] = field(default_factory=list)
    forks: list[bytes] = field(default_factory=list)
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.logs or self.forks)

    def to_message(self) -> bytes:
        return codec.encode(
            {
                "t": "delta",
                "mesh": self.mesh,
                "logs": [log.to_value() for log in self.logs],
                "forks": list[Value](self.forks),
                "more": self.more,
            }
        )

    @property
    def block_count(self) -> int:
        return sum(len(log.blocks) for log in self.logs)


def _bad(what: str) -> MeshRejected:
    return MeshRejected(f"malformed sync message: {what}", reason="malformed")


def _nat(value: Value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad("expected a natural number")
    return value


def _key(value: Value, size: int = KEY_SIZE) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise _bad(f"expected {size} bytes")
    return value


def _list(value: Value, limit: int) -> list[Value]:
    if not isinstance(value, list) or len(value) > limit:
        raise _bad(f"expected a list of at most {limit}")
    return value


def decode_message(data: bytes, mesh: bytes) -> Vector | Delta:
    """Decode a sync message for ``mesh`` strictly (raises MeshRejected)."""
    try:
        message = codec.decode(data, max_bytes=MAX_MESSAGE_BYTES)
    except NotCanonical as exc:
        reason = "oversized" if len(data) > MAX_MESSAGE_BYTES else "malformed"
        raise MeshRejected(f"sync message refused: {exc}", reason=reason) from None
    if not isinstance(message, dict):
        raise _bad("not a map")
    if message.get("mesh") != mesh:
        raise MeshRejected("sync message for another mesh", reason="wrong mesh")
    kind = message.get("t")
    if kind == "vector" and set(message) == {"t", "mesh", "heads", "forks", "reply"}:
        heads: dict[bytes, tuple[int, bytes]] = {}
        for entry in _list(message["heads"], MAX_AUTHORS):
            row = _list(entry, 3)
            if len(row) != 3:
                raise _bad("a head is [author, seq, hash]")
            heads[_key(row[0])] = (_nat(row[1]), _key(row[2], HASH_SIZE))
        forks: dict[bytes, int] = {}
        for entry in _list(message["forks"], MAX_AUTHORS):
            row = _list(entry, 2)
            if len(row) != 2:
                raise _bad("a fork entry is [author, seq]")
            forks[_key(row[0])] = _nat(row[1])
        if not isinstance(message["reply"], bool):
            raise _bad("reply is a bool")
        return Vector(mesh, heads, forks, message["reply"])
    if kind == "delta" and set(message) == {"t", "mesh", "logs", "forks", "more"}:
        logs = [_log_delta(v) for v in _list(message["logs"], MAX_AUTHORS)]
        fork_list = _list(message["forks"], MAX_AUTHORS)
        if not all(isinstance(f, bytes) for f in fork_list):
            raise _bad("fork proofs are byte strings")
        if not isinstance(message["more"], bool):
            raise _bad("more is a bool")
        return Delta(mesh, logs, cast(list[bytes], fork_list), message["more"])
    raise _bad("unknown message type or fields")


def _log_delta(value: Value) -> LogDelta:
    if not isinstance(value, dict) or set(value) != {
        "author", "start", "size", "root", "proof", "blocks",
    }:  # fmt: skip
        raise _bad("a log entry is {author, start, size, root, proof, blocks}")
    proof_value = value["proof"]
    proof = None
    if proof_value is not None:
        proof = [_key(h, HASH_SIZE) for h in _list(proof_value, 128)]
    blocks = _list(value["blocks"], MAX_DELTA_BLOCKS)
    if not all(isinstance(b, bytes) for b in blocks):
        raise _bad("blocks are byte strings")
    return LogDelta(
        _key(value["author"]),
        _nat(value["start"]),
        _nat(value["size"]),
        _key(value["root"], HASH_SIZE),
        proof,
        cast(list[bytes], blocks),
    )


class LogSource(Protocol):
    """What ``diff`` reads from a replica."""

    mesh: bytes

    def authors(self) -> list[bytes]: ...
    def size(self, author: bytes) -> int: ...
    def hash_at(self, author: bytes, seq: int) -> bytes | None: ...
    def root(self, author: bytes, size: int | None = None) -> bytes: ...
    def consistency_proof(self, author: bytes, old: int, new: int) -> list[bytes]: ...
    def block_bytes(self, author: bytes, first: int, last: int) -> list[bytes]: ...
    def fork_proofs(self) -> dict[bytes, ForkProof]: ...


def diff(source: LogSource, peer: Vector) -> Delta:
    """What ``source`` should send a peer that holds ``peer``: only what it lacks.

    Fork proofs go first, then the owner's log, then the others; whatever does not fit
    in ``MAX_DELTA_BYTES`` / ``MAX_DELTA_BLOCKS`` waits for the next round (``more``).
    """
    room, count, more = MAX_DELTA_BYTES, MAX_DELTA_BLOCKS, False
    forks: list[bytes] = []
    for author, fork in sorted(source.fork_proofs().items()):
        if peer.forks.get(author, fork.seq + 1) > fork.seq:
            data = fork.to_bytes()
            if len(data) > room:
                more = True
                break
            forks.append(data)
            room -= len(data)
    logs: list[LogDelta] = []
    for author in source.authors():
        mine = source.size(author)
        theirs, their_head = peer.heads.get(author, (0, b""))
        if mine == 0 or theirs > mine:
            continue
        if theirs > 0 and source.hash_at(author, theirs) != their_head:
            probes: list[tuple[int, bytes]] = []
            room -= ENTRY_OVERHEAD
            for seq in reversed(fork_probes(theirs)):  # the contradicted head first
                data = source.block_bytes(author, seq, seq)[0]
                if len(data) > room or count <= 0:
                    more = True
                    break
                probes.append((seq, data))
                room, count = room - len(data), count - 1
            if probes:
                probes.sort()
                blocks = [data for _, data in probes]
                root = source.root(author)
                logs.append(LogDelta(author, probes[0][0] - 1, mine, root, None, blocks))
            continue
        if theirs == mine:
            continue
        proof = source.consistency_proof(author, theirs, mine)
        room -= ENTRY_OVERHEAD + (HASH_SIZE + 2) * len(proof)
        blocks = []
        for data in source.block_bytes(author, theirs + 1, min(mine, theirs + max(count, 0))):
            if len(data) > room:
                break
            blocks.append(data)
            room -= len(data)
        count -= len(blocks)
        if theirs + len(blocks) < mine:
            more = True
        if blocks:
            logs.append(LogDelta(author, theirs, mine, source.root(author), proof, blocks))
    return Delta(source.mesh, logs, forks, more)


def fork_probes(head: int) -> list[int]:
    """Seqs probed when the block at ``head`` differs: a window, then powers of two."""
    seqs = set(range(max(1, head - FORK_WINDOW + 1), head + 1))
    step = FORK_WINDOW
    while head - step >= 1:
        seqs.add(head - step)
        step *= 2
    seqs.add(1)
    return sorted(seqs)


def peer_has_more(mine: Vector, peer: Vector, caps: dict[bytes, int]) -> bool:
    """Does ``peer`` hold anything ``mine`` lacks (so it is worth sending our vector)?"""
    for author, (seq, head) in peer.heads.items():
        cap = caps.get(author)
        usable = seq if cap is None else min(seq, cap)
        have, my_head = mine.heads.get(author, (0, b""))
        if usable > have or (usable == have == seq and have > 0 and head != my_head):
            return True
    return any(mine.forks.get(author, seq + 1) > seq for author, seq in peer.forks.items())

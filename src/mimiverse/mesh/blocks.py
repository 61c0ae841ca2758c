"""Signed blocks: the unit each device appends to its own log.

Body (canonical CBOR, what is hashed)::

    [1, author, seq, prev_hash, hlc, key_epoch, kind, payload]

``hash = SHA-256(body)``; ``signature = Ed25519(key of author at key_epoch,
"mimiverse-mesh/v1/block" 0x00 mesh hash)``. On the wire a block is the canonical CBOR
array ``[body, signature]`` (both byte strings), at most ``MAX_BLOCK_BYTES``. ``seq``
counts from 1; ``prev_hash`` of block 1 is 32 zero bytes. Decoding is strict: a block
whose bytes are not canonical is refused, so every block has exactly one encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, get_args

from mimiverse.mesh import codec
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected, NotCanonical
from mimiverse.mesh.identity import KEY_SIZE, SIGNATURE_SIZE, DeviceKey, verify

Kind = Literal["note", "decision", "snippet", "memory", "setting", "crdt-update", "roster"]
KINDS: tuple[Kind, ...] = get_args(Kind)
VERSION = 1
GENESIS = bytes(32)
HASH_SIZE = 32
MAX_BLOCK_BYTES = 64 * 1024  # a whole wire block; split larger edits
MAX_SEQ = 2**48
PURPOSE = b"block"


@dataclass(frozen=True)
class Block:
    """One signed, hashed entry of an author's log."""

    author: bytes
    seq: int
    prev_hash: bytes
    hlc: int
    key_epoch: int
    kind: Kind
    payload: Value
    body: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    wire: bytes = field(repr=False, compare=False, default=b"")

    @classmethod
    def create(
        cls,
        key: DeviceKey,
        mesh: bytes,
        *,
        author: bytes,
        seq: int,
        prev_hash: bytes,
        hlc: int,
        key_epoch: int,
        kind: Kind,
        payload: Value,
    ) -> Block:
        """Encode, hash and sign a new block (raises MeshRejected if it is too large)."""
        body = codec.encode([VERSION, author, seq, prev_hash, hlc, key_epoch, kind, payload])
        digest = hashlib.sha256(body).digest()
        signature = key.sign(PURPOSE, mesh, digest)
        wire = codec.encode([body, signature])
        block = cls(
            author, seq, prev_hash, hlc, key_epoch, kind, payload, body, signature, digest, wire
        )
        size = len(wire)
        if size > MAX_BLOCK_BYTES:
            raise MeshRejected(
                f"a block is at most {MAX_BLOCK_BYTES} bytes ({size} here): split the payload",
                reason="oversized",
            )
        return block

    def to_bytes(self) -> bytes:
        """The wire form: canonical CBOR ``[body, signature]``."""
        return self.wire or codec.encode([self.body, self.signature])

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """Decode a wire block strictly; raises MeshRejected (reason oversized/malformed)."""
        if len(data) > MAX_BLOCK_BYTES:
            raise MeshRejected(
                f"block of {len(data)} bytes is over {MAX_BLOCK_BYTES}", reason="oversized"
            )
        try:
            outer = codec.decode(data)
            match outer:
                case [bytes(body), bytes(signature)] if len(signature) == SIGNATURE_SIZE:
                    fields = codec.decode(body)
                case _:
                    raise MeshRejected("not [body, signature]", reason="malformed")
        except NotCanonical as exc:
            raise MeshRejected(f"block is not canonical CBOR: {exc}", reason="malformed") from None
        match fields:
            case [
                1,
                bytes(author),
                int(seq),
                bytes(prev),
                int(hlc),
                int(epoch),
                str(kind),
                payload,
            ]:
                if (
                    len(author) == KEY_SIZE
                    and len(prev) == HASH_SIZE
                    and not any(isinstance(v, bool) for v in (seq, hlc, epoch))
                    and 1 <= seq <= MAX_SEQ
                    and hlc >= 0
                    and epoch >= 0
                    and kind in KINDS
                ):
                    digest = hashlib.sha256(body).digest()
                    return cls(
                        author, seq, prev, hlc, epoch, kind, payload, body,
                        signature, digest, data,
                    )  # fmt: skip
        raise MeshRejected("block fields are not [1, author, seq, …]", reason="malformed")

    def signed_by(self, public: bytes, mesh: bytes) -> bool:
        """Is the signature valid for ``public`` in ``mesh``?"""
        return verify(public, PURPOSE, mesh, self.hash, self.signature)

    def ref(self) -> BlockRef:
        return BlockRef(self.author, self.seq, self.hash)


@dataclass(frozen=True)
class BlockRef:
    """Which block: (author, seq, hash)."""

    author: bytes
    seq: int
    hash: bytes


@dataclass(frozen=True)
class ForkProof:
    """Two validly signed blocks by one author with the same seq: proof of equivocation."""

    first: Block
    second: Block

    @classmethod
    def of(cls, a: Block, b: Block) -> ForkProof:
        """Order the pair by hash so a proof has one encoding."""
        if a.author != b.author or a.seq != b.seq or a.hash == b.hash:
            raise MeshRejected("a fork proof needs two different blocks at one (author, seq)")
        return cls(a, b) if a.hash < b.hash else cls(b, a)

    @property
    def author(self) -> bytes:
        return self.first.author

    @property
    def seq(self) -> int:
        return self.first.seq

    def to_bytes(self) -> bytes:
        return codec.encode([self.first.to_bytes(), self.second.to_bytes()])

    @classmethod
    def from_bytes(cls, data: bytes) -> ForkProof:
        match codec.decode(data, max_bytes=2 * MAX_BLOCK_BYTES + 16):
            case [bytes(a), bytes(b)]:
                proof = cls.of(Block.from_bytes(a), Block.from_bytes(b))
                if proof.first.hash != Block.from_bytes(a).hash:
                    raise MeshRejected("fork proof blocks out of order", reason="malformed")
                return proof
        raise MeshRejected("a fork proof is [block, block]", reason="malformed")

"""RFC 6962 / RFC 9162 Merkle trees: tree hashes, inclusion and consistency proofs.

``MerkleLog`` keeps every complete subtree hash of an append-only list of leaf hashes, so
appending is O(log n) and proofs are O(log² n) without rehashing the log. The verifiers
are pure functions over hashes (``verify_inclusion``, ``verify_consistency`` and the
subtree variants of the Merkle Tree Certificates draft); they are checked against the
Certificate Transparency test vectors. Every verifier returns ``False`` (never raises) for
a proof that does not check out, including malformed sizes and hash lengths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _bit_ceil(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 0 else 1


class MerkleLog:
    """An append-only list of leaf hashes with its complete subtree hashes.

    ``levels[k][i]`` is the hash of the perfect subtree of 2**k leaves starting at leaf
    ``i * 2**k``.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already ``leaf_hash``-ed)."""
        level = 0
        self.levels[0].append(leaf)
        while len(self.levels[level]) % 2 == 0:
            row = self.levels[level]
            parent = node_hash(row[-2], row[-1])
            level += 1
            if level == len(self.levels):
                self.levels.append([])
            self.levels[level].append(parent)

    def truncate(self, size: int) -> None:
        """Drop every leaf from ``size`` on (the log is cut back after a revocation or fork)."""
        for k, row in enumerate(self.levels):
            del row[size >> k :]
        while len(self.levels) > 1 and not self.levels[-1]:
            self.levels.pop()

    def leaf(self, index: int) -> bytes:
        return self.levels[0][index]

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end); 0 ≤ start < end ≤ size, as RFC 6962 splits them."""
        n = end - start
        if n == 1:
            return self.levels[0][start]
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self.levels[level][start >> level]
        k = _split(n)
        return node_hash(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The tree head for the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside 0..{self.size}")
        return EMPTY_ROOT if size == 0 else self.range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if index - start < k:
            return [*self._path(index, start, start + k), self.range_hash(start + k, end)]
        return [*self._path(index, start + k, end), self.range_hash(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(old_size, D[0:new_size]); empty when the sizes are equal or 0."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.range_hash(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.range_hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.range_hash(start, start + k)]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    return MerkleLog(leaf_hashes).root()


# --- verification (pure functions; False on any malformed input) ---------------------------


def _ok_hash(value: bytes) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, sibling in enumerate(proof):
        seed = node_hash(seed, sibling) if (index >> i) & 1 == 0 else node_hash(sibling, seed)
    return seed


def _chain_border(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to, or None if its shape is wrong."""
    if not 0 <= index < size or not _ok_hash(leaf) or not all(_ok_hash(h) for h in proof):
        return None
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(proof) != inner + border:
        return None
    return _chain_border(_chain_inner(leaf, proof[:inner], index), proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Does ``proof`` show leaf hash ``leaf`` at ``index`` in the tree (size, root)?"""
    calculated = root_from_inclusion(index, size, leaf, proof)
    return calculated is not None and _ok_hash(root) and calculated == root


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """Does ``proof`` show the tree (new_size, new_root) extends (old_size, old_root)?

    A proof from the empty tree is meaningless and refused, as in RFC 9162.
    """
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not (proof and _ok_hash(old_root) and _ok_hash(new_root)):
        return False
    if not all(_ok_hash(h) for h in proof):
        return False
    calculated = _root_from_subtree_consistency(0, old_size, new_size, proof, old_root)
    return calculated is not None and calculated == new_root


def _subtree_valid(start: int, end: int) -> bool:
    return 0 <= start < end and start % _bit_ceil(end - start) == 0


def verify_subtree_inclusion(
    index: int, start: int, end: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Inclusion of leaf ``index`` in the subtree [start, end) with hash ``root``."""
    if not _subtree_valid(start, end) or not start <= index < end:
        return False
    return verify_inclusion(index - start, end - start, leaf, proof, root)


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], sub_root: bytes, root: bytes
) -> bool:
    """Does the subtree [start, end) with hash ``sub_root`` belong to the tree (size, root)?

    An empty subtree belongs to any tree, with an empty proof and the empty tree's hash.
    """
    if start == end:
        return 0 <= start <= size and not proof and sub_root == EMPTY_ROOT
    if not _subtree_valid(start, end) or size < end:
        return False
    if start == 0 and end == size:
        return not proof and sub_root == root
    if not (proof and _ok_hash(sub_root) and _ok_hash(root)):
        return False
    if not all(_ok_hash(h) for h in proof):
        return False
    calculated = _root_from_subtree_consistency(start, end, size, proof, sub_root)
    return calculated is not None and calculated == root


def _root_from_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], sub_root: bytes
) -> bytes | None:
    height = ((end - 1) ^ start).bit_length()  # height of the [start, end) subtree
    if end == size:
        # The subtree's root lies on the right border: only left siblings above it.
        if len(proof) != bin(start >> height).count("1"):
            return None
        return _chain_border(sub_root, proof)
    fork = ((end - 1) ^ (size - 1)).bit_length()  # where paths to end-1 and size-1 part
    width = end - start
    shift = (width & -width).bit_length() - 1  # level of the lowest full subtree in it
    if end - start == 1 << shift:
        seed, rest = sub_root, list(proof)
    else:
        seed, rest = proof[0], list(proof[1:])
    if len(rest) != (fork - shift) + bin((end - 1) >> fork).count("1"):
        return None
    # Climb from level ``shift`` to the subtree's root twice: once as the old tree saw it
    # (left siblings only), once grown into the new tree (right siblings below the fork).
    old, grown, used = seed, seed, 0
    for level in range(shift, height):
        if ((end - 1) >> level) & 1:
            old = node_hash(rest[used], old)
            grown = node_hash(rest[used], grown)
            used += 1
        elif level < fork:
            grown = node_hash(grown, rest[used])
            used += 1
    if old != sub_root:
        return None
    index = start >> height
    level_size = ((size - 1) >> height) + 1
    return root_from_inclusion(index, level_size, grown, rest[used:])

"""RFC 6962 Merkle trees against every Certificate Transparency test vector, plus properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimiverse.mesh import merkle
from mimiverse.mesh.merkle import MerkleLog

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "merkle"
# The RFC 6962 test leaves behind the vectors' reference tree.
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


def _vectors(kind: str) -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no vectors at {VECTORS}"))]
    files = sorted((VECTORS / kind).rglob("*.json"))
    cases = []
    for f in files:
        case = json.loads(f.read_text())
        # Numbered folders are proofs in the reference tree of the RFC 6962 test leaves.
        case["_reference"] = f.parent.name.isdigit() and f.parent.parent.name == kind
        cases.append(pytest.param(case, id=str(f.relative_to(VECTORS))))
    return cases


def _numbered(case: dict[str, Any]) -> bool:
    return bool(case["_reference"])


def _b(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b(h) for h in case["proof"] or []]


def _reference() -> MerkleLog:
    return MerkleLog([merkle.leaf_hash(leaf) for leaf in RFC_LEAVES])


@pytest.mark.parametrize("case", _vectors("inclusion"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    ok = merkle.verify_inclusion(
        case["leafIdx"], case["treeSize"], _b(case["leafHash"]), _proof(case), _b(case["root"])
    )
    assert ok is not case["wantErr"], case["desc"]
    if not case["wantErr"] and _numbered(case):
        log = _reference()
        assert log.root(case["treeSize"]) == _b(case["root"])
        assert log.inclusion_proof(case["leafIdx"], case["treeSize"]) == _proof(case)


@pytest.mark.parametrize("case", _vectors("consistency"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    ok = merkle.verify_consistency(
        case["size1"], case["size2"], _proof(case), _b(case["root1"]), _b(case["root2"])
    )
    assert ok is not case["wantErr"], case["desc"]
    if not case["wantErr"] and _numbered(case):
        log = _reference()
        assert log.root(case["size1"]) == _b(case["root1"])
        assert log.consistency_proof(case["size1"], case["size2"]) == _proof(case)


@pytest.mark.parametrize("case", _vectors("subtreeinclusion"))
def test_subtree_inclusion_vectors(case: dict[str, Any]) -> None:
    ok = merkle.verify_subtree_inclusion(
        case["leafIdx"],
        case["start"],
        case["end"],
        _b(case["leafHash"]),
        _proof(case),
        _b(case["root"]),
    )
    assert ok is not case["wantErr"], case["desc"]


@pytest.mark.parametrize("case", _vectors("subtreeconsistency"))
def test_subtree_consistency_vectors(case: dict[str, Any]) -> None:
    ok = merkle.verify_subtree_consistency(
        case["start"],
        case["end"],
        case["size"],
        _proof(case),
        _b(case["root1"]),
        _b(case["root2"]),
    )
    assert ok is not case["wantErr"], case["desc"]


def test_vector_count() -> None:
    if not VECTORS.is_dir():
        pytest.skip(f"no vectors at {VECTORS}")
    assert len(list(VECTORS.rglob("*.json"))) >= 500


# --- properties ------------------------------------------------------------------------


def _mth(leaves: list[bytes]) -> bytes:
    """The RFC 6962 definition, recursively, as an oracle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=70))
def test_roots_match_the_definition_at_every_size(n: int) -> None:
    leaves = _leaves(n)
    log = MerkleLog(leaves)
    for size in range(n + 1):
        assert log.root(size) == _mth(leaves[:size])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_verify_and_any_bit_flip_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=300))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    log = MerkleLog(_leaves(size))
    proof, root, leaf = log.inclusion_proof(index), log.root(), log.leaf(index)
    assert merkle.verify_inclusion(index, size, leaf, proof, root)
    bit = data.draw(st.integers(min_value=0, max_value=10**6))
    target = data.draw(st.sampled_from(["leaf", "root", "proof"] if proof else ["leaf", "root"]))
    if target == "leaf":
        assert not merkle.verify_inclusion(index, size, _flip(leaf, bit), proof, root)
    elif target == "root":
        assert not merkle.verify_inclusion(index, size, leaf, proof, _flip(root, bit))
    else:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not merkle.verify_inclusion(index, size, leaf, bad, root)
    # Wrong positions and truncated or padded proofs fail too.
    assert not merkle.verify_inclusion(index, size, leaf, [*proof, root], root)
    if proof:
        assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
    if size > 1:
        other = (index + 1) % size
        assert not merkle.verify_inclusion(other, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_verify_and_any_bit_flip_fails(data: st.DataObject) -> None:
    new = data.draw(st.integers(min_value=1, max_value=300))
    old = data.draw(st.integers(min_value=1, max_value=new))
    log = MerkleLog(_leaves(new))
    proof, r1, r2 = log.consistency_proof(old, new), log.root(old), log.root(new)
    assert merkle.verify_consistency(old, new, proof, r1, r2)
    bit = data.draw(st.integers(min_value=0, max_value=10**6))
    assert not merkle.verify_consistency(old, new, proof, _flip(r1, bit), r2)
    assert not merkle.verify_consistency(old, new, proof, r1, _flip(r2, bit))
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not merkle.verify_consistency(old, new, bad, r1, r2)
        assert not merkle.verify_consistency(old, new, proof[1:], r1, r2)
    # A different old tree (same size, one changed leaf) is not consistent.
    forked = _leaves(new)
    forked[old - 1] = merkle.leaf_hash(b"fork")
    assert not merkle.verify_consistency(old, new, proof, MerkleLog(forked).root(old), r2)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_truncate_then_append_gives_the_same_tree(n: int, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=n))
    leaves = _leaves(n)
    log = MerkleLog(leaves)
    log.truncate(cut)
    assert log.size == cut
    assert log.root() == _mth(leaves[:cut])
    for leaf in leaves[cut:]:
        log.append(leaf)
    assert log.levels == MerkleLog(leaves).levels

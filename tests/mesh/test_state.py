"""The merged state: Yjs documents converge whatever order their blocks arrive in, and
the document digest is canonical."""

from __future__ import annotations

import random

import pycrdt
from hypothesis import given, settings
from hypothesis import strategies as st

from mimiverse.mesh.blocks import GENESIS, Block
from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.payloads import crdt_update
from mimiverse.mesh.state import MeshState, doc_digest

MESH = b"m" * 32


def _edits(rnd: random.Random, writers: int) -> tuple[bytes, list[list[bytes]]]:
    """A shared start, then per writer a few edits, one Yjs update each (like typing)."""
    base = pycrdt.Doc()
    text = base.get("t", type=pycrdt.Text)
    text += "0123456789"
    start = base.get_update()
    per_writer = []
    for _ in range(writers):
        doc = pycrdt.Doc()
        doc.apply_update(start)
        body = doc.get("t", type=pycrdt.Text)
        updates = []
        for _ in range(rnd.randrange(1, 4)):
            before = doc.get_state()
            at = rnd.randrange(len(body) + 1)
            if rnd.random() < 0.3 and len(body) > at + 1:
                del body[at : at + 2]
            else:
                body.insert(at, rnd.choice(["x", "yy", "zzz"]))
            updates.append(doc.get_update(before))
        per_writer.append(updates)
    return start, per_writer


def _blocks(start: bytes, per_writer: list[list[bytes]]) -> list[Block]:
    """The updates as signed blocks, hlc in the order they were made (a causal order)."""
    blocks, hlc = [], 1
    key = DeviceKey.generate()
    for writer, updates in enumerate([[start], *per_writer]):
        author = bytes([writer]) * 32
        prev = GENESIS
        for seq, update in enumerate(updates, start=1):
            block = Block.create(
                key, MESH, author=author, seq=seq, prev_hash=prev, hlc=hlc, key_epoch=0,
                kind="crdt-update", payload=crdt_update("d", update),
            )  # fmt: skip
            blocks.append(block)
            prev, hlc = block.hash, hlc + 1
    return blocks


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=2, max_value=10))
def test_documents_converge_whatever_the_arrival_order(seed: int, writers: int) -> None:
    rnd = random.Random(seed)
    start, per_writer = _edits(rnd, writers)
    blocks = _blocks(start, per_writer)
    digests, texts = set(), set()
    for _ in range(4):
        order = list(blocks)
        rnd.shuffle(order)  # any order at all, not even each log in seq order
        state = MeshState()
        for block in order:
            state.apply(block)
        digests.add(state.state_hash())
        texts.add(str(state.doc("d").get("t", type=pycrdt.Text)))
    assert len(texts) == 1
    assert len(digests) == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=2, max_value=10))
def test_doc_digest_ignores_how_yrs_orders_its_encoding(seed: int, writers: int) -> None:
    rnd = random.Random(seed)
    start, per_writer = _edits(rnd, writers)
    digests, texts = set(), set()
    for _ in range(4):  # interleave the writers at random, each writer's edits in order
        queues = [list(q) for q in per_writer]
        doc = pycrdt.Doc()
        doc.apply_update(start)
        while any(queues):
            doc.apply_update(rnd.choice([q for q in queues if q]).pop(0))
        digests.add(doc_digest(doc))
        texts.add(str(doc.get("t", type=pycrdt.Text)))
    assert len(texts) == 1
    assert len(digests) == 1


def test_doc_digest_sees_a_difference() -> None:
    a, b = pycrdt.Doc(), pycrdt.Doc()
    a.apply_update(b.get_update())
    assert doc_digest(a) == doc_digest(b)
    a.get("t", type=pycrdt.Text).insert(0, "x")
    assert doc_digest(a) != doc_digest(b)
    b.apply_update(a.get_update())
    assert doc_digest(a) == doc_digest(b)
    del a.get("t", type=pycrdt.Text)[0:1]
    assert doc_digest(a) != doc_digest(b)

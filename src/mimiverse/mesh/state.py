"""The merged state every replica computes from the blocks it accepted.

Every operation here commutes, so replicas that accepted the same blocks — in any order,
each author's log in seq order — reach the same state and the same ``state_hash``:

* LWW maps (note, decision, snippet, setting): per key the write with the greatest
  ``(hlc, author)`` wins; a delete is a write of a tombstone. Writes whose ``base`` does
  not cover each other are *concurrent*: ``conflicts`` lists every head, not only the
  winner, so a UI can show both.
* OR-set (memory): an item is present while one of its add blocks has not been removed
  by a remove that names it; its value is that of the latest live add.
* Yjs documents (crdt-update): pycrdt ``Doc`` per name; updates are applied only once
  their block passed validation, and always in (hlc, author) order — a causal order,
  since a device's clock has seen every block its edit built on. (yrs can leave an
  update pending forever when updates arrive out of causal order — the convergence
  test found it — so an update that arrives late rebuilds the document, lazily, at the
  next read.)
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import pycrdt

from mimiverse.mesh import codec
from mimiverse.mesh.blocks import Block
from mimiverse.mesh.codec import Value
from mimiverse.mesh.payloads import LWW_KINDS


@dataclass(frozen=True)
class Write:
    """One LWW write: ordered by (hlc, author)."""

    hlc: int
    author: bytes
    hash: bytes
    value: Value
    deleted: bool

    @property
    def order(self) -> tuple[int, bytes]:
        return self.hlc, self.author


@dataclass
class Register:
    """One key of an LWW map: the winner and the writes nobody has built on yet."""

    winner: Write
    heads: dict[bytes, Write] = field(default_factory=dict)
    covered: set[bytes] = field(default_factory=set)

    def add(self, write: Write, base: list[bytes]) -> None:
        if write.order > self.winner.order:
            self.winner = write
        for seen in base:
            self.covered.add(seen)
            self.heads.pop(seen, None)
        if write.hash not in self.covered:
            self.heads[write.hash] = write


@dataclass(frozen=True)
class Item:
    hlc: int
    author: bytes
    value: Value


class MeshState:
    """LWW maps, an OR-set of memories and Yjs documents, folded from blocks."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, Register]] = {kind: {} for kind in LWW_KINDS}
        self.adds: dict[str, dict[bytes, Item]] = {}
        self.removed: set[bytes] = set()
        self.docs: dict[str, pycrdt.Doc] = {}  # type: ignore[type-arg]
        self.updates: dict[str, list[tuple[int, bytes, bytes]]] = {}  # (hlc, author, update)
        self.stale: set[str] = set()  # documents to rebuild in order before the next read

    def apply(self, block: Block) -> None:
        """Fold one validated block in (roster blocks are the roster's business)."""
        payload = cast(dict[str, Value], block.payload)
        if block.kind in LWW_KINDS:
            deleted = payload["op"] == "del"
            write = Write(block.hlc, block.author, block.hash, payload.get("value"), deleted)
            key = cast(str, payload["key"])
            base = cast(list[bytes], payload["base"])
            register = self.maps[block.kind].get(key)
            if register is None:
                register = self.maps[block.kind][key] = Register(write)
            register.add(write, base)
        elif block.kind == "memory":
            item_id = cast(str, payload["id"])
            if payload["op"] == "add":
                item = Item(block.hlc, block.author, payload["value"])
                self.adds.setdefault(item_id, {})[block.hash] = item
            else:
                self.removed.update(cast(list[bytes], payload["tags"]))
        elif block.kind == "crdt-update":
            name = cast(str, payload["doc"])
            entry = (block.hlc, block.author, cast(bytes, payload["update"]))
            updates = self.updates.setdefault(name, [])
            if updates and entry < updates[-1]:
                bisect.insort(updates, entry)
                self.stale.add(name)  # arrived late: replay the document in order
                return
            updates.append(entry)
            if name not in self.stale:
                _apply(self.doc(name), entry[2])

    def doc(self, name: str) -> pycrdt.Doc:  # type: ignore[type-arg]
        """The shared document ``name`` (created empty on first use).

        A rebuilt document is a new object: ask for it again rather than keeping it.
        """
        if name in self.stale:
            self.stale.discard(name)
            doc = self.docs[name] = pycrdt.Doc()
            for _, _, update in self.updates[name]:
                _apply(doc, update)
        if name not in self.docs:
            self.docs[name] = pycrdt.Doc()
        return self.docs[name]

    # --- reading --------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Value:
        """The winning value of ``key`` in the ``kind`` map (None if absent or deleted)."""
        register = self.maps[kind].get(key)
        if register is None or register.winner.deleted:
            return None
        return register.winner.value

    def items(self, kind: str) -> Iterator[tuple[str, Value]]:
        for key in sorted(self.maps[kind]):
            value = self.get(kind, key)
            if value is not None:
                yield key, value

    def conflicts(self, kind: str, key: str) -> list[Write]:
        """Concurrent heads of ``key`` (more than one: edits that did not see each other)."""
        register = self.maps[kind].get(key)
        if register is None or len(register.heads) < 2:
            return []
        return sorted(register.heads.values(), key=lambda w: w.order)

    def heads_of(self, kind: str, key: str) -> list[bytes]:
        """What a new write of ``key`` builds on: every write nobody has built on yet."""
        register = self.maps[kind].get(key)
        return sorted(register.heads) if register else []

    def live_tags(self, item_id: str) -> list[bytes]:
        return sorted(t for t in self.adds.get(item_id, {}) if t not in self.removed)

    def memory(self) -> dict[str, Value]:
        """Present memory items: id -> value of the latest live add."""
        out: dict[str, Value] = {}
        for item_id in sorted(self.adds):
            live = [self.adds[item_id][t] for t in self.live_tags(item_id)]
            if live:
                out[item_id] = max(live, key=lambda i: (i.hlc, i.author)).value
        return out

    def state_hash(self, extra: Value = None) -> bytes:
        """SHA-256 of the whole state in canonical CBOR (``extra``: e.g. the roster)."""
        maps: dict[str, Value] = {}
        for kind, registers in self.maps.items():
            rows: list[Value] = []
            for key in sorted(registers):
                reg = registers[key]
                w = reg.winner
                heads = list[Value](sorted(reg.heads))
                rows.append([key, w.hlc, w.author, w.hash, w.deleted, w.value, heads])
            maps[kind] = rows
        memory: list[Value] = [
            [i, list[Value](self.live_tags(i)), v] for i, v in self.memory().items()
        ]
        docs: list[Value] = [[name, doc_digest(self.doc(name))] for name in sorted(self.updates)]
        whole = codec.encode({"maps": maps, "memory": memory, "docs": docs, "extra": extra})
        return hashlib.sha256(whole).digest()


def _apply(doc: pycrdt.Doc, update: bytes) -> None:  # type: ignore[type-arg]
    # Parsed at validation; if Yjs still refuses it, it does so on every replica.
    with contextlib.suppress(ValueError):
        doc.apply_update(update)


def doc_digest(doc: pycrdt.Doc) -> bytes:  # type: ignore[type-arg]
    """A digest of what a Yjs document holds, the same for every replica that has it.

    ``get_update()`` bytes are not canonical (yrs writes clients in hash-map order), so
    this hashes the document's *snapshot* — its state vector (which operations it has
    integrated) and delete set (which of them are deleted) — sorted and with delete
    ranges merged. Yjs resolves every conflict deterministically, so equal snapshots
    mean equal documents.
    """
    data = pycrdt.Snapshot.from_doc(doc).encode()
    pos = 0

    def varuint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    deleted: dict[int, list[tuple[int, int]]] = {}
    for _ in range(varuint()):
        client = varuint()
        ranges = deleted.setdefault(client, [])
        for _ in range(varuint()):
            clock = varuint()
            ranges.append((clock, clock + varuint()))
    integrated = sorted((varuint(), varuint()) for _ in range(varuint()))
    merged: list[Value] = []
    for client in sorted(deleted):
        spans: list[list[int]] = []
        for start, end in sorted(deleted[client]):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            elif end > start:
                spans.append([start, end])
        if spans:
            merged.append([client, list[Value](spans)])  # type: ignore[arg-type]
    encoded = codec.encode([list[Value]([list[Value](p) for p in integrated]), merged])
    return hashlib.sha256(encoded).digest()

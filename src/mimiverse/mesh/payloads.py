"""What each block kind carries: builders for writers, ``check`` for validators.

note, decision, snippet, setting — last-writer-wins maps (one map per kind)::

    {"op": "put", "key": str, "value": any, "base": [hash, …]}
    {"op": "del", "key": str, "base": [hash, …]}

``base`` lists the writes of that key the writer had seen and not seen superseded (the
key's current heads, sorted); writes that do not build on each other are concurrent,
and the state reports all of them until a write names them all as its base.

memory — an observed-remove set (add wins over a concurrent remove)::

    {"op": "add", "id": str, "value": any}
    {"op": "remove", "id": str, "tags": [hash of each add block the remover saw]}

crdt-update — a Yjs update for the shared document ``doc``::

    {"doc": str, "update": bytes}

roster — see ``roster.py``.
"""

from __future__ import annotations

import pycrdt

from mimiverse.mesh.codec import Value

LWW_KINDS = ("note", "decision", "snippet", "setting")
MAX_KEY = 256
MAX_TAGS = 1024
MAX_BASE = 64


def put(key: str, value: Value, base: list[bytes] | None = None) -> dict[str, Value]:
    return {"op": "put", "key": key, "value": value, "base": _hashes(base)}


def delete(key: str, base: list[bytes] | None = None) -> dict[str, Value]:
    return {"op": "del", "key": key, "base": _hashes(base)}


def _hashes(hashes: list[bytes] | None) -> list[Value]:
    return list[Value](sorted(set(hashes or [])))


def add(item_id: str, value: Value) -> dict[str, Value]:
    return {"op": "add", "id": item_id, "value": value}


def remove(item_id: str, tags: list[bytes]) -> dict[str, Value]:
    return {"op": "remove", "id": item_id, "tags": _hashes(tags)}


def crdt_update(doc: str, update: bytes) -> dict[str, Value]:
    return {"doc": doc, "update": update}


def _name(value: Value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY


def _hash_list(value: Value, limit: int) -> bool:
    if not isinstance(value, list) or len(value) > limit:
        return False
    hashes = [h for h in value if isinstance(h, bytes) and len(h) == 32]
    return len(hashes) == len(value) and hashes == sorted(set(hashes))


def check(kind: str, payload: Value) -> str | None:
    """Why ``payload`` is not a valid ``kind`` payload, or None (roster ops: roster.py)."""
    if not isinstance(payload, dict):
        return "a payload is a map"
    if kind in LWW_KINDS:
        op = payload.get("op")
        keys = {"op", "key", "value", "base"} if op == "put" else {"op", "key", "base"}
        if op not in ("put", "del") or set(payload) != keys:
            return "expected {op: put, key, value, base} or {op: del, key, base}"
        if not _name(payload["key"]):
            return f"key must be text of 1..{MAX_KEY} characters"
        if not _hash_list(payload["base"], MAX_BASE):
            return f"base must be a sorted list of at most {MAX_BASE} distinct block hashes"
        return None
    if kind == "memory":
        op = payload.get("op")
        keys = {"op", "id", "value"} if op == "add" else {"op", "id", "tags"}
        if op not in ("add", "remove") or set(payload) != keys:
            return "expected {op: add, id, value} or {op: remove, id, tags}"
        if not _name(payload["id"]):
            return f"id must be text of 1..{MAX_KEY} characters"
        if op == "remove" and not _hash_list(payload["tags"], MAX_TAGS):
            return f"tags must be a sorted list of at most {MAX_TAGS} distinct block hashes"
        return None
    if kind == "crdt-update":
        if set(payload) != {"doc", "update"} or not _name(payload["doc"]):
            return "expected {doc: name, update: bytes}"
        update = payload["update"]
        if not isinstance(update, bytes):
            return "update must be bytes"
        try:
            pycrdt.get_state(update)
        except ValueError:
            return "update is not a Yjs update"
        return None
    return f"unknown kind {kind!r}"

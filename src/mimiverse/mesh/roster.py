"""The owner-signed roster: which devices may write, with which key, in which role.

The roster is not stored apart: it is the fold of the ``roster`` blocks in the owner's log
(only the owner — the device whose key is the mesh id — may write them). Each device has
*terms*: from a seq on, blocks are checked against one key (its ``epoch``), one role, or
are refused (revoked). Because a term names the seq it starts at, whether a block is
valid does not depend on when a replica heard of a change: a replica that accepted
blocks a later term rules out cuts that device's log back (``apply`` says from where).

Roster ops (the payload of a roster block)::

    {"op": "add",    "device": key, "role": "member"|"read-only", "name": str}
    {"op": "role",   "device": key, "role": "member"|"read-only", "after": seq}
    {"op": "revoke", "device": key, "after": seq}
    {"op": "rotate", "device": key, "epoch": n, "key": new_key, "from": seq,
     "old_sig": signature by the key of epoch n-1 over [device, n, new_key, from]}

A rotation is signed by the old key (``rotation_request``, made on the device) and by the
owner (who writes the block). The owner's own key does not rotate: it is the mesh id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from mimiverse.mesh import codec
from mimiverse.mesh.codec import Value
from mimiverse.mesh.identity import KEY_SIZE, DeviceKey, Role, verify

ROTATE_PURPOSE = b"rotate"
MAX_NAME = 100


@dataclass(frozen=True)
class Term:
    """From ``from_seq`` on, a device signs with ``key`` (epoch ``epoch``) in ``role``."""

    from_seq: int
    epoch: int
    key: bytes
    role: Role
    revoked: bool = False


@dataclass
class Device:
    author: bytes
    name: str
    terms: list[Term] = field(default_factory=list)

    @property
    def current(self) -> Term:
        return self.terms[-1]

    def term_at(self, seq: int) -> Term:
        """The term that judges this device's block ``seq`` (later terms win ties)."""
        found = self.terms[0]
        for term in self.terms:
            if term.from_seq <= seq:
                found = term
        return found


def add_op(device: bytes, role: Role = "member", name: str = "") -> dict[str, Value]:
    return {"op": "add", "device": device, "role": role, "name": name}


def role_op(device: bytes, role: Role, after: int) -> dict[str, Value]:
    return {"op": "role", "device": device, "role": role, "after": after}


def revoke_op(device: bytes, after: int) -> dict[str, Value]:
    """Refuse the device's blocks after seq ``after`` (its head as the owner knows it)."""
    return {"op": "revoke", "device": device, "after": after}


def _rotation_message(device: bytes, epoch: int, key: bytes, from_seq: int) -> bytes:
    return codec.encode([device, epoch, key, from_seq])


def rotation_request(
    old_key: DeviceKey, mesh: bytes, device: bytes, epoch: int, new_key: bytes, from_seq: int
) -> dict[str, Value]:
    """A rotate op signed by the device's current key; the owner writes it as a block."""
    message = _rotation_message(device, epoch, new_key, from_seq)
    return {
        "op": "rotate",
        "device": device,
        "epoch": epoch,
        "key": new_key,
        "from": from_seq,
        "old_sig": old_key.sign(ROTATE_PURPOSE, mesh, message),
    }


def _int(value: Value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Roster:
    """The devices of one mesh, rebuilt by applying roster ops in the owner's log order."""

    def __init__(self, mesh: bytes) -> None:
        self.mesh = mesh
        self.devices: dict[bytes, Device] = {
            mesh: Device(mesh, "owner", [Term(1, 0, mesh, "owner")])
        }

    def term(self, author: bytes, seq: int) -> Term | None:
        device = self.devices.get(author)
        return device.term_at(seq) if device else None

    def check(self, op: Value) -> str | None:
        """Why ``op`` cannot be applied to this roster, or None if it can."""
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            return "a roster op is a map with an 'op'"
        device_id = op.get("device")
        if not isinstance(device_id, bytes) or len(device_id) != KEY_SIZE:
            return "device must be a 32-byte key"
        if device_id == self.mesh:
            return "the owner's entry cannot change"
        device = self.devices.get(device_id)
        kind = op["op"]
        if kind == "add":
            if set(op) != {"op", "device", "role", "name"}:
                return "add takes device, role, name"
            name = op["name"]
            if not isinstance(name, str) or len(name) > MAX_NAME:
                return f"name must be text of at most {MAX_NAME} characters"
            if op["role"] not in ("member", "read-only"):
                return "role must be member or read-only"
            if device is not None or self._key_used(device_id):
                return "this device or key is already on the roster"
            return None
        if device is None:
            return "unknown device"
        current = device.current
        if current.revoked:
            return "the device is revoked"
        if kind in ("role", "revoke"):
            expected = {"op", "device", "after"} | ({"role"} if kind == "role" else set())
            if set(op) != expected:
                return f"{kind} takes {', '.join(sorted(expected - {'op'}))}"
            after = _int(op["after"])
            if after is None or after + 1 < current.from_seq:
                return f"after must be at least {current.from_seq - 1}"
            if kind == "role" and op["role"] not in ("member", "read-only"):
                return "role must be member or read-only"
            return None
        if kind == "rotate":
            if set(op) != {"op", "device", "epoch", "key", "from", "old_sig"}:
                return "rotate takes device, epoch, key, from, old_sig"
            epoch, from_seq = _int(op["epoch"]), _int(op["from"])
            key, old_sig = op["key"], op["old_sig"]
            if epoch != current.epoch + 1:
                return f"epoch must be {current.epoch + 1}"
            if from_seq is None or from_seq < max(1, current.from_seq):
                return f"from must be at least {max(1, current.from_seq)}"
            if not isinstance(key, bytes) or len(key) != KEY_SIZE or self._key_used(key):
                return "key must be a new 32-byte key"
            if not isinstance(old_sig, bytes):
                return "old_sig must be a signature"
            message = _rotation_message(device_id, epoch, key, from_seq)
            if not verify(current.key, ROTATE_PURPOSE, self.mesh, message, old_sig):
                return "old_sig is not the device's current key's signature"
            return None
        return f"unknown roster op {kind!r}"

    def apply(self, op: Value) -> tuple[bytes, int] | None:
        """Apply a checked op; returns (device, seq) from which its blocks need a re-check."""
        assert isinstance(op, dict) and self.check(op) is None, "apply() takes checked ops"
        device_id = cast(bytes, op["device"])
        kind = op["op"]
        if kind == "add":
            role = cast(Role, op["role"])
            self.devices[device_id] = Device(
                device_id, cast(str, op["name"]), [Term(1, 0, device_id, role)]
            )
            return None
        device = self.devices[device_id]
        current = device.current
        if kind == "rotate":
            term = Term(
                cast(int, op["from"]), current.epoch + 1, cast(bytes, op["key"]), current.role
            )
        elif kind == "role":
            term = Term(
                cast(int, op["after"]) + 1, current.epoch, current.key, cast(Role, op["role"])
            )
        else:
            term = Term(cast(int, op["after"]) + 1, current.epoch, current.key, current.role, True)
        device.terms.append(term)
        return device_id, term.from_seq

    def _key_used(self, key: bytes) -> bool:
        return any(t.key == key for d in self.devices.values() for t in d.terms) or key == self.mesh

    def holder_of(self, key: bytes) -> Device | None:
        """The device whose current key is ``key`` (None: nobody's, or revoked)."""
        for device in self.devices.values():
            if device.current.key == key and not device.current.revoked:
                return device
        return None

    def role_of(self, author: bytes) -> Role | None:
        device = self.devices.get(author)
        if device is None or device.current.revoked:
            return None
        return device.current.role

    def digest_value(self) -> Value:
        """The roster as plain data, sorted (part of the state hash)."""
        return [
            [d.author, d.name, [[t.from_seq, t.epoch, t.key, t.role, t.revoked] for t in d.terms]]
            for d in sorted(self.devices.values(), key=lambda d: d.author)
        ]

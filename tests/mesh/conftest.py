"""A small mesh of real replicas (SQLite stores under tmp_path) for the mesh tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mimiverse.mesh.blocks import GENESIS, Block, Kind
from mimiverse.mesh.codec import Value
from mimiverse.mesh.identity import DeviceKey, Role
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import Replica


class FakeClock:
    """Milliseconds that move only when told (or by one per reading)."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


@dataclass
class Mesh:
    root: Path
    clock: FakeClock
    keys: list[DeviceKey] = field(default_factory=list)
    replicas: list[Replica] = field(default_factory=list)

    @property
    def owner(self) -> Replica:
        return self.replicas[0]

    @property
    def mesh(self) -> bytes:
        return self.owner.mesh

    def join(self, role: Role = "member") -> Replica:
        """A new device, added by the owner and synced with it."""
        key = DeviceKey.generate()
        replica = Replica.open(
            self.root / f"r{len(self.replicas)}", key, mesh=self.mesh, clock=self.clock
        )
        self.owner.add_device(key.public, role, f"device {len(self.replicas)}")
        self.keys.append(key)
        self.replicas.append(replica)
        sync_pair(self.owner, replica)
        return replica

    def restart(self, index: int) -> Replica:
        self.replicas[index].close()
        self.replicas[index] = Replica.open(
            self.root / f"r{index}", self.keys[index], clock=self.clock
        )
        return self.replicas[index]

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()


def make_mesh(root: Path, members: int = 2, roles: list[Role] | None = None) -> Mesh:
    clock = FakeClock()
    owner_key = DeviceKey.generate()
    mesh = Mesh(root, clock, [owner_key], [Replica.open(root / "r0", owner_key, clock=clock)])
    for i in range(members):
        mesh.join(roles[i] if roles else "member")
    return mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    built = make_mesh(tmp_path)
    yield built
    built.close()


def forge(
    key: DeviceKey,
    mesh: bytes,
    author: bytes,
    seq: int,
    *,
    prev: bytes = GENESIS,
    hlc: int = 1 << 40,
    epoch: int = 0,
    kind: Kind = "note",
    payload: Value = None,
) -> Block:
    """A block made by hand (any key, any fields) for adversarial tests."""
    if payload is None:
        payload = {"op": "put", "key": f"k{seq}", "value": "forged", "base": []}
    return Block.create(
        key,
        mesh,
        author=author,
        seq=seq,
        prev_hash=prev,
        hlc=hlc,
        key_epoch=epoch,
        kind=kind,
        payload=payload,
    )


def next_block(replica: Replica, key: DeviceKey, author: bytes, **fields: object) -> Block:
    """A well-formed next block of ``author``'s log as ``replica`` holds it."""
    size = replica.size(author)
    prev = replica.hash_at(author, size) or GENESIS
    hlc = replica.hlc_at(author, size) + 1 if size else 1 << 40
    values: dict[str, object] = {"prev": prev, "hlc": hlc, **fields}
    return forge(key, replica.mesh, author, size + 1, **values)  # type: ignore[arg-type]

"""``mesh status`` events stay meaningful while devices gossip: the duplicates that gossip
delivers all the time (blocks refused as "replayed") are not events."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import MeshService

from .test_service import converged


async def test_gossip_duplicates_do_not_fill_the_event_log(tmp_path: Path) -> None:
    keys = [DeviceKey.generate() for _ in range(3)]
    owner = Replica.open(tmp_path / "r0", keys[0])
    replicas = [owner] + [
        Replica.open(tmp_path / f"r{i}", keys[i], mesh=owner.mesh) for i in (1, 2)
    ]
    for key in keys[1:]:
        owner.add_device(key.public)
    for member in replicas[1:]:
        sync_pair(owner, member)  # the roster, so members may write
    for i, replica in enumerate(replicas):
        with replica.batch():
            for n in range(60):
                replica.put("note", f"r{i}-{n}", n)
    services = [await MeshService(r).start() for r in replicas]
    try:
        # A triangle: every block reaches each device twice (directly and via the third).
        services[1].add_peer(services[0].url(), remember=False)
        services[2].add_peer(services[0].url(), remember=False)
        services[2].add_peer(services[1].url(), remember=False)
        assert await converged(services)
        await asyncio.sleep(0.5)  # let the last duplicate deltas land
        assert sum(s.stats.duplicates for s in services) > 0  # duplicates did arrive
        assert sum(s.stats.rejected for s in services) == 0  # and are no offence
        for service in services:
            kinds = [e.kind for e in service.events]
            assert "peer-up" in kinds
            assert not [e.detail for e in service.events if e.detail.startswith("replayed")]
    finally:
        await asyncio.gather(*(s.close() for s in services))

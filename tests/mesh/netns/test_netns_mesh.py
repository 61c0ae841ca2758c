"""Five mesh devices, each its own process in its own network namespace, on a bridge.

Partitions and one-way loss are nftables rules inside the namespaces (``tc netem`` is not
available on these machines); delay, loss and reordering of frames come from the
transport shim. Convergence means the same state hash and the same Merkle roots on
every device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from .driver import PeerProcess, converged, make_devices, wait_for
from .network import Lab

pytestmark = pytest.mark.netns

Spawn = Callable[..., PeerProcess]
SHIM = "loss=0.02,reorder=0.1,delay=0.001-0.01,seed={host}"
BULK = 5000


def start_mesh(
    spawn: Spawn, dirs: Sequence[Path], hosts: Sequence[int], shim: str = ""
) -> dict[int, PeerProcess]:
    """A peer on each host; each dials every lower-numbered host among ``hosts``."""
    return {
        h: spawn(h, dirs[h - 1], dial=[o for o in hosts if o < h], shim=shim.format(host=h))
        for h in hosts
    }


def connected_to(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda statuses: all(len(s["connected"]) == count for s in statuses)


def all_converged(statuses: list[dict[str, Any]]) -> bool:
    return converged(statuses)


def test_partition_heal_and_one_way_loss(lab: Lab, spawn: Spawn, tmp_path: Path) -> None:
    dirs = make_devices(tmp_path, lab.hosts)
    hosts = list(range(1, lab.hosts + 1))
    peers = start_mesh(spawn, dirs, hosts, shim=SHIM)
    everyone = list(peers.values())
    wait_for(everyone, lambda s: connected_to(4)(s) and converged(s), "full mesh, roster synced")
    peers[3].request("put", key="before", value="everyone")
    wait_for(everyone, all_converged, "a write before the partition")

    # Partition {2,3} | {1,4,5}: the channels across it go silent and are dropped.
    lab.partition([2, 3], [1, 4, 5])
    left, right = [peers[2], peers[3]], [peers[1], peers[4], peers[5]]
    wait_for(left, connected_to(1), "left side sees only itself")
    wait_for(right, connected_to(2), "right side sees only itself")
    peers[2].request("put", key="left", value="written on 2")
    peers[5].request("put", key="right", value="written on 5")
    peers[3].request("put", key="shared", value="left's")
    peers[4].request("put", key="shared", value="right's")
    left_now = wait_for(left, all_converged, "left side converges alone")
    right_now = wait_for(right, all_converged, "right side converges alone")
    assert left_now[0]["state_hash"] != right_now[0]["state_hash"]
    assert peers[1].request("get", key="left")["value"] is None
    assert peers[2].request("get", key="right")["value"] is None

    # Heal: the dialers reconnect and everything written on either side spreads.
    lab.heal()
    wait_for(everyone, lambda s: connected_to(4)(s) and converged(s), "healed", timeout_s=45)
    winners = {p.request("get", key="shared")["value"] for p in everyone}
    assert len(winners) == 1 and winners <= {"left's", "right's"}
    assert {p.request("get", key="left")["value"] for p in everyone} == {"written on 2"}
    assert {p.request("get", key="right")["value"] for p in everyone} == {"written on 5"}

    # One-way loss: 5's packets to 1 vanish (1 → 5 still goes through). Their channel
    # dies; writes on 1 and 5 travel around it, through 2, 3 and 4.
    lab.drop_one_way(5, 1)
    assert "10.73.1.1" in lab.rules(5) and "drop" in lab.rules(5)
    wait_for([peers[1], peers[5]], connected_to(3), "1 and 5 lose each other")
    peers[1].request("put", key="from-1", value=1)
    peers[5].request("put", key="from-5", value=5)
    wait_for(everyone, all_converged, "converged around the one-way loss", timeout_s=45)
    assert peers[5].request("get", key="from-1")["value"] == 1
    assert peers[1].request("get", key="from-5")["value"] == 5
    assert peers[5].device not in peers[1].status()["connected"]
    assert peers[1].device not in peers[5].status()["connected"]
    lab.heal()
    wait_for(everyone, connected_to(4), "1 and 5 reconnect", timeout_s=45)


def test_kill_9_mid_sync_then_restart(lab: Lab, spawn: Spawn, tmp_path: Path) -> None:
    dirs = make_devices(tmp_path, lab.hosts)
    peers = start_mesh(spawn, dirs, [1, 2, 3, 4])
    first = list(peers.values())
    wait_for(first, lambda s: connected_to(3)(s) and converged(s), "four devices up")
    writer = peers[4]
    assert writer.request("bulk", n=BULK, prefix="bulk")["size"] == BULK
    synced = wait_for(first, all_converged, f"{BULK} blocks spread", timeout_s=60)
    total = synced[0]["blocks"]

    # Device 5 starts fresh and pulls everything from four peers at once; kill it when
    # part of the writer's log has landed and the rest is on its way.
    fresh = spawn(5, dirs[4], dial=[1, 2, 3, 4])
    taken = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        taken = fresh.status()["sizes"].get(writer.device, 0)
        if taken:
            break
        time.sleep(0.005)
    fresh.kill()
    assert 0 < taken < BULK, f"wanted to kill device 5 mid-sync, it held {taken} blocks"

    # Restarted on the same directory: the store opens, every block in it validates
    # again, and the device catches up.
    restarted = spawn(5, dirs[4], dial=[1, 2, 3, 4])
    check = restarted.request("check")
    assert check["integrity"] == "ok"
    assert check["refused"] == {} and check["accepted"] == check["blocks"] >= taken
    assert check["same_state"] and check["same_roots"]
    everyone = [*first, restarted]
    final = wait_for(everyone, all_converged, "converged after the restart", timeout_s=60)
    assert final[0]["blocks"] == total
    check = restarted.request("check")
    assert check["integrity"] == "ok" and check["refused"] == {}
    assert check["blocks"] == total and check["same_state"] and check["same_roots"]
    assert restarted.request("get", key=f"bulk{BULK - 1}")["value"]["i"] == BULK - 1

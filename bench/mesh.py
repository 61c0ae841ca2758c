"""Mesh sync figures: delta size, verification speed, convergence of 5 peers.

* ``delta_bytes_ratio``: bytes on the wire to bring a peer up to date after ``k`` new
  blocks on a 10k-block log ÷ bytes to send it the whole log (both via ``Replica.handle``
  messages, vectors included). Goal < 0.01.
* ``verify_blocks_per_s``: blocks a fresh replica takes per second when a peer sends it
  the whole log (decode, canonical check, Ed25519 verify, chain and roster checks,
  consistency proof, SQLite insert, state fold) — the end-to-end receive rate.
  ``signature_verify_per_s`` is the Ed25519 verification alone, for comparison.
* ``converge_s_5peers_10k`` (the goal figure, ≤ 10 s): 5 ``MeshService`` devices on
  127.0.0.1 (one process, one event loop), 2,000 blocks written on *each* before they
  connect; then they dial each other over the real transport (WebSocket, handshake,
  encrypted frames) in a line 0–1–2–3–4, so blocks from one end cross 4 hops and every
  device takes 8,000 blocks. Timed from the first dial until all 5 hold the same state
  hash and Merkle roots (push on connect + gossip; anti-entropy ticks are 30 s, so they
  do not help). Median of the repetitions; ``converge_cpu_s_5peers_10k`` is their
  median CPU time (steadier than wall time on a busy machine), and
  ``converge_s_5peers_10k_star`` the same with every device dialing device 0.
* ``converge_s_5peers_10k_inprocess``: 5 replicas in one process, 10k blocks written
  across them while partitioned into {0,1} / {2,3,4}, then all-pairs anti-entropy until
  quiet (``loopback.sync_pair``, no transport).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from itertools import combinations
from pathlib import Path

from _common import emit, load_check

from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import MeshService

PEERS = 5
CONVERGE_TIMEOUT_S = 120.0


def _mesh(root: Path, n: int) -> list[Replica]:
    keys = [DeviceKey.generate() for _ in range(n)]
    owner = Replica.open(root / "r0", keys[0])
    replicas = [owner] + [
        Replica.open(root / f"r{i}", keys[i], mesh=owner.mesh) for i in range(1, n)
    ]
    with owner.batch():
        for key in keys[1:]:
            owner.add_device(key.public, "member")
    for replica in replicas[1:]:
        sync_pair(owner, replica)
    return replicas


def _write(replica: Replica, count: int, tag: str) -> None:
    with replica.batch():
        for i in range(count):
            replica.put("note", f"{tag}{i}", {"title": f"note {i}", "body": "x" * 80})


def delta_figures(root: Path, blocks: int, ks: list[int]) -> dict[str, float]:
    writer, reader = _mesh(root, 3)[1:]  # two members (both already hold the roster)
    _write(writer, blocks, "n")
    started = time.perf_counter()
    full = sync_pair(reader, writer)
    elapsed = time.perf_counter() - started
    assert reader.merkle_roots() == writer.merkle_roots()
    taken = len(full.report.accepted)
    figures: dict[str, float] = {
        "log_blocks": writer.size(writer.author),
        "full_sync_bytes": full.bytes,
        "verify_blocks_per_s": round(taken / elapsed, 1),
    }
    for k in ks:
        _write(writer, k, f"k{k}-")
        delta = sync_pair(reader, writer)
        assert len(delta.report.accepted) == k
        figures[f"delta_bytes_k{k}"] = delta.bytes
        figures[f"delta_bytes_ratio_k{k}"] = round(delta.bytes / full.bytes, 5)
    return figures


def signature_rate(seconds: float = 1.0) -> float:
    key = DeviceKey.generate()
    message, signature = b"m" * 32, key.sign(b"block", b"x" * 32, b"m" * 32)
    from mimiverse.mesh.identity import verify

    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            verify(key.public, b"block", b"x" * 32, message, signature)
        count += 200
    return count / (time.perf_counter() - started)


def converge_figure(root: Path, blocks: int) -> float:
    replicas = _mesh(root, 5)
    per = blocks // len(replicas)
    for i, replica in enumerate(replicas):
        _write(replica, per, f"w{i}-")
    groups = [[0, 1], [2, 3, 4]]
    for group in groups:  # each side of the partition syncs within itself
        for a, b in combinations(group, 2):
            sync_pair(replicas[a], replicas[b])
    started = time.perf_counter()
    while True:  # heal: anti-entropy rounds until quiet
        before = [r.vector() for r in replicas]
        for a, b in combinations(range(len(replicas)), 2):
            sync_pair(replicas[a], replicas[b])
        if [r.vector() for r in replicas] == before:
            break
    elapsed = time.perf_counter() - started
    assert len({r.state_hash() for r in replicas}) == 1
    return elapsed


def _converged(services: list[MeshService], total: int) -> bool:
    """Same logs everywhere (cheap vector check first), then same state hash and roots."""
    heads = [s.replica.vector().heads for s in services]
    if any(h != heads[0] for h in heads) or sum(n for n, _ in heads[0].values()) < total:
        return False
    return (
        len({s.replica.state_hash() for s in services}) == 1
        and len({tuple(sorted(s.replica.merkle_roots().items())) for s in services}) == 1
    )


async def _converge_over_transport(root: Path, blocks: int, topology: str) -> dict[str, float]:
    replicas = _mesh(root, PEERS)
    per = blocks // PEERS
    for i, replica in enumerate(replicas):
        _write(replica, per, f"w{i}-")
    total = sum(r.size(r.author) for r in replicas)  # every log, the roster included
    services = [MeshService(r, listen="127.0.0.1:0") for r in replicas]
    try:
        for service in services:
            await service.start()
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(1, PEERS):
            services[i].add_peer(services[i - 1 if topology == "line" else 0].url(), remember=False)
        while not _converged(services, total):
            if time.perf_counter() - started > CONVERGE_TIMEOUT_S:
                raise RuntimeError(
                    f"{PEERS} peers ({topology}) did not converge in {CONVERGE_TIMEOUT_S} s"
                )
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        return {
            "seconds": elapsed,
            "cpu_seconds": time.process_time() - cpu,
            "messages": sum(s.stats.messages_out for s in services),
            "bytes": sum(s.stats.bytes_out for s in services),
            "accepted": sum(s.stats.accepted for s in services),
            "refused": sum(s.stats.rejected for s in services),
            "duplicates": sum(s.stats.duplicates for s in services),
        }
    finally:
        await asyncio.gather(*(s.close() for s in services))
        for replica in replicas:
            replica.close()


def transport_converge_figure(blocks: int, topology: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for 5 peers to converge over the transport."""
    root = Path(tempfile.mkdtemp(prefix="mimi-bench-mesh-"))
    try:
        got = asyncio.run(_converge_over_transport(root, blocks, topology))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"converge over the transport ({topology}, {PEERS} peers × {blocks // PEERS} blocks): "
        f"{got['seconds']:.2f} s ({got['cpu_seconds']:.2f} s CPU), "
        f"{got['messages']:.0f} messages, {got['bytes'] / 1e6:.1f} MB, "
        f"{got['accepted']:.0f} blocks taken, {got['duplicates']:.0f} duplicates dropped, "
        f"{got['refused']:.0f} refused",
        flush=True,
    )
    return got["seconds"], got["cpu_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, same figures")
    parser.add_argument("--blocks", type=int, default=10_000, help="log length")
    args = parser.parse_args()
    load1, busy = load_check()
    reps = 1 if args.quick else 3
    runs = []
    for rep in range(reps):
        root = Path(tempfile.mkdtemp(prefix="mimi-bench-mesh-"))
        try:
            runs.append(delta_figures(root, args.blocks, [1, 10, 100]))
            print(f"run {rep + 1}/{reps}: {runs[-1]}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="mimi-bench-mesh-"))
    try:
        converge = converge_figure(root, args.blocks)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"converge in process: {converge:.2f} s", flush=True)
    line = [transport_converge_figure(args.blocks, "line") for _ in range(reps)]
    star = [transport_converge_figure(args.blocks, "star") for _ in range(reps)]
    figures = {
        "bench": "mesh",
        "delta_bytes_ratio": runs[0]["delta_bytes_ratio_k10"],
        "delta_bytes_ratio_k1": runs[0]["delta_bytes_ratio_k1"],
        "delta_bytes_ratio_k100": runs[0]["delta_bytes_ratio_k100"],
        "full_sync_bytes": runs[0]["full_sync_bytes"],
        "log_blocks": runs[0]["log_blocks"],
        "verify_blocks_per_s": statistics.median(r["verify_blocks_per_s"] for r in runs),
        "signature_verify_per_s": round(signature_rate()),
        "converge_s_5peers_10k": round(statistics.median(wall for wall, _ in line), 2),
        "converge_cpu_s_5peers_10k": round(statistics.median(cpu for _, cpu in line), 2),
        "converge_s_5peers_10k_star": round(statistics.median(wall for wall, _ in star), 2),
        "converge_setup": f"{PEERS} MeshService peers on 127.0.0.1 in one process, real "
        f"WebSocket channels, line topology, {args.blocks // PEERS} blocks written on each",
        "converge_s_5peers_10k_inprocess": round(converge, 2),
        "load1": round(load1, 2),
        "load_warning": busy,
    }
    emit(figures)


if __name__ == "__main__":
    main()

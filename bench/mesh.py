"""Mesh sync figures: delta size, verification speed, convergence (in process).

* ``delta_bytes_ratio``: bytes on the wire to bring a peer up to date after ``k`` new
  blocks on a 10k-block log ÷ bytes to send it the whole log (both via ``Replica.handle``
  messages, vectors included). Goal < 0.01.
* ``verify_blocks_per_s``: blocks a fresh replica takes per second when a peer sends it
  the whole log (decode, canonical check, Ed25519 verify, chain and roster checks,
  consistency proof, SQLite insert, state fold) — the end-to-end receive rate.
  ``signature_verify_per_s`` is the Ed25519 verification alone, for comparison.
* ``converge_s_5peers_10k_inprocess``: 5 replicas in one process, 10k blocks written
  across them while partitioned into {0,1} / {2,3,4}, then all-pairs anti-entropy until
  quiet. ``converge_s_5peers_10k`` (the goal figure, ≤ 10 s) needs real peers on the mesh
  transport and is null here.
  TODO(mesh transport): measure it with 5 `mimiverse mesh` peers on loopback.
"""

from __future__ import annotations

import argparse
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
    figures = {
        "bench": "mesh",
        "delta_bytes_ratio": runs[0]["delta_bytes_ratio_k10"],
        "delta_bytes_ratio_k1": runs[0]["delta_bytes_ratio_k1"],
        "delta_bytes_ratio_k100": runs[0]["delta_bytes_ratio_k100"],
        "full_sync_bytes": runs[0]["full_sync_bytes"],
        "log_blocks": runs[0]["log_blocks"],
        "verify_blocks_per_s": statistics.median(r["verify_blocks_per_s"] for r in runs),
        "signature_verify_per_s": round(signature_rate()),
        "converge_s_5peers_10k": None,
        "converge_s_5peers_10k_inprocess": round(converge, 2),
        "load1": round(load1, 2),
        "load_warning": busy,
    }
    emit(figures)


if __name__ == "__main__":
    main()

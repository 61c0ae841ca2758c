"""One mesh device in its own process, driven by JSON lines on stdin (the netns tests).

::

    python -m tests.mesh.netns.peer --dir D --listen 10.73.1.2:7463 \\
        --peer ws://10.73.1.1:7463/mesh/v1 [--peer …] [--shim "loss=0.02,delay=0.001-0.01"]

It opens the device's replica in ``D`` (``service.open_replica``), runs a ``MeshService``
and prints ``{"event": "ready", "url": …, "device": …}`` once listening. Then every line
on stdin is one command and gets exactly one JSON line back (``"ok": false`` and an
``error`` when it failed)::

    {"op": "put", "key": k, "value": v}            a note            → {"seq": n}
    {"op": "bulk", "n": 5000, "prefix": "b"}       n notes, one commit → {"size": own log}
    {"op": "get", "key": k}                        a note's value    → {"value": v}
    {"op": "status"}                               → {"state_hash", "roots", "sizes",
                                                      "blocks", "connected", "waiting", …}
    {"op": "check"}                                re-validate the whole store (below)
    {"op": "quit"}                                 close the service, then exit 0

``check`` runs SQLite's integrity check and replays every stored block into a fresh
in-memory replica, which validates each one again (signature, chain, roster): a store
a crash left broken shows up as refused blocks or a different state hash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import MeshService, open_replica
from mimiverse.mesh.store import MeshStore
from mimiverse.mesh.transport import ChannelLimits, ShimSpec


def check_store(replica: Replica) -> dict[str, Any]:
    """SQLite integrity, and every stored block validated again by a fresh replica."""
    (integrity,) = replica.store.db.execute("PRAGMA integrity_check").fetchone()
    verifier = Replica(MeshStore(":memory:"), DeviceKey.generate(), mesh=replica.mesh)
    try:
        stored = [
            data for author in replica.authors()
            for data in replica.block_bytes(author, 1, replica.size(author))
        ]  # fmt: skip
        report = verifier.receive(stored)
        return {
            "integrity": integrity,
            "blocks": len(stored),
            "accepted": len(report.accepted),
            "refused": dict(report.counts),
            "same_state": verifier.state_hash() == replica.state_hash(),
            "same_roots": verifier.merkle_roots() == replica.merkle_roots(),
        }
    finally:
        verifier.close()


def status(service: MeshService) -> dict[str, Any]:
    replica = service.replica
    return {
        "device": replica.author.hex(),
        "state_hash": replica.state_hash().hex(),
        "roots": {a.hex(): root.hex() for a, root in replica.merkle_roots().items()},
        "sizes": {a.hex(): replica.size(a) for a in replica.authors()},
        "blocks": sum(replica.size(a) for a in replica.authors()),
        "connected": sorted(key.hex() for key in service.connected()),
        "waiting": replica.pending_count,
        "quarantined": [a.hex() for a in replica.fork_proofs()],
        "stats": {k: v for k, v in vars(service.stats).items() if k != "last_activity"},
    }


async def command(service: MeshService, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one command; the fields of its reply."""
    match request:
        case {"op": "put", "key": str(key), "value": value}:
            async with service.writing() as replica:
                return {"seq": replica.put("note", key, value).seq}
        case {"op": "bulk", "n": int(count), **rest}:
            prefix = str(rest.get("prefix", "bulk"))
            async with service.writing() as replica:
                with replica.batch():
                    for i in range(count):
                        replica.put("note", f"{prefix}{i}", {"i": i, "body": "x" * 80})
                return {"size": replica.size(replica.author)}
        case {"op": "get", "key": str(key)}:
            return {"value": service.replica.state.get("note", key)}
        case {"op": "status"}:
            async with service.lock:
                return status(service)
        case {"op": "check"}:
            async with service.lock:
                return check_store(service.replica)
    raise ValueError(f"unknown command {request!r}")


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    limits = ChannelLimits(
        handshake_timeout_s=3.0,
        ping_interval_s=args.idle_timeout / 4,
        idle_timeout_s=args.idle_timeout,
        max_rejects=None,  # the shim's duplicates are refused as replays, not held against us
    )
    options: dict[str, Any] = {"limits": limits, "backoff": (0.2, args.backoff_max)}
    if args.shim:
        options["wrap_link"] = ShimSpec.parse(args.shim).wrap
    service = MeshService(
        open_replica(Path(args.dir)),
        listen=args.listen,
        peers=args.peer,
        sync_interval_s=args.sync_interval,
        node_options=options,
    )
    await service.start()
    host = args.listen.rpartition(":")[0]
    reply({"event": "ready", "url": service.url(host), "device": service.replica.author.hex()})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                request = json.loads(line)
                if request.get("op") == "quit":
                    break
                reply({"ok": True, **await command(service, request)})
            except Exception as exc:  # one bad command must not end the peer
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        await service.close()
        service.replica.close()
    reply({"ok": True, "event": "closed"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="the device's mesh directory")
    parser.add_argument("--listen", required=True, help="host:port to accept peers on")
    parser.add_argument("--peer", action="append", default=[], help="a peer URL to dial")
    parser.add_argument("--shim", default="", help="transport faults: ShimSpec text")
    parser.add_argument("--sync-interval", type=float, default=1.0, help="anti-entropy, s")
    parser.add_argument("--idle-timeout", type=float, default=3.0, help="drop a silent peer, s")
    parser.add_argument("--backoff-max", type=float, default=1.0, help="longest redial wait, s")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

"""`mimiverse mesh …`: this device on the mesh, from the terminal.

Commands open this device's store (``mesh_dir``, default ``<data_dir>/mesh``). While
``mimiverse serve`` (with ``mesh = true``) or ``mimiverse mesh run`` holds it, the store is
locked and these commands say so: use the server's ``/api/mesh`` routes then.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mimiverse.errors import MimiError
from mimiverse.mesh.blocks import Block
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.hlc import unpack
from mimiverse.mesh.identity import fingerprint
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import (
    MeshService,
    check_peer_url,
    create_mesh,
    iter_log,
    join_mesh,
    open_replica,
    save_peers,
    saved_peers,
)
from mimiverse.settings import Settings

mesh_app = typer.Typer(
    help="Sync notes, decisions, snippets and memories between your devices, peer to peer.",
    no_args_is_help=True,
)
peers_app = typer.Typer(help="Peers this device dials.", invoke_without_command=True)
mesh_app.add_typer(peers_app, name="peers")
console = Console()

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="This device's mesh folder (default: <data_dir>/mesh)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _dir(directory: Path | None) -> Path:
    return (directory or Settings().mesh_path).expanduser()


@contextmanager
def _failing() -> Iterator[None]:
    """A MimiError ends the command with its message (exit 1)."""
    try:
        yield
    except MimiError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from exc


@contextmanager
def _replica(directory: Path | None) -> Iterator[Replica]:
    with _failing():
        replica = open_replica(_dir(directory))
        try:
            yield replica
        finally:
            replica.close()


@mesh_app.command("init")
def init(directory: DirOption = None) -> None:
    """Start a new mesh with this device as its owner."""
    with _failing():
        replica = create_mesh(_dir(directory))
    mesh, author = replica.mesh, replica.author
    replica.close()
    console.print(f"new mesh [bold]{fingerprint(mesh)}[/] in {_dir(directory)}")
    console.print(f"this device ([bold]{fingerprint(author)}[/]) is its owner")
    console.print("next: [bold]mimiverse mesh invite[/] on this device, then "
                  "[bold]mimiverse mesh join[/] on the other one")  # fmt: skip


@mesh_app.command("invite")
def invite(
    directory: DirOption = None,
    role: Annotated[str, typer.Option(help="member or read-only.")] = "member",
    hours: Annotated[float, typer.Option(min=0.01, max=24 * 30, help="Valid for.")] = 24.0,
    qr: Annotated[bool, typer.Option(help="Also print the invite as a QR code.")] = True,
    json_out: JsonOption = False,
) -> None:
    """Invite a device (owner only): prints a short code and the invite text / QR code."""
    with _replica(directory) as replica, _failing():
        if role not in ("member", "read-only"):
            raise MeshRejected("--role is member or read-only")
        made = replica.create_invite(role, int(hours * 3600))  # type: ignore[arg-type]
    text = made.to_text()
    if json_out:
        print(json.dumps({"code": made.code(), "text": text, "role": role}))
        return
    console.print(f"invite for a [bold]{role}[/] device, valid {hours:g} h, one use:")
    console.print(f"  code: [bold]{made.code()}[/]")
    print(f"  text: {text}")  # plain: never wrapped, copies whole
    if qr:
        import segno

        segno.make(text, error="m").terminal(compact=True)
    console.print("on the new device: [bold]mimiverse mesh join TEXT --peer "
                  "ws://THIS-HOST:PORT/mesh/v1[/] (this device must be running "
                  "`mimiverse mesh run` or `serve` with mesh on)")  # fmt: skip


@mesh_app.command("join")
def join(
    invite_text: Annotated[
        str, typer.Argument(help="The invite text (mimi-invite:…) or its short code.")
    ],
    peer: Annotated[str, typer.Option(help="The owner's node: ws://host:port/mesh/v1.")],
    name: Annotated[str, typer.Option(help="A name for this device.")] = "",
    directory: DirOption = None,
) -> None:
    """Join a mesh with an invite, then fetch what it holds from the owner."""
    with _failing():
        replica = asyncio.run(join_mesh(_dir(directory), invite_text, peer, name=name))
        try:
            console.print(f"joined mesh [bold]{fingerprint(replica.mesh)}[/] as "
                          f"[bold]{fingerprint(replica.author)}[/]")  # fmt: skip
            status = asyncio.run(_sync_once(replica, [], timeout_s=30.0))
        finally:
            replica.close()
    console.print(f"synced: {status['blocks']} blocks")


@peers_app.callback()
def peers(ctx: typer.Context, directory: DirOption = None, json_out: JsonOption = False) -> None:
    """List the peers this device dials (add / remove to change them)."""
    if ctx.invoked_subcommand is not None:
        return
    with _replica(directory) as replica:
        listed = saved_peers(replica)
    if json_out:
        print(json.dumps(listed))
    elif not listed:
        console.print("no peers yet: [bold]mimiverse mesh peers add ws://HOST:PORT/mesh/v1[/]")
    for url in listed:
        console.print(url)


@peers_app.command("add")
def peers_add(url: str, directory: DirOption = None) -> None:
    """Dial this peer from now on."""
    with _replica(directory) as replica, _failing():
        url = check_peer_url(url)
        save_peers(replica, [*saved_peers(replica), url])
    console.print(f"added {url}")


@peers_app.command("remove")
def peers_remove(url: str, directory: DirOption = None) -> None:
    """Stop dialing this peer."""
    with _replica(directory) as replica, _failing():
        url = check_peer_url(url)
        listed = saved_peers(replica)
        if url not in listed:
            raise MeshRejected(f"{url} is not a saved peer (see `mimiverse mesh peers`)")
        save_peers(replica, [p for p in listed if p != url])
    console.print(f"removed {url}")


async def _sync_once(replica: Replica, extra: list[str], timeout_s: float) -> dict[str, Any]:
    service = MeshService(replica, listen=None, peers=extra, sync_interval_s=3600)
    await service.start()
    try:
        if not service.peers:
            raise MeshRejected(
                "no peers to sync with: `mimiverse mesh peers add URL` or --peer URL"
            )
        await service.wait_for_peers(1, timeout_s=min(timeout_s, 10.0))
        if not service.connected():
            errors = [p["last_error"] for p in service.status()["peers"] if p["last_error"]]
            raise MeshRejected(
                "no peer answered: " + ("; ".join(errors) or "is a node running there?"),
                reason="unreachable",
            )
        await service.wait_for_peers(len(service.peers), timeout_s=2.0)
        return await service.sync(timeout_s=timeout_s, quiet_s=0.5)
    finally:
        await service.close()


@mesh_app.command("sync")
def sync(
    directory: DirOption = None,
    peer: Annotated[
        list[str] | None, typer.Option(help="Also sync with this peer (repeat).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait at most.")] = 60.0,
    json_out: JsonOption = False,
) -> None:
    """Sync with the saved peers now (and --peer ones), then exit."""
    with _replica(directory) as replica:
        before = sum(replica.size(a) for a in replica.authors())
        with _failing():
            status = asyncio.run(_sync_once(replica, peer or [], timeout))
    if json_out:
        print(json.dumps(status))
        return
    stats = status["stats"]
    console.print(f"{status['blocks']} blocks ({status['blocks'] - before:+d}); "
                  f"{stats['messages_in']} messages in, {stats['messages_out']} out; "
                  f"{stats['rejected']} refused")  # fmt: skip
    _print_events(status)


@mesh_app.command("status")
def status(directory: DirOption = None, json_out: JsonOption = False) -> None:
    """This device, the roster, each log's size and Merkle root, quarantined authors."""
    with _replica(directory) as replica:
        body = MeshService(replica, listen=None).status()
        body["roster"] = _roster(replica)
        body["saved_peers"] = saved_peers(replica)
    if json_out:
        print(json.dumps(body))
        return
    console.print(f"mesh [bold]{body['mesh']}[/] · this device [bold]{body['device']}[/] "
                  f"({body['role']})")  # fmt: skip
    table = Table("device", "name", "role", "blocks", "Merkle root")
    for row in body["roster"]:
        log = body["logs"].get(row["device"], {"blocks": 0, "root": ""})
        table.add_row(row["device"], row["name"], row["role"], str(log["blocks"]),
                      log["root"][:16])  # fmt: skip
    console.print(table)
    console.print(f"state {body['state_hash'][:16]} · {body['waiting']} blocks waiting")
    if body["quarantined"]:
        console.print(f"[red]quarantined (forked):[/] {', '.join(body['quarantined'])}")
    console.print(f"peers: {', '.join(body['saved_peers']) or 'none saved'}")


def _roster(replica: Replica) -> list[dict[str, Any]]:
    rows = []
    for author, device in replica.roster.devices.items():
        term = device.current
        rows.append({
            "device": fingerprint(author),
            "name": device.name,
            "role": "revoked" if term.revoked else term.role,
            "epoch": term.epoch,
        })  # fmt: skip
    return rows


@mesh_app.command("log")
def log_cmd(
    directory: DirOption = None,
    author: Annotated[
        str | None, typer.Option(help="A device fingerprint (default: this one).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    json_out: JsonOption = False,
) -> None:
    """The newest blocks of a device's log."""
    with _replica(directory) as replica, _failing():
        who = _author(replica, author) if author else replica.author
        blocks = [_block_row(b) for b in iter_log(replica, who, limit)]
    if json_out:
        print(json.dumps(blocks))
        return
    table = Table("seq", "time", "kind", "what", "hash")
    for row in blocks:
        table.add_row(str(row["seq"]), row["time"], row["kind"], row["summary"], row["hash"][:12])
    console.print(table)


def _author(replica: Replica, wanted: str) -> bytes:
    for author in replica.roster.devices:
        if wanted in (fingerprint(author), author.hex()):
            return author
    raise MeshRejected(f"no device {wanted!r} on the roster (see `mimiverse mesh status`)")


def _block_row(block: Block) -> dict[str, Any]:
    wall_ms, _ = unpack(block.hlc)
    payload = block.payload
    summary = ""
    if isinstance(payload, dict):
        op, key = payload.get("op", ""), payload.get("key", payload.get("id", payload.get("doc")))
        summary = " ".join(str(p) for p in (op, key) if p)
    return {
        "seq": block.seq,
        "time": dt.datetime.fromtimestamp(wall_ms / 1000).isoformat(timespec="seconds"),
        "kind": block.kind,
        "summary": summary[:80],
        "hash": block.hash.hex(),
    }


DeviceArg = Annotated[str, typer.Argument(help="A device fingerprint (see `mesh status`).")]


@mesh_app.command("revoke")
def revoke(device: DeviceArg, directory: DirOption = None) -> None:
    """Owner: revoke a device (its later blocks are refused; it is disconnected)."""
    with _replica(directory) as replica, _failing():
        who = _author(replica, device)
        replica.revoke(who)
    console.print(f"revoked {fingerprint(who)}: sync (or a running node) tells the others")


@mesh_app.command("role")
def role(
    device: DeviceArg,
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help="member or read-only.")],
    directory: DirOption = None,
) -> None:
    """Owner: make a device a member or read-only."""
    with _replica(directory) as replica, _failing():
        if new_role not in ("member", "read-only"):
            raise MeshRejected("ROLE is member or read-only")
        who = _author(replica, device)
        replica.set_role(who, new_role)  # type: ignore[arg-type]
    console.print(f"{fingerprint(who)} is now {new_role}")


@mesh_app.command("rotate")
def rotate(directory: DirOption = None) -> None:
    """Give this device a new key; prints the request the owner accepts."""
    from mimiverse.mesh.service import rotate_key

    with _replica(directory) as replica, _failing():
        text = rotate_key(replica, _dir(directory))
    console.print("this device now signs with a new key; on the owner's device run:")
    print(f"  mimiverse mesh accept-rotation {text}")  # plain: never wrapped, copies whole


@mesh_app.command("accept-rotation")
def accept_rotation_cmd(
    request: Annotated[str, typer.Argument(help="The mimi-rotate:… text `mesh rotate` printed.")],
    directory: DirOption = None,
) -> None:
    """Owner: countersign a device's key rotation."""
    from mimiverse.mesh.service import accept_rotation

    with _replica(directory) as replica, _failing():
        device = accept_rotation(replica, request)
    console.print(f"{fingerprint(device)} rotated its key; sync to spread the roster")


KindArg = Annotated[str, typer.Argument(help="note, decision, snippet or setting.")]


@mesh_app.command("put")
def put(
    kind: KindArg,
    key: Annotated[str, typer.Argument(help="The entry's name.")],
    value: Annotated[str, typer.Argument(help="Its text ('-': read standard input).")],
    directory: DirOption = None,
) -> None:
    """Write a note, decision, snippet or setting (spreads at the next sync)."""
    from mimiverse.mesh.payloads import LWW_KINDS

    text = typer.get_text_stream("stdin").read() if value == "-" else value
    with _replica(directory) as replica, _failing():
        if kind not in LWW_KINDS:
            raise MeshRejected(f"kind is one of {', '.join(LWW_KINDS)}, not {kind!r}")
        block = replica.put(kind, key, text)  # type: ignore[arg-type]
    console.print(f"{kind} {key!r} written as block {block.seq} ({block.hash.hex()[:12]})")


@mesh_app.command("get")
def get(
    kind: KindArg,
    key: Annotated[str | None, typer.Argument(help="One entry (default: list them all).")] = None,
    directory: DirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Read notes, decisions, snippets or settings (concurrent values are all shown)."""
    with _replica(directory) as replica, _failing():
        names = [key] if key else [k for k, _ in replica.state.items(kind)]
        rows = {
            name: [w.value for w in replica.state.conflicts(kind, name)]
            or [replica.state.get(kind, name)]
            for name in names
        }
    if json_out:
        print(json.dumps(rows, default=repr))
        return
    for name, values in rows.items():
        marker = " [yellow](concurrent values)[/]" if len(values) > 1 else ""
        console.print(f"[bold]{name}[/]{marker}")
        for value in values:
            console.print(f"  {value!s}" if isinstance(value, str) else f"  {value!r}")


@mesh_app.command("run")
def run(
    directory: DirOption = None,
    listen: Annotated[str | None, typer.Option(help="host:port (default: mesh_listen).")] = None,
    peer: Annotated[list[str] | None, typer.Option(help="Also dial this peer (repeat).")] = None,
    discovery: Annotated[bool | None, typer.Option(help="mDNS on the LAN.")] = None,
) -> None:
    """Run this device's mesh node in the foreground (Ctrl-C stops it)."""
    settings = Settings()
    with _replica(directory) as replica, _failing():
        asyncio.run(_run(replica, settings, listen, peer or [], discovery))


async def _run(
    replica: Replica, settings: Settings, listen: str | None, peers: list[str], mdns: bool | None
) -> None:
    service = MeshService(
        replica,
        listen=listen or settings.mesh_listen,
        peers=[*settings.mesh_peers, *peers],
        sync_interval_s=settings.mesh_sync_interval_s,
        discovery=settings.mesh_discovery if mdns is None else mdns,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with service:
        console.print(f"mesh node {fingerprint(replica.author)} listening at {service.url()}"
                      f" · dialing {len(service.peers)} peers")  # fmt: skip
        seen = 0
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            for event in list(service.events)[seen:]:
                console.print(f"{dt.datetime.fromtimestamp(event.at):%H:%M:%S} {event.kind} "
                              f"{event.peer} {event.detail}")  # fmt: skip
            seen = len(service.events)
    console.print("stopped")


def _print_events(status: dict[str, Any]) -> None:
    for event in status["events"]:
        if event["kind"] in ("rejected", "fork", "peer-refused"):
            console.print(f"[yellow]{event['kind']}[/] {event['peer']} {event['detail']}")


@mesh_app.command("backup")
def backup(
    path: Annotated[Path, typer.Argument(help="The snapshot file to write.")],
    directory: DirOption = None,
) -> None:
    """Write a signed snapshot of every log (the device key is not in it: back it up apart)."""
    from mimiverse.mesh.snapshot import write_snapshot

    with _replica(directory) as replica, _failing():
        info = write_snapshot(replica, path)
    console.print(f"wrote {path}: {info.blocks} blocks of {len(info.logs)} devices, "
                  f"{info.size_bytes} bytes, sha256 {info.sha256[:16]}")  # fmt: skip


@mesh_app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="A snapshot written by `mesh backup`.")],
    key: Annotated[Path, typer.Option(help="This device's key file (device.key) backed up apart.")],
    directory: DirOption = None,
) -> None:
    """Restore a snapshot into an empty mesh folder, checking every block and signature."""
    from mimiverse.mesh.identity import DeviceKey
    from mimiverse.mesh.service import device_key_path
    from mimiverse.mesh.snapshot import restore_snapshot

    target = _dir(directory)
    with _failing():
        device_key = DeviceKey.load(key)
        summary = restore_snapshot(path, target, device_key)
        if not device_key_path(target).exists():
            device_key.save(device_key_path(target))
    console.print(f"restored into {target}: {summary.info.blocks} blocks checked, this "
                  f"device is {summary.role} with {summary.own_blocks} blocks of its own; "
                  "sync before writing")  # fmt: skip

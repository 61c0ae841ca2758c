"""This device's mesh over HTTP (admins only): status, logs, peers, sync, invites, notes, backups.

With ``mesh`` on, ``mimiverse serve`` runs the node (``mesh_lifespan``) and every route goes
through its ``MeshService``: under its lock, and writes are announced to peers at once.
With it off, the routes open the store on disk for the one request (one at a time), so a
UI can still read and edit the mesh; the node (``mimiverse mesh run``) syncs it later. A
store another process holds answers 409.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import Field

from mimiverse.errors import ConfigError, Forbidden, MimiError, NotFound
from mimiverse.mesh.codec import Value
from mimiverse.mesh.hlc import unpack
from mimiverse.mesh.identity import fingerprint
from mimiverse.mesh.payloads import MAX_KEY
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import (
    MeshNotSetUp,
    MeshService,
    check_peer_url,
    open_replica,
    save_peers,
    saved_peers,
)
from mimiverse.server.auth import principal_of
from mimiverse.server.openapi import errors
from mimiverse.server.schemas import Body, Int

PREVIEW_CHARS = 500
"""A log entry shows at most this much of a payload's value."""
MAX_PEER_URL = 300
MAX_NOTE_CHARS = 15_000
"""Text that fits one block whatever its characters (4 UTF-8 bytes each, at worst)."""
BACKUPS = "backups"
NoteKind = Literal["note", "decision", "snippet"]
AUTHOR_PATTERN = r"^([0-9a-fA-F]{64}|[A-Za-z2-7]{4}(-[A-Za-z2-7]{4}){3})$"


def admin_only(request: Request) -> None:
    """The mesh is the machine's, like /api/admin: the admin role and the admin scope."""
    if not principal_of(request).allows("admin"):
        raise Forbidden(
            f"this credential may not use {request.url.path}: it needs the 'admin' scope "
            "and the admin role"
        )


router = APIRouter(prefix="/api/mesh", tags=["mesh"], dependencies=[Depends(admin_only)])


class MeshNotRunning(MimiError):
    """The call needs the live node, and this server does not run one."""

    status = 503
    code = "mesh_not_running"


class PeerBody(Body):
    """POST /api/mesh/peers."""

    url: str = Field(
        min_length=1,
        max_length=MAX_PEER_URL,
        description="A peer's address: ws://host:port/mesh/v1 (host:port is enough).",
    )


class InviteBody(Body):
    """POST /api/mesh/invites."""

    role: Literal["member", "read-only"] = "member"
    ttl_s: Int = Field(
        default=24 * 3600, ge=60, le=30 * 24 * 3600, description="How long the invite is valid."
    )


class NoteBody(Body):
    """PUT /api/mesh/notes/{key}."""

    value: str = Field(
        max_length=MAX_NOTE_CHARS,
        description="The text (a block is at most 64 KiB: longer text goes under several keys).",
    )


Key = Annotated[str, PathParam(min_length=1, max_length=MAX_KEY, description="The key.")]
KindQuery = Annotated[NoteKind, Query(description="Which map: note, decision or snippet.")]


# --- the node inside `mimiverse serve` -----------------------------------------------------


@asynccontextmanager
async def mesh_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run this device's mesh node for the app's life (``mesh`` on); ``app.state.mesh``."""
    settings = app.state.settings
    replica = open_replica(settings.mesh_path)  # MeshNotSetUp: `mimiverse mesh init` first
    service: MeshService | None = None
    try:
        service = MeshService(
            replica,
            listen=settings.mesh_listen,
            peers=settings.mesh_peers,
            sync_interval_s=settings.mesh_sync_interval_s,
            discovery=settings.mesh_discovery,
        )
        await service.start()
    except BaseException as exc:
        if service is not None:
            await service.close()
        replica.close()
        if isinstance(exc, OSError | ValueError):
            raise ConfigError(
                f"the mesh node cannot listen on {settings.mesh_listen!r} ({exc}): set "
                "MIMI_MESH_LISTEN to a free host:port"
            ) from None
        raise
    app.state.mesh = service
    try:
        yield
    finally:
        app.state.mesh = None
        await service.close()
        replica.close()


def _service(request: Request) -> MeshService | None:
    return cast(MeshService | None, getattr(request.app.state, "mesh", None))


@asynccontextmanager
async def _replica(request: Request, *, write: bool = False) -> AsyncIterator[Replica]:
    """This device's replica for one request: the node's (under its lock; a write is
    announced to peers after), or the store on disk, opened for this request alone."""
    service = _service(request)
    if service is not None:
        if write:
            async with service.writing() as replica:
                yield replica
        else:
            async with service.lock:
                yield service.replica
        return
    state = request.app.state
    if getattr(state, "mesh_offline_lock", None) is None:
        state.mesh_offline_lock = asyncio.Lock()
    async with state.mesh_offline_lock:
        try:
            replica = await asyncio.to_thread(open_replica, state.settings.mesh_path)
        except MeshNotSetUp as exc:
            raise NotFound(exc.message) from None
        try:
            yield replica
        finally:
            replica.close()


def _running(request: Request, what: str) -> MeshService:
    service = _service(request)
    if service is None:
        raise MeshNotRunning(
            f"{what} needs the mesh node, and this server does not run it: set MIMI_MESH=true "
            "and restart `mimiverse serve` (or use `mimiverse mesh run`)"
        )
    return service


# --- status, log, peers, sync ----------------------------------------------------------------


@router.get("/status", responses=errors(400, 404, 409))
async def status(request: Request) -> dict[str, Any]:
    """This device, its role, logs, peers and the last events (``running``: node is on)."""
    service = _service(request)
    if service is not None:
        return {"running": True, **service.status()}
    async with _replica(request) as replica:
        idle = MeshService(replica, listen=None).status()  # same shape, nothing started
        peers = _offline_peers(request, replica)
    return {**idle, "running": False, "peers": peers, "stats": None}


def _offline_peers(request: Request, replica: Replica) -> list[dict[str, Any]]:
    urls = sorted({*saved_peers(replica), *request.app.state.settings.mesh_peers})
    return [
        {"device": None, "address": url, "direction": "out", "connected": False,
         "rtt_ms": None, "failures": 0, "last_error": None}
        for url in urls
    ]  # fmt: skip


@router.get("/log", responses=errors(404, 409))
async def log(
    request: Request,
    author: Annotated[
        str | None,
        Query(
            pattern=AUTHOR_PATTERN,
            description="A device: its fingerprint (ABCD-EFGH-IJKL-MNOP) or 64-hex id; "
            "default this device.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**48, description="Only blocks with a lower seq (paging).")
    ] = None,
) -> dict[str, Any]:
    """The newest blocks of one device's log, newest first; payloads are summarised."""
    async with _replica(request) as replica:
        who = _author(replica, author) if author else replica.author
        size = replica.size(who)
        top = size if before is None else min(size, before - 1)
        blocks = [replica.block_at(who, seq) for seq in range(top, max(0, top - limit), -1)]
        device = replica.roster.devices.get(who)
    return {
        "author": fingerprint(who),
        "author_id": who.hex(),
        "name": device.name if device else None,
        "size": size,
        "blocks": [
            {
                "seq": b.seq,
                "kind": b.kind,
                "hlc": str(b.hlc),  # a decimal string: past 2**53, exact in JavaScript too
                "at_ms": unpack(b.hlc)[0],
                "hash": b.hash.hex(),
                "author": fingerprint(b.author),
                "key_epoch": b.key_epoch,
                "payload": summarise(b.kind, b.payload),
            }
            for b in blocks
        ],
    }


def _author(replica: Replica, text: str) -> bytes:
    known = {*replica.authors(), *replica.roster.devices}
    for author in known:
        if text.lower() == author.hex() or text.upper() == fingerprint(author):
            return author
    raise NotFound(f"no device {text} in this mesh: GET /api/mesh/status lists its logs")


@router.get("/peers", responses=errors(400, 404, 409))
async def peers(request: Request) -> dict[str, Any]:
    """The peers this device dials or is connected to."""
    service = _service(request)
    if service is not None:
        return {"running": True, "peers": service.status()["peers"]}
    async with _replica(request) as replica:
        return {"running": False, "peers": _offline_peers(request, replica)}


@router.post("/peers", responses=errors(404, 409))
async def add_peer(body: PeerBody, request: Request) -> dict[str, Any]:
    """Dial a peer from now on (kept across restarts)."""
    url = check_peer_url(body.url)
    service = _service(request)
    if service is not None:
        async with service.lock:
            service.add_peer(url)
    else:
        async with _replica(request) as replica:
            save_peers(replica, [*saved_peers(replica), url])
    return await peers(request)


@router.delete("/peers", responses=errors(404, 409))
async def remove_peer(
    request: Request,
    url: Annotated[str, Query(min_length=1, max_length=MAX_PEER_URL, description="The address.")],
) -> dict[str, Any]:
    """Stop dialing a peer and forget it (one from ``mesh_peers`` returns at restart)."""
    url = check_peer_url(url)
    service = _service(request)
    if service is not None:
        if url not in service.peers:
            raise NotFound(f"no peer {url}: GET /api/mesh/peers lists them")
        await service.remove_peer(url)
    else:
        async with _replica(request) as replica:
            kept = saved_peers(replica)
            if url not in kept:
                raise NotFound(f"no peer {url}: GET /api/mesh/peers lists them")
            save_peers(replica, [p for p in kept if p != url])
    return await peers(request)


@router.post("/sync", responses=errors(503))
async def sync(
    request: Request,
    timeout_s: Annotated[
        float, Query(gt=0, le=120, description="Give up waiting for quiet after this long.")
    ] = 30.0,
) -> dict[str, Any]:
    """Ask every connected peer now; answers with the status once the exchange is quiet."""
    service = _running(request, "syncing")
    return {"running": True, **await service.sync(timeout_s=timeout_s)}


# --- invites ------------------------------------------------------------------------------


@router.post("/invites", status_code=201, responses=errors(404, 409))
async def invite(body: InviteBody, request: Request) -> dict[str, Any]:
    """A one-time invite for a new device (the owner's device only)."""
    async with _replica(request) as replica:
        if replica.author != replica.mesh:
            raise Forbidden(
                "only the mesh owner's device makes invites: ask for one on the owner's device"
            )
        made = replica.create_invite(body.role, body.ttl_s)
    service = _service(request)
    peer = service.url() if service is not None and service.port is not None else None
    return {
        "code": made.code(),
        "text": made.to_text(),
        "role": made.role,
        "expires_ms": made.expires_ms,
        "peer": peer,
    }


# --- notes, decisions, snippets -----------------------------------------------------------


@router.get("/notes", responses=errors(404, 409))
async def notes(
    request: Request,
    kind: KindQuery = "note",
    after: Annotated[
        str | None, Query(max_length=MAX_KEY, description="Keys after this one (paging).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """One map's keys and values, by key; concurrent edits are listed in ``conflicts``
    (a key deleted on one device while edited on another is listed, with value null)."""
    async with _replica(request) as replica:
        state = replica.state
        keys = [
            k
            for k in sorted(state.maps[kind])
            if (after is None or k > after)
            and (state.get(kind, k) is not None or state.conflicts(kind, k))
        ]
        page = keys[:limit]
        rows = [_note(replica, kind, key) for key in page]
    more = len(keys) > limit
    return {"kind": kind, "notes": rows, "next": page[-1] if more else None}


def _note(replica: Replica, kind: str, key: str) -> dict[str, Any]:
    return {
        "key": key,
        "value": to_json(replica.state.get(kind, key)),
        "conflicts": [
            {
                "value": None if w.deleted else to_json(w.value),
                "deleted": w.deleted,
                "author": fingerprint(w.author),
                "hlc": str(w.hlc),
                "at_ms": unpack(w.hlc)[0],
                "hash": w.hash.hex(),
            }
            for w in replica.state.conflicts(kind, key)
        ],
    }


@router.put("/notes/{key:path}", responses=errors(404, 409))
async def put_note(
    key: Key, body: NoteBody, request: Request, kind: KindQuery = "note"
) -> dict[str, Any]:
    """Set a key (a signed block in this device's log, sent to peers at once)."""
    async with _replica(request, write=True) as replica:
        block = replica.put(kind, key, body.value)
        row = _note(replica, kind, key)
    return {"kind": kind, **row, "seq": block.seq, "hash": block.hash.hex()}


@router.delete("/notes/{key:path}", responses=errors(404, 409))
async def delete_note(key: Key, request: Request, kind: KindQuery = "note") -> dict[str, Any]:
    """Remove a key (a tombstone block; peers drop it too)."""
    async with _replica(request, write=True) as replica:
        if replica.state.get(kind, key) is None:
            raise NotFound(f"no {kind} {key!r}: GET /api/mesh/notes?kind={kind} lists them")
        block = replica.delete(kind, key)
    return {"kind": kind, "key": key, "deleted": True, "seq": block.seq, "hash": block.hash.hex()}


# --- backups ------------------------------------------------------------------------------


@router.post("/backup", status_code=201, responses=errors(400, 404, 409))
async def backup(request: Request) -> dict[str, Any]:
    """Write a signed snapshot of every log to ``<mesh_dir>/backups/`` (no keys in it)."""
    from mimiverse.mesh.snapshot import snapshot_name, write_snapshot

    folder = request.app.state.settings.mesh_path / BACKUPS
    async with _replica(request) as replica:
        await asyncio.to_thread(folder.mkdir, mode=0o700, exist_ok=True)
        path = folder / snapshot_name(replica)
        info = await asyncio.to_thread(write_snapshot, replica, path)
    return {**info.to_dict(), "folder": BACKUPS}


# --- JSON views of mesh values --------------------------------------------------------------


def to_json(value: Value) -> Any:
    """A mesh value as JSON: byte strings become ``{"base64": …}``."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def preview(value: Value) -> Any:
    """``to_json(value)``, or when that is long, the start of its JSON text."""
    shown = to_json(value)
    text = json.dumps(shown, ensure_ascii=False)
    if len(text) <= PREVIEW_CHARS:
        return shown
    return {"truncated": True, "chars": len(text), "start": text[:PREVIEW_CHARS]}


def summarise(kind: str, payload: Value) -> dict[str, Any]:
    """What a block's payload says, short: keys and ids whole, values previewed, hashes counted."""
    if not isinstance(payload, dict):
        return {"value": preview(payload)}
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name in ("base", "tags") and isinstance(value, list):
            out[name] = len(value)
        elif name == "update" and isinstance(value, bytes):
            out["update_bytes"] = len(value)
        elif name in ("device", "key") and isinstance(value, bytes) and len(value) == 32:
            out[name] = fingerprint(value)
        elif name == "old_sig":
            continue
        else:
            out[name] = preview(value)
    return out

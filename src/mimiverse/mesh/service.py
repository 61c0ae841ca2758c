"""A running mesh device: its replica synced with peers over the secure transport.

``MeshService`` glues ``Replica`` (blocks, sync messages) to ``MeshNode`` (authenticated,
encrypted channels). Every replica call happens under one lock, in the event loop, so
writes, received deltas and status reads never interleave. Sync is push + pull:

* when a channel opens, and after every local write, we send our version vector; the
  peer answers with the delta we lack and, when it lacks something, its own vector;
* every ``sync_interval_s`` we send our vector to every peer (anti-entropy), so a lost
  message costs at most one interval;
* blocks that reach us from one peer are announced to the others (gossip), so a write
  spreads over any connected graph without everybody dialing everybody.

Roster changes take effect at once: a device whose key stops being authorised is
disconnected, and the handshake refuses it from then on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from mimiverse.errors import MimiError
from mimiverse.mesh import codec
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import (
    INVITE_PREFIX,
    DeviceKey,
    Invite,
    JoinRequest,
    fingerprint,
    join_request,
    owner_proof,
    secret_from_code,
)
from mimiverse.mesh.replica import STORE_NAME, Replica
from mimiverse.mesh.sync import Vector, decode_message
from mimiverse.mesh.transport.channel import Channel
from mimiverse.mesh.transport.node import JOIN_PATH, MAX_JOIN_BYTES, PATH, MeshNode
from mimiverse.mesh.transport.reports import PeerReport, log
from mimiverse.mesh.validate import Report

KEY_NAME = "device.key"
NEXT_KEY_NAME = "device.key.next"
ROTATION_PREFIX = "mimi-rotate:"
PEERS_META = "peers"
MAX_EVENTS = 200
QUIET_S = 0.3


class MeshNotSetUp(MeshRejected):
    """This device has no mesh yet."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"no mesh in {directory}: run `mimiverse mesh init` (a new mesh) or "
            "`mimiverse mesh join INVITE --peer URL` (an existing one)",
            reason="no mesh",
        )


def device_key_path(directory: Path) -> Path:
    return directory / KEY_NAME


def is_set_up(directory: Path) -> bool:
    return device_key_path(directory).exists() and (directory / STORE_NAME).exists()


def open_replica(directory: Path) -> Replica:
    """This device's replica in ``directory`` (raises MeshNotSetUp if there is none)."""
    if not is_set_up(directory):
        raise MeshNotSetUp(directory)
    replica = Replica.open(directory, DeviceKey.load(device_key_path(directory)))
    pending = directory / NEXT_KEY_NAME
    if pending.exists():  # a rotation stopped between its steps: finish or drop it
        current = replica.store.get_meta("key")
        new_key = DeviceKey.load(pending)
        if current == new_key.public:
            os.replace(pending, device_key_path(directory))
            replica.key = new_key
        else:
            pending.unlink()
    return replica


def rotate_key(replica: Replica, directory: Path) -> str:
    """Switch this device to a new key; returns the request text the owner accepts.

    The new key is written beside the old one first, the store then records the switch,
    and only then does the new key replace ``device.key``: a crash between the steps is
    finished (or undone) by ``open_replica``. Until the owner's roster block arrives,
    peers hold this device's new blocks back ("unknown key epoch").
    """
    new_key = DeviceKey.generate()
    pending = directory / NEXT_KEY_NAME
    new_key.save(pending)
    op = replica.begin_rotation(new_key)
    os.replace(pending, device_key_path(directory))
    return ROTATION_PREFIX + base64.b32encode(codec.encode(op)).decode().rstrip("=")


def accept_rotation(replica: Replica, text: str) -> bytes:
    """Owner: countersign a device's rotation request text; returns the device id."""
    raw = text.strip().removeprefix(ROTATION_PREFIX).upper()
    if not text.strip().startswith(ROTATION_PREFIX):
        raise MeshRejected(f"a rotation request starts with {ROTATION_PREFIX!r}")
    try:
        op = codec.decode(base64.b32decode(raw + "=" * (-len(raw) % 8)), max_bytes=1024)
    except (ValueError, MeshRejected):
        op = None
    if not isinstance(op, dict) or op.get("op") != "rotate":
        raise MeshRejected("the rotation request is damaged: copy it again", reason="bad request")
    replica.accept_rotation(op)
    device = op.get("device")
    return device if isinstance(device, bytes) else b""


def create_mesh(directory: Path) -> Replica:
    """A new mesh with this device as its owner (refuses to overwrite one)."""
    if is_set_up(directory):
        raise MeshRejected(
            f"{directory} already holds a mesh: use it, or pick another --dir",
            reason="mesh exists",
        )
    directory.mkdir(parents=True, exist_ok=True)
    key = DeviceKey.load_or_create(device_key_path(directory))
    return Replica.open(directory, key)


def check_peer_url(url: str) -> str:
    """A peer address as the node dials it: ``ws://host:port/mesh/v1``."""
    url = url.strip()
    if "://" not in url:
        url = f"ws://{url}"
    if not url.startswith(("ws://", "wss://")):
        raise MeshRejected(f"a peer address is ws://host:port{PATH}, not {url!r}")
    if not url.rstrip("/").endswith(PATH):
        url = url.rstrip("/") + PATH
    return url


def saved_peers(replica: Replica) -> list[str]:
    raw = replica.store.get_meta(PEERS_META)
    peers = codec.decode(raw) if raw else []
    return [p for p in peers if isinstance(p, str)] if isinstance(peers, list) else []


def save_peers(replica: Replica, peers: list[str]) -> None:
    with replica.batch():
        replica.store.set_meta(PEERS_META, codec.encode(list[Value](sorted(set(peers)))))


async def join_mesh(
    directory: Path, invite: str, peer_url: str, *, name: str = "", timeout_s: float = 15.0
) -> Replica:
    """Answer an invite at the owner's node ``peer_url``; returns this device's new replica.

    ``invite`` is the invite text (``mimi-invite:…``, which names the mesh) or just its
    short code, in which case the node is asked which mesh it serves. Either way the node
    must prove it holds the invite's secret before anything is kept. The device key is
    made (or reused) first; the replica is created only once the owner admitted it, so a
    refused join leaves nothing behind but the key.
    """
    if is_set_up(directory):
        raise MeshRejected(f"{directory} already holds a mesh", reason="mesh exists")
    url = check_peer_url(peer_url).removesuffix(PATH) + JOIN_PATH
    if invite.strip().startswith(INVITE_PREFIX):
        parsed = Invite.from_text(invite)
        mesh, secret = parsed.mesh, parsed.secret
    else:
        secret = secret_from_code(invite)
        match await _ask_join(url, codec.encode({"t": "mesh?"}), timeout_s):
            case {"mesh": bytes(mesh)} if len(mesh) == 32:
                pass
            case _:
                raise MeshRejected(f"{url} did not say which mesh it serves", reason="join refused")
    directory.mkdir(parents=True, exist_ok=True)
    key = DeviceKey.load_or_create(device_key_path(directory))
    request = join_request(secret, mesh, key, name)
    match await _ask_join(url, request.to_bytes(), timeout_s):
        case {"ok": True, "proof": bytes(proof)}:
            if not hmac.compare_digest(proof, owner_proof(secret, mesh, key.public)):
                raise MeshRejected(
                    f"{url} does not hold this invite: it is not the mesh's owner",
                    reason="owner not proven",
                )
        case {"ok": False, "error": str(error)}:
            raise MeshRejected(f"the owner refused: {error}", reason="join refused")
        case _:
            raise MeshRejected("the owner's reply is not a join reply", reason="join refused")
    replica = Replica.open(directory, key, mesh=mesh)
    save_peers(replica, [check_peer_url(peer_url)])
    return replica


async def _ask_join(url: str, message: bytes, timeout_s: float) -> Value:
    """One message to a node's join path, and its reply (decoded)."""
    try:
        async with asyncio.timeout(timeout_s):
            async with connect(url, compression=None, max_size=MAX_JOIN_BYTES, proxy=None) as ws:
                await ws.send(message)
                reply = await ws.recv(decode=False)
    except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
        raise MeshRejected(
            f"could not reach the owner at {url}: {exc or type(exc).__name__}", reason="unreachable"
        ) from None
    return codec.decode(bytes(reply), max_bytes=MAX_JOIN_BYTES)


@dataclass
class MeshEvent:
    """Something worth showing in ``mesh status``: a refusal, a fork, a peer change."""

    at: float
    kind: str  # "rejected" | "fork" | "peer-up" | "peer-down" | "peer-refused" | "join"
    detail: str
    peer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncStats:
    """Counters since the service started."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    accepted: int = 0
    rejected: int = 0  # refused for a reason (forged, forked, revoked …)
    duplicates: int = 0  # blocks we already held (gossip sends many twice): no offence
    last_activity: float = field(default_factory=time.monotonic)


class MeshService:
    """One device on the mesh: replica + node + peers + background anti-entropy."""

    def __init__(
        self,
        replica: Replica,
        *,
        listen: str | None = "127.0.0.1:0",
        peers: list[str] | None = None,
        sync_interval_s: float = 30.0,
        discovery: bool = False,
        node_options: dict[str, Any] | None = None,
    ) -> None:
        self.replica = replica
        self.listen_on = listen
        self.sync_interval_s = sync_interval_s
        self.discovery_on = discovery
        self.peers = sorted({check_peer_url(p) for p in [*saved_peers(replica), *(peers or [])]})
        self.events: deque[MeshEvent] = deque(maxlen=MAX_EVENTS)
        self.stats = SyncStats()
        self.lock = asyncio.Lock()
        self.node = MeshNode(
            replica.key.signing_key,
            replica.mesh,
            self._authorize,
            on_message=self._on_message,
            on_peer_up=self._on_peer_up,
            on_peer_down=self._on_peer_down,
            reporter=self._on_transport_report,
            on_join=self._on_join if replica.author == replica.mesh else None,
            **(node_options or {}),
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._peer_vectors: dict[bytes, Vector] = {}
        """The last version vector each connected peer sent (what it holds)."""
        self._discovery: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> MeshService:
        if self.listen_on is not None:
            host, _, port = self.listen_on.rpartition(":")
            self.port = await self.node.listen(host or "127.0.0.1", int(port or 0))
        for url in self.peers:
            self.node.add_peer(url)
        if self.discovery_on and self.port is not None:
            await self._start_discovery()
        self._ticker = asyncio.create_task(self._anti_entropy(), name="mesh anti-entropy")
        return self

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._discovery is not None:
            await self._discovery.close()
        await self.node.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> MeshService:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def url(self, host: str | None = None) -> str:
        """Where peers dial this node: the listen address; for 0.0.0.0, a LAN address."""
        if host is None:
            listened = (self.listen_on or "").rpartition(":")[0]
            host = listened or "127.0.0.1"
            if listened in ("0.0.0.0", "::"):  # every interface: name one others can reach
                from mimiverse.mesh.transport.discovery import lan_addresses

                host = next(iter(lan_addresses()), "127.0.0.1")
        return self.node.url(host)

    # -- peers ------------------------------------------------------------------------------

    def add_peer(self, url: str, *, remember: bool = True) -> str:
        url = check_peer_url(url)
        if url not in self.peers:
            self.peers.append(url)
            self.node.add_peer(url)
        if remember:
            save_peers(self.replica, [*saved_peers(self.replica), url])
        return url

    async def remove_peer(self, url: str) -> None:
        url = check_peer_url(url)
        if url in self.peers:
            self.peers.remove(url)
        save_peers(self.replica, [p for p in saved_peers(self.replica) if p != url])
        await self.node.remove_peer(url)

    def connected(self) -> list[bytes]:
        return [c.peer_key for c in self.node.channels()]

    # -- writing and syncing ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Replica]:
        """``async with service.writing() as replica:`` change the replica, then announce."""
        async with self.lock:
            yield self.replica
        self._spawn(self._after_write())

    async def _after_write(self) -> None:
        await self.announce()
        if any(not self.replica.authorizes(k) for k in self.connected()):
            await self._drop_unauthorised()

    async def announce(self, *, skip: bytes | None = None) -> None:
        """Send our version vector to every connected peer (but ``skip``)."""
        async with self.lock:
            message = self.replica.vector().to_message()
        await asyncio.gather(
            *(self._send(c.peer_key, message) for c in self.node.channels() if c.peer_key != skip)
        )

    async def sync(self, *, timeout_s: float = 30.0, quiet_s: float = QUIET_S) -> dict[str, Any]:
        """Ask every connected peer now and wait until the exchange goes quiet."""
        await self.announce()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet_s / 3)
            if time.monotonic() - self.stats.last_activity >= quiet_s:
                break
        return self.status()

    async def wait_for_peers(self, count: int, timeout_s: float = 15.0) -> bool:
        """Wait until ``count`` peers are connected (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        while len(self.connected()) < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        replica = self.replica
        role = replica.roster.role_of(replica.author)
        return {
            "mesh": fingerprint(replica.mesh),
            "mesh_id": replica.mesh.hex(),
            "device": fingerprint(replica.author),
            "device_id": replica.author.hex(),
            "role": role or "not on the roster yet",
            "listening": self.url() if self.port is not None else None,
            "peers": [_peer_dict(s) for s in self.node.peers()],
            "logs": {
                fingerprint(a): {"blocks": n, "root": replica.root(a).hex()}
                for a, n in ((a, replica.size(a)) for a in replica.authors())
            },
            "blocks": sum(replica.size(a) for a in replica.authors()),
            "waiting": replica.pending_count,
            "quarantined": [fingerprint(a) for a in replica.fork_proofs()],
            "state_hash": replica.state_hash().hex(),
            "stats": {k: v for k, v in vars(self.stats).items() if k != "last_activity"},
            "events": [e.to_dict() for e in list(self.events)[-20:]],
        }

    # -- node callbacks ---------------------------------------------------------------------

    def _authorize(self, key: bytes) -> bool:
        return self.replica.authorizes(key)

    def _on_peer_up(self, channel: Channel) -> None:
        self._event("peer-up", channel.address, channel.peer_key)
        self._spawn(self._send_vector(channel.peer_key))

    def _on_peer_down(self, channel: Channel) -> None:
        self._peer_vectors.pop(channel.peer_key, None)
        self._event("peer-down", channel.address, channel.peer_key)

    def _on_transport_report(self, report: PeerReport) -> None:
        self._event("peer-refused", f"{report.kind}: {report.detail}", report.peer_key)

    async def _on_message(self, peer: bytes, message: bytes) -> None:
        self.stats.messages_in += 1
        self.stats.bytes_in += len(message)
        self.stats.last_activity = time.monotonic()
        async with self.lock:
            before = self.replica.vector().heads
            try:
                received = decode_message(message, self.replica.mesh)
                if isinstance(received, Vector):
                    self._peer_vectors[peer] = received
                replies, report = self.replica.answer(received)
                seen = self._peer_vectors.get(peer)
                if seen is not None and self.replica.restored:
                    self.replica.caught_up_with(seen)
            except MeshRejected as exc:
                self._event("rejected", exc.message, peer)
                return
            grew = self.replica.vector().heads != before
        self._record(report, peer)
        for reply in replies:
            await self._send(peer, reply)
        if report.counts.get("revoked key") or any(
            not self.replica.authorizes(k) for k in self.connected()
        ):
            await self._drop_unauthorised()
        if grew:
            await self.announce(skip=peer)

    async def _on_join(self, data: bytes, address: str) -> bytes:
        try:
            if codec.decode(data, max_bytes=MAX_JOIN_BYTES) == {"t": "mesh?"}:
                return codec.encode({"mesh": self.replica.mesh})  # public: mDNS says it too
            request = JoinRequest.from_bytes(data)
            async with self.lock:
                _, proof = self.replica.admit_with_proof(request)
        except MeshRejected as exc:
            self._event("join", f"refused from {address}: {exc.message}")
            return codec.encode({"ok": False, "error": exc.message})
        self._event("join", f"admitted {fingerprint(request.device)} ({request.name or '-'})")
        self._spawn(self.announce())
        return codec.encode({"ok": True, "proof": proof})

    # -- internals --------------------------------------------------------------------------

    async def _send_vector(self, peer: bytes) -> None:
        async with self.lock:
            message = self.replica.vector().to_message()
        await self._send(peer, message)

    async def _send(self, peer: bytes, message: bytes) -> None:
        try:
            await self.node.send(peer, message)
        except MimiError:  # PeerNotConnected, a channel closing under us
            return
        except Exception as exc:  # a channel closing under us
            log.debug("mesh send to %s failed: %s", peer.hex()[:16], exc)
            return
        self.stats.messages_out += 1
        self.stats.bytes_out += len(message)
        self.stats.last_activity = time.monotonic()

    async def _drop_unauthorised(self) -> None:
        """Disconnect devices no longer on the roster, after telling them why.

        The last delta they are sent carries the roster block that revoked them, so a
        revoked device learns it (``mesh status``) instead of only failing to connect.
        """
        for key in self.connected():
            if self.replica.authorizes(key):
                continue
            seen = self._peer_vectors.pop(key, None)
            if seen is not None:
                async with self.lock:
                    delta = self.replica.diff_for(seen)
                if delta:
                    await self._send(key, delta.to_message())
            channel = self.node.channel(key)
            if channel is not None:
                await channel.close("revoked from the roster", flush_s=1.0)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_s)
            with contextlib.suppress(Exception):
                await self.announce()

    async def _start_discovery(self) -> None:
        from mimiverse.mesh.transport.discovery import Announcement, Discovery

        def found(announcement: Announcement) -> None:
            if announcement.device_id == self.replica.author.hex():
                return
            for url in announcement.urls:
                if url not in self.peers:
                    self.add_peer(url, remember=False)

        host = (self.listen_on or "").rpartition(":")[0]
        self._discovery = Discovery(
            self.replica.author.hex(),
            self.replica.mesh.hex(),
            self.port or 0,
            on_found=found,
            interfaces=None if host in ("", "0.0.0.0") else [host],
        )
        await self._discovery.start()

    def _record(self, report: Report, peer: bytes) -> None:
        self.stats.accepted += len(report.accepted)
        duplicates = report.counts.get("replayed", 0)
        self.stats.duplicates += duplicates
        self.stats.rejected += sum(report.counts.values()) - duplicates
        for rejection in report.rejected:
            if rejection.reason != "replayed":  # gossip brings duplicates all the time
                self._event("rejected", f"{rejection.reason}: {rejection.detail}", peer)
        for proof in report.forks:
            self._event("fork", f"{fingerprint(proof.author)} equivocated at {proof.seq}", peer)

    def _event(self, kind: str, detail: str, peer: bytes | None = None) -> None:
        self.events.append(MeshEvent(time.time(), kind, detail, fingerprint(peer) if peer else ""))

    def _spawn(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _peer_dict(status: Any) -> dict[str, Any]:
    return {
        "device": fingerprint(status.key) if status.key else None,
        "address": status.address,
        "direction": status.direction,
        "connected": status.connected,
        "rtt_ms": round(status.rtt_s * 1000, 1) if status.rtt_s is not None else None,
        "failures": status.failures,
        "last_error": status.last_error,
    }


def iter_log(replica: Replica, author: bytes | None = None, limit: int = 50) -> Iterator[Any]:
    """The newest ``limit`` blocks of one author's log (default: this device's)."""
    who = author or replica.author
    size = replica.size(who)
    for seq in range(size, max(0, size - limit), -1):
        yield replica.block_at(who, seq)

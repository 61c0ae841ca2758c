"""A mesh node: listens for peers, dials manual ones, keeps one channel per device key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus

from nacl.signing import SigningKey
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from mimiverse.mesh.transport.channel import Channel
from mimiverse.mesh.transport.errors import (
    ChannelClosed,
    HandshakeFailed,
    PeerNotConnected,
    PeerRefused,
)
from mimiverse.mesh.transport.handshake import Authorize, Session, initiate, mesh_id_bytes, respond
from mimiverse.mesh.transport.limits import ChannelLimits
from mimiverse.mesh.transport.link import (
    CLOSE_GOING_AWAY,
    CLOSE_REPLACED,
    CLOSE_TRY_LATER,
    Link,
    WebSocketLink,
)
from mimiverse.mesh.transport.peer import Backoff, Dialer, PeerStatus
from mimiverse.mesh.transport.reports import PeerReport, Reporter, log, log_report

PATH = "/mesh/v1"
JOIN_PATH = PATH + "/join"
"""Where a device not yet on the roster presents its invite answer (one message each way)."""
MAX_JOIN_BYTES = 1024
MessageHandler = Callable[[bytes, bytes], Awaitable[None]]
"""``await on_message(peer_key, message)``: one peer's messages arrive in order, one at a time."""
ChannelCallback = Callable[[Channel], None]
JoinHandler = Callable[[bytes, str], Awaitable[bytes]]
"""``await on_join(request, address) -> reply``: the owner's answer to a join request."""


class MeshNode:
    """Our end of the mesh: secure channels to authorised devices, by their device keys.

    ``on_message`` gets every message; a slow handler slows that peer down (backpressure),
    not the others. ``on_peer_up`` runs when a channel becomes a device's active one,
    ``on_peer_down`` when it closes with no replacement. ``authorize`` is asked at every
    handshake, so a revoked key cannot reconnect; call ``disconnect`` to drop it now.
    """

    def __init__(
        self,
        signing_key: SigningKey,
        mesh_id: bytes | str,
        authorize: Authorize,
        *,
        on_message: MessageHandler,
        on_peer_up: ChannelCallback | None = None,
        on_peer_down: ChannelCallback | None = None,
        reporter: Reporter = log_report,
        limits: ChannelLimits | None = None,
        wrap_link: Callable[[Link], Link] | None = None,
        max_connections: int = 64,
        backoff: tuple[float, float] = (0.5, 30.0),
        on_join: JoinHandler | None = None,
    ) -> None:
        self.signing_key = signing_key
        self.key = bytes(signing_key.verify_key)
        self.mesh_id = mesh_id_bytes(mesh_id)
        self.authorize = authorize
        self.on_message = on_message
        self.on_peer_up = on_peer_up
        self.on_peer_down = on_peer_down
        self.reporter = reporter
        self.limits = limits or ChannelLimits()
        self.wrap_link = wrap_link  # applied after the handshake (a shim.ShimLink in tests)
        self.max_connections = max_connections
        self.backoff = backoff
        self.on_join = on_join
        self.port: int | None = None
        self._server: Server | None = None
        self._channels: dict[bytes, Channel] = {}
        self._dialers: dict[str, Dialer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_links = 0
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Accept peers on ``host:port`` (0: any free port); returns the port."""
        self._server = await serve(
            self._serve,
            host,
            port,
            process_request=_only_mesh_path,
            compression=None,  # encrypted frames do not compress; no decompression bombs
            max_size=self.limits.max_frame,
            max_queue=self.limits.ws_max_queue,
            ping_interval=None,  # keepalive is our encrypted PING
            open_timeout=self.limits.handshake_timeout_s,
            close_timeout=self.limits.close_timeout_s,
            server_header=None,
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self.port

    def url(self, host: str = "127.0.0.1") -> str:
        """The URL peers dial to reach this node."""
        if self.port is None:
            raise RuntimeError("the node is not listening: call listen() first")
        return f"ws://{host}:{self.port}{PATH}"

    async def close(self) -> None:
        """Stop dialing, say BYE on every channel, stop listening, wait for our tasks."""
        self._closing = True
        await asyncio.gather(
            *(d.stop("node shutting down", flush_s=1.0) for d in self._dialers.values())
        )
        await asyncio.gather(
            *(c.close("node shutting down", code=CLOSE_GOING_AWAY) for c in self.channels())
        )
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> MeshNode:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- peers ----------------------------------------------------------------------------

    def add_peer(self, url: str, *, expect: bytes | None = None) -> Dialer:
        """Dial ``ws://host:port/mesh/v1`` and keep it connected (``expect`` pins its key)."""
        if url not in self._dialers:
            self._dialers[url] = Dialer(
                url,
                self.connect,
                self.channel,
                expect=expect,
                backoff=Backoff(*self.backoff),
            ).start()
        return self._dialers[url]

    async def remove_peer(self, url: str) -> None:
        """Stop dialing ``url`` and close that connection."""
        dialer = self._dialers.pop(url, None)
        if dialer is not None:
            await dialer.stop()

    def channel(self, peer_key: bytes) -> Channel | None:
        """The open channel to a device, if any."""
        channel = self._channels.get(peer_key)
        return channel if channel is not None and not channel.closed else None

    def channels(self) -> list[Channel]:
        """Every open channel."""
        return [c for c in self._channels.values() if not c.closed]

    async def send(self, peer_key: bytes, message: bytes) -> None:
        """Send one message to a connected device (waits while its send queue is full)."""
        channel = self.channel(peer_key)
        if channel is None:
            raise PeerNotConnected(
                f"device {peer_key.hex()[:16]}… is not connected: add_peer() its address "
                "or wait for it to connect"
            )
        await channel.send(message)

    async def disconnect(self, peer_key: bytes, reason: str = "disconnected") -> None:
        """Close the channel to a device now (after revoking it, say)."""
        channel = self.channel(peer_key)
        if channel is not None:
            await channel.close(reason, flush_s=0)

    def peers(self) -> list[PeerStatus]:
        """Status of every dialed peer and every connected one."""
        statuses = [d.status() for d in self._dialers.values()]
        dialed = {s.key for s in statuses if s.connected}
        for channel in self.channels():
            if channel.peer_key not in dialed:
                statuses.append(
                    PeerStatus(
                        key=channel.peer_key,
                        address=channel.address,
                        direction="out" if channel.session.initiator else "in",
                        connected=True,
                        last_seen=channel.health.last_seen,
                        rtt_s=channel.health.rtt_s,
                        failures=0,
                        last_error="",
                    )
                )
        return statuses

    # -- connections ----------------------------------------------------------------------

    async def connect(self, url: str, expect: bytes | None = None) -> Channel:
        """Dial once and run the handshake; the channel is registered and started."""
        ws = await connect(
            url,
            compression=None,
            max_size=self.limits.max_frame,
            max_queue=self.limits.ws_max_queue,
            ping_interval=None,
            open_timeout=self.limits.handshake_timeout_s,
            close_timeout=self.limits.close_timeout_s,
            proxy=None,
            user_agent_header=None,
        )
        link = WebSocketLink(ws)
        try:
            session = await initiate(
                link,
                self.signing_key,
                self.mesh_id,
                self.authorize,
                expect=expect,
                limits=self.limits,
            )
        except (HandshakeFailed, PeerRefused) as exc:
            self._report_handshake(exc, link.address)
            await ws.close()
            raise
        return self._open(link, session)

    async def _serve(self, ws: ServerConnection) -> None:
        """One incoming connection: handshake, then hold it while the channel is open."""
        if self._closing or self._open_links >= self.max_connections:
            await ws.close(CLOSE_TRY_LATER, "too many peers; try later")
            return
        if ws.request is not None and ws.request.path == JOIN_PATH:
            await self._serve_join(ws)
            return
        self._open_links += 1
        try:
            link = WebSocketLink(ws)
            try:
                session = await respond(
                    link, self.signing_key, self.mesh_id, self.authorize, limits=self.limits
                )
            except (HandshakeFailed, PeerRefused) as exc:
                self._report_handshake(exc, link.address)
                return
            except ChannelClosed:
                return  # it went away mid-handshake
            channel = self._open(link, session)
            await channel.wait_closed()
        finally:
            self._open_links -= 1

    async def _serve_join(self, ws: ServerConnection) -> None:
        """One join request in, one reply out, then close (no channel: not on the roster)."""
        address = _address(ws)
        if self.on_join is None:
            await ws.close(CLOSE_TRY_LATER, "this device does not admit new devices")
            return
        self._open_links += 1
        try:
            async with asyncio.timeout(self.limits.handshake_timeout_s):
                request = await ws.recv(decode=False)
                if len(request) > MAX_JOIN_BYTES:
                    await ws.close(1009, "join request too big")
                    return
                await ws.send(await self.on_join(bytes(request), address))
                await ws.close()
        except (TimeoutError, ConnectionClosed):
            return
        finally:
            self._open_links -= 1

    def _report_handshake(self, exc: HandshakeFailed | PeerRefused, address: str) -> None:
        if exc.details.get("by_peer"):  # being refused is no offence of theirs
            log.warning("mesh peer %s refused us: %s", address, exc.message)
            return
        key = exc.details.get("peer_key")
        report = PeerReport(
            "refused" if isinstance(exc, PeerRefused) else "handshake_failed",
            exc.message,
            peer_key=bytes.fromhex(key) if isinstance(key, str) else None,
            address=address,
        )
        with contextlib.suppress(Exception):
            self.reporter(report)

    def _open(self, link: Link, session: Session) -> Channel:
        """Start a channel, make it the device's active one (or not), pump its messages."""
        if self.wrap_link is not None:
            link = self.wrap_link(link)
        channel = Channel(link, session, limits=self.limits, reporter=self.reporter).start()
        key = channel.peer_key
        old = self.channel(key)
        if old is not None and self._prefer(old, channel) is old:
            self._spawn(channel.close("duplicate connection", code=CLOSE_REPLACED, flush_s=0))
            return channel
        self._channels[key] = channel
        if old is not None:
            self._spawn(old.close("replaced by a newer connection", code=CLOSE_REPLACED, flush_s=0))
        self._notify(self.on_peer_up, channel)
        self._spawn(self._pump(channel))
        return channel

    def _spawn(self, job: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _prefer(self, old: Channel, new: Channel) -> Channel:
        """Which of two channels to one device to keep; both ends pick the same one."""
        if old.session.initiator == new.session.initiator:
            return new  # the same side dialed again: the old one is stale

        def dialer(channel: Channel) -> bytes:
            return self.key if channel.session.initiator else channel.peer_key

        return old if dialer(old) < dialer(new) else new

    async def _pump(self, channel: Channel) -> None:
        key = channel.peer_key
        try:
            async for message in channel:
                try:
                    await self.on_message(key, message)
                except Exception:
                    log.exception(
                        "mesh message handler failed on a message from %s", key.hex()[:16]
                    )
        finally:
            if self._channels.get(key) is channel:
                del self._channels[key]
                self._notify(self.on_peer_down, channel)

    @staticmethod
    def _notify(callback: ChannelCallback | None, channel: Channel) -> None:
        if callback is not None:
            try:
                callback(channel)
            except Exception:
                log.exception("mesh peer callback %r failed", callback)


def _address(ws: ServerConnection) -> str:
    remote = ws.remote_address
    return f"{remote[0]}:{remote[1]}" if remote else "?"


def _only_mesh_path(connection: ServerConnection, request: Request) -> Response | None:
    """Refuse WebSocket upgrades anywhere but the mesh paths."""
    if request.path not in (PATH, JOIN_PATH):
        return connection.respond(HTTPStatus.NOT_FOUND, f"mesh peers connect to {PATH}\n")
    return None

"""The mesh's secure peer channel: authenticated, encrypted, rate-limited opaque messages.

Peers are devices with Ed25519 keys; ``authorize(key) -> bool`` is the roster check. A
``MeshNode`` listens, dials manual peers (reconnecting with backoff), and gives the sync
layer ``await node.send(peer_key, message)`` and ``on_message(peer_key, message)``. Messages
are opaque ``bytes``: this package never looks inside them.

Modules: ``handshake`` (mutual authentication, session keys) · ``frames`` (sealing) ·
``replay`` (anti-replay window) · ``channel`` (one peer: queues, limits, keepalive) ·
``limits`` (ChannelLimits, token bucket) · ``link`` (WebSocket and in-memory pipes) ·
``peer`` (dialer, backoff, health) · ``node`` (server + peers) · ``discovery`` (mDNS) ·
``shim`` (fault injection for tests) · ``reports`` (refusals) · ``errors``.

Wire protocol, version 1
========================
WebSocket (RFC 6455) at ``ws://host:port/mesh/v1``, binary messages only, no compression.
Each WebSocket message is one handshake message or one frame; ``||`` concatenates; keys
are 32 bytes, nonces 32, signatures 64; integers are big-endian.

Handshake (initiator I dials responder R)::

    HELLO  I→R  "MMH1" 0x01 || len(mesh_id) (1 byte) || mesh_id || I || Ni || Ei
    REPLY  R→I  "MMH1" 0x02 || R || Nr || Er || sig_R
    AUTH   I→R  "MMH1" 0x03 || sig_I
    READY  R→I  frame (below) of kind READY: counter 1 under the R→I key
    REFUSE any  "MMH1" 0xFF || reason (UTF-8, ≤ 200 bytes: "refused", "failed", "wrong mesh")

* I, R: Ed25519 device public keys; Ni, Nr: fresh random nonces; Ei, Er: fresh X25519
  public keys (one pair per attempt, never reused).
* th = BLAKE2b-256(person="mimimesh-th", "mimiverse-mesh/1" || len(mesh_id) || mesh_id ||
  I || Ni || Ei || R || Nr || Er).
* sig_R = Ed25519_R("mimiverse-mesh/1 responder" || th);
  sig_I = Ed25519_I("mimiverse-mesh/1 initiator" || th). The role labels stop a signature
  from being reflected; both nonces and ephemeral keys in ``th`` make every recorded
  message useless in another session (replayed handshakes fail verification).
* R refuses a HELLO for another mesh id. I verifies sig_R (and, if it dialed a known
  device, that R is that key), then asks ``authorize(R)``; R verifies sig_I, then asks
  ``authorize(I)``. A device talking to its own key refuses. Whole handshake: 10 s limit.
* Device keys and the mesh id travel in the clear (they are public; discovery announces
  them too); everything after the handshake is encrypted and authenticated.
* s = X25519(own ephemeral secret, peer's ephemeral public) (libsodium refuses an all-zero
  result). k_I→R = BLAKE2b-256(key=s, person="mimimesh-i2r", th); k_R→I likewise with
  "mimimesh-r2i". ``th`` is the session id. READY confirms R accepted I and the keys agree.

Frames (after the handshake, both directions)::

    counter (8 bytes) || XSalsa20-Poly1305(key=k_dir, nonce=16 zero bytes || counter,
                                           kind (1 byte) || payload)

* counter starts at 1 and grows by one per frame sent in that direction; per-direction
  keys mean a (key, nonce) pair never repeats. Kinds: 0 DATA (payload = one message),
  1 PING (8-byte id), 2 PONG (the PING's id), 3 BYE (UTF-8 reason, then close), 4 READY.
* The receiver checks, in order: frame size (WebSocket ``max_size`` = max_message + 25,
  close 1009 beyond it), rate limits (token buckets on frames/s and bytes/s; over them:
  BYE, close 4008), the replay window (a counter already accepted is "replayed", one
  ``replay_window`` or more behind the newest is "too_old"), the MAC ("tampered"). Only an
  authentic frame marks its counter used. Refused frames are reported; more than
  ``max_rejects`` of them closes with 4002.
* Close codes: 1000 normal, 1001 shutting down, 1009 too big, 1011 internal error,
  1013 too many peers, 4001 handshake failed, 4002 bad frames, 4003 refused by the roster,
  4008 flood, 4009 silent (no frame for ``idle_timeout_s``), 4010 replaced by a newer
  connection to the same device (when two devices dial each other at once, both keep
  the connection dialed by the smaller device key).

Using it::

    node = MeshNode(signing_key, mesh_id, roster.allows, on_message=handle, on_peer_up=up)
    port = await node.listen("0.0.0.0", 7420)
    node.add_peer("ws://192.168.1.20:7420/mesh/v1")        # manual peer, redialed forever
    await node.send(peer_key, b"...")                       # waits when the queue is full
    node.peers()                                            # PeerStatus: last seen, RTT, failures
    await node.close()
"""

from __future__ import annotations

from mimiverse.mesh.transport.channel import Channel, ChannelHealth, ChannelStats
from mimiverse.mesh.transport.discovery import SERVICE_TYPE, Announcement, Discovery
from mimiverse.mesh.transport.errors import (
    ChannelClosed,
    FrameRejected,
    FrameTooLarge,
    HandshakeFailed,
    PeerNotConnected,
    PeerRefused,
)
from mimiverse.mesh.transport.handshake import Authorize, Session, initiate, respond
from mimiverse.mesh.transport.limits import ChannelLimits
from mimiverse.mesh.transport.link import Link, MemoryLink, WebSocketLink, memory_pair
from mimiverse.mesh.transport.node import PATH, MeshNode, MessageHandler
from mimiverse.mesh.transport.peer import Backoff, Dialer, PeerStatus
from mimiverse.mesh.transport.reports import PeerReport, Reporter
from mimiverse.mesh.transport.shim import ShimLink, ShimSpec

__all__ = [
    "PATH",
    "SERVICE_TYPE",
    "Announcement",
    "Authorize",
    "Backoff",
    "Channel",
    "ChannelClosed",
    "ChannelHealth",
    "ChannelLimits",
    "ChannelStats",
    "Dialer",
    "Discovery",
    "FrameRejected",
    "FrameTooLarge",
    "HandshakeFailed",
    "Link",
    "MemoryLink",
    "MeshNode",
    "MessageHandler",
    "PeerNotConnected",
    "PeerRefused",
    "PeerReport",
    "PeerStatus",
    "Reporter",
    "Session",
    "ShimLink",
    "ShimSpec",
    "WebSocketLink",
    "initiate",
    "memory_pair",
    "respond",
]

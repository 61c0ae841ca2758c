"""Mutual authentication by signed challenge, and the session keys that follow.

Three messages, then the responder's first encrypted frame (see the package docstring for
bytes)::

    initiator → responder  HELLO  mesh id, device key I, nonce Ni, ephemeral X25519 key Ei
    responder → initiator  REPLY  device key R, nonce Nr, ephemeral key Er, sig_R(th)
    initiator → responder  AUTH   sig_I(th)
    responder → initiator  READY  (encrypted: it accepted us and the keys agree)

``th`` hashes everything both sides said (label, mesh id, I, Ni, Ei, R, Nr, Er); each side
signs it with its device key under its own role label. Both nonces and ephemeral keys are
fresh per attempt, so recorded messages replayed to either side fail verification. The
session keys come from X25519(Ei, Er) and ``th`` through BLAKE2b, one key per direction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
import nacl.utils
from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from mimiverse.mesh.transport import frames
from mimiverse.mesh.transport.errors import ChannelClosed, HandshakeFailed, PeerRefused
from mimiverse.mesh.transport.frames import Opener, Sealer
from mimiverse.mesh.transport.limits import ChannelLimits
from mimiverse.mesh.transport.link import CLOSE_HANDSHAKE, CLOSE_REFUSED, Link

Authorize = Callable[[bytes], bool]
"""The roster check: may the device with this Ed25519 public key (32 bytes) talk to us?"""

PROTOCOL = b"mimiverse-mesh/1"
MAGIC = b"MMH1"  # handshake messages start with this; the 1 is the protocol version
HELLO, REPLY, AUTH, REFUSE = 1, 2, 3, 0xFF
KEY, NONCE, SIG = 32, 32, 64
MAX_MESH_ID = 64
_ROLE_INITIATOR = PROTOCOL + b" initiator"
_ROLE_RESPONDER = PROTOCOL + b" responder"


@dataclass
class Session:
    """A finished handshake: the peer's proven device key and this session's frame codecs."""

    peer_key: bytes  # the peer's Ed25519 public key, proven by its signature
    initiator: bool  # whether we opened the connection
    session_id: bytes  # the transcript hash, unique to this session
    sealer: Sealer  # encrypts what we send
    opener: Opener  # authenticates and decrypts what we receive


def mesh_id_bytes(mesh_id: bytes | str) -> bytes:
    """The mesh id as the bytes that go into the handshake (1 to 64 of them)."""
    raw = mesh_id.encode() if isinstance(mesh_id, str) else bytes(mesh_id)
    if not 1 <= len(raw) <= MAX_MESH_ID:
        raise ValueError(f"mesh id must be 1 to {MAX_MESH_ID} bytes, got {len(raw)}")
    return raw


def _hash(data: bytes, *, person: bytes, key: bytes = b"") -> bytes:
    return blake2b(data, digest_size=32, key=key, person=person, encoder=RawEncoder)


def transcript_hash(
    mesh: bytes, hello: tuple[bytes, bytes, bytes], reply: tuple[bytes, ...]
) -> bytes:
    """``th``: what both signatures cover (identity key, nonce, ephemeral key of each side)."""
    parts = [PROTOCOL, bytes((len(mesh),)), mesh, *hello, *reply[:3]]
    return _hash(b"".join(parts), person=b"mimimesh-th")


def session_keys(shared: bytes, th: bytes) -> tuple[bytes, bytes]:
    """(initiator→responder key, responder→initiator key) from the X25519 secret and ``th``."""
    return (
        _hash(th, key=shared, person=b"mimimesh-i2r"),
        _hash(th, key=shared, person=b"mimimesh-r2i"),
    )


def _shared_secret(ephemeral: PrivateKey, peer_ephemeral: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(bytes(ephemeral), peer_ephemeral)
    except CryptoError:  # libsodium refuses low-order points (an all-zero secret)
        raise HandshakeFailed("the peer's ephemeral key is invalid (low order)") from None


def _verify(key: bytes, role: bytes, th: bytes, signature: bytes) -> None:
    try:
        VerifyKey(key).verify(role + th, signature)
    except (CryptoError, ValueError):
        raise HandshakeFailed(
            "the peer's handshake signature does not verify: a forged or replayed handshake"
        ) from None


def _message(kind: int, *parts: bytes) -> bytes:
    return MAGIC + bytes((kind,)) + b"".join(parts)


def _parse(message: bytes, kind: int) -> bytes:
    """The body of a handshake message of ``kind``; a REFUSE raises with the peer's reason."""
    if message[:4] != MAGIC:
        if message[:3] == MAGIC[:3]:
            raise HandshakeFailed("the peer speaks another mesh protocol version: upgrade both")
        raise HandshakeFailed("the peer sent something that is not a mesh handshake")
    if len(message) >= 5 and message[4] == REFUSE:
        reason = message[5:205].decode(errors="replace")
        if reason == "refused":
            raise PeerRefused(
                "the peer refused our device key: ask the mesh owner to add this device",
                by_peer=True,
            )
        raise HandshakeFailed(f"the peer refused the handshake: {reason}", by_peer=True)
    if len(message) < 5 or message[4] != kind:
        raise HandshakeFailed(f"expected handshake message {kind}, got another")
    return message[5:]


async def _refuse(link: Link, exc: Exception) -> None:
    """Tell the peer why (one word), then close; never raises."""
    refused = isinstance(exc, PeerRefused)
    details = exc.details if isinstance(exc, HandshakeFailed | PeerRefused) else {}
    word = "refused" if refused else str(details.get("refusal", "failed"))
    try:
        if not details.get("by_peer"):  # they refused us: nothing to tell them
            await link.send(_message(REFUSE, word.encode()))
        await link.close(CLOSE_REFUSED if refused else CLOSE_HANDSHAKE, word)
    except Exception:  # the link may already be gone
        pass


def _check_peer(peer: bytes, ours: bytes, authorize: Authorize) -> None:
    if peer == ours:
        raise HandshakeFailed("connected to ourselves (same device key): drop this address")
    if not authorize(peer):
        raise PeerRefused(
            f"device {peer.hex()[:16]}… is not on the roster: add it, or remove this peer",
            peer_key=peer.hex(),
            by_peer=False,
        )


async def initiate(
    link: Link,
    signing_key: SigningKey,
    mesh_id: bytes | str,
    authorize: Authorize,
    *,
    expect: bytes | None = None,
    limits: ChannelLimits | None = None,
) -> Session:
    """Run the initiator's side; ``expect`` pins the peer's device key when we know it."""
    limits = limits or ChannelLimits()
    mesh = mesh_id_bytes(mesh_id)
    ours = bytes(signing_key.verify_key)
    ephemeral = PrivateKey.generate()
    hello = (ours, nacl.utils.random(NONCE), bytes(ephemeral.public_key))
    try:
        async with asyncio.timeout(limits.handshake_timeout_s):
            await link.send(_message(HELLO, bytes((len(mesh),)), mesh, *hello))
            body = _parse(await link.recv(), REPLY)
            if len(body) != KEY + NONCE + KEY + SIG:
                raise HandshakeFailed("the peer's REPLY has the wrong length")
            reply = (body[:32], body[32:64], body[64:96], body[96:])
            th = transcript_hash(mesh, hello, reply)
            _verify(reply[0], _ROLE_RESPONDER, th, reply[3])
            if expect is not None and reply[0] != expect:
                raise HandshakeFailed(
                    f"the peer is device {reply[0].hex()[:16]}…, not the one expected at this address"
                )
            _check_peer(reply[0], ours, authorize)
            send_key, recv_key = session_keys(_shared_secret(ephemeral, reply[2]), th)
            await link.send(_message(AUTH, signing_key.sign(_ROLE_INITIATOR + th).signature))
            session = Session(
                reply[0], True, th, Sealer(send_key), Opener(recv_key, limits.replay_window)
            )
            confirm = await link.recv()
            if confirm[:4] == MAGIC:
                _parse(confirm, -1)  # a REFUSE: raises with the peer's reason
            kind, _ = session.opener.open(confirm)
            if kind != frames.READY:
                raise HandshakeFailed("the peer's first frame is not READY")
            return session
    except Exception as exc:
        raise await _failed(link, exc, limits) from None


async def _failed(link: Link, exc: Exception, limits: ChannelLimits) -> Exception:
    """Tell the peer why (unless it left), and the error either side's caller raises."""
    if isinstance(exc, ChannelClosed):
        return exc  # the peer went away (or is busy): no offence, nothing to report
    if isinstance(exc, TimeoutError):
        await _refuse(link, HandshakeFailed("timeout"))
        return HandshakeFailed(
            f"handshake with {link.address} timed out after {limits.handshake_timeout_s} s"
        )
    await _refuse(link, exc)
    if isinstance(exc, HandshakeFailed | PeerRefused):
        return exc
    # a malformed frame where READY was due, and the like
    return HandshakeFailed(f"handshake with {link.address} failed: {exc}")


async def respond(
    link: Link,
    signing_key: SigningKey,
    mesh_id: bytes | str,
    authorize: Authorize,
    *,
    limits: ChannelLimits | None = None,
) -> Session:
    """Run the responder's side of the handshake on a fresh incoming link."""
    limits = limits or ChannelLimits()
    mesh = mesh_id_bytes(mesh_id)
    ours = bytes(signing_key.verify_key)
    ephemeral = PrivateKey.generate()
    try:
        async with asyncio.timeout(limits.handshake_timeout_s):
            body = _parse(await link.recv(), HELLO)
            if not body or body[0] != len(mesh) or body[1 : 1 + len(mesh)] != mesh:
                raise HandshakeFailed("the peer belongs to another mesh id", refusal="wrong mesh")
            rest = body[1 + len(mesh) :]
            if len(rest) != KEY + NONCE + KEY:
                raise HandshakeFailed("the peer's HELLO has the wrong length")
            hello = (rest[:32], rest[32:64], rest[64:96])
            reply = (ours, nacl.utils.random(NONCE), bytes(ephemeral.public_key))
            th = transcript_hash(mesh, hello, reply)
            signature = signing_key.sign(_ROLE_RESPONDER + th).signature
            await link.send(_message(REPLY, *reply, signature))
            auth = _parse(await link.recv(), AUTH)
            if len(auth) != SIG:
                raise HandshakeFailed("the peer's AUTH has the wrong length")
            _verify(hello[0], _ROLE_INITIATOR, th, auth)
            _check_peer(hello[0], ours, authorize)
            recv_key, send_key = session_keys(_shared_secret(ephemeral, hello[2]), th)
            session = Session(
                hello[0], False, th, Sealer(send_key), Opener(recv_key, limits.replay_window)
            )
            await link.send(session.sealer.seal(frames.READY))
            return session
    except Exception as exc:
        raise await _failed(link, exc, limits) from None

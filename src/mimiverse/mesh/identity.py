"""Device keys (Ed25519, PyNaCl), key files, and invites by short code or QR text.

A device's identity is its first public key (``author``, 32 bytes); later keys come from
rotations recorded in the roster. The mesh's identity is the owner's public key (``mesh``).
Every signature is over ``DOMAIN || purpose || 0x00 || mesh || message`` so a signature made
for one purpose or one mesh is worthless for another.

Invites: the owner makes an ``Invite`` (random 10-byte secret, role, expiry) and shows it
as text for a QR code (``to_text``: carries the mesh id) or as a short code to type
(``code``: the secret only; the joiner learns the mesh id from discovery or the QR text).
The new device answers with a ``JoinRequest``: its public key, an HMAC of it under the
invite secret (so only someone holding the invite can join), signed with the new key (so
the key is really held). The owner checks it with ``check_join`` and writes a roster block.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import nacl.exceptions
import nacl.signing

from mimiverse.mesh import codec
from mimiverse.mesh.errors import MeshRejected

Role = Literal["owner", "member", "read-only"]
ROLES: tuple[Role, ...] = get_args(Role)
DOMAIN = b"mimiverse-mesh/v1/"
KEY_SIZE = 32
SIGNATURE_SIZE = 64
INVITE_PREFIX = "mimi-invite:"
_SECRET_SIZE = 10


def signing_input(purpose: bytes, mesh: bytes, message: bytes) -> bytes:
    """What a signature for ``purpose`` in mesh ``mesh`` is made over."""
    return DOMAIN + purpose + b"\x00" + mesh + message


class DeviceKey:
    """An Ed25519 signing key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_SIZE:
            raise MeshRejected("a device key seed is 32 bytes", reason="bad key")
        self._key = nacl.signing.SigningKey(seed)
        self.public = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(secrets.token_bytes(KEY_SIZE))

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        """The PyNaCl key (what the transport's handshake signs with)."""
        return self._key

    def sign(self, purpose: bytes, mesh: bytes, message: bytes) -> bytes:
        """A 64-byte detached signature over ``signing_input(purpose, mesh, message)``."""
        return self._key.sign(signing_input(purpose, mesh, message)).signature

    def save(self, path: Path) -> None:
        """Write the seed to ``path`` with mode 0600 (atomically: temp file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(self._key))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """Read a key file; refuses one that others may read (fix: ``chmod 600 <path>``)."""
        mode = path.stat().st_mode
        if mode & 0o077:
            raise MeshRejected(
                f"{path} is readable by other users: run `chmod 600 {path}`",
                reason="key file mode",
            )
        return cls(path.read_bytes())

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key


def verify(public: bytes, purpose: bytes, mesh: bytes, message: bytes, signature: bytes) -> bool:
    """Is ``signature`` a valid signature by ``public`` for this purpose and mesh?"""
    if len(public) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _verify_key(public).verify(signing_input(purpose, mesh, message), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _verify_key(public: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(public)


def fingerprint(public: bytes) -> str:
    """A short name for a key that people can compare: ``ABCD-EFGH-IJKL-MNOP``."""
    text = base64.b32encode(hashlib.sha256(public).digest()[:10]).decode()
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


# --- invites --------------------------------------------------------------------------


@dataclass(frozen=True)
class Invite:
    """An owner's one-time invitation to join its mesh with ``role``."""

    mesh: bytes
    secret: bytes
    role: Role
    expires_ms: int

    @classmethod
    def create(cls, mesh: bytes, role: Role, expires_ms: int) -> Invite:
        if role not in ("member", "read-only"):
            raise MeshRejected("invite a device as member or read-only", reason="bad role")
        return cls(mesh, secrets.token_bytes(_SECRET_SIZE), role, expires_ms)

    @property
    def id(self) -> bytes:
        """What the invite is stored under (never the secret itself)."""
        return hashlib.sha256(b"invite" + self.secret).digest()[:16]

    def code(self) -> str:
        """The secret as a short code to type: ``ABCD-EFGH-IJKL-MNOP``."""
        text = base64.b32encode(self.secret).decode()
        return "-".join(text[i : i + 4] for i in range(0, 16, 4))

    def to_text(self) -> str:
        """Everything a joiner needs, as text for a QR code."""
        body = codec.encode([1, self.mesh, self.secret, self.role, self.expires_ms])
        return INVITE_PREFIX + base64.b32encode(body).decode().rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> Invite:
        if not text.startswith(INVITE_PREFIX):
            raise MeshRejected(f"an invite starts with {INVITE_PREFIX!r}", reason="bad invite")
        raw = text[len(INVITE_PREFIX) :].strip().upper()
        try:
            body = codec.decode(base64.b32decode(raw + "=" * (-len(raw) % 8)))
        except (ValueError, MeshRejected):
            body = None
        match body:
            case [1, bytes(mesh), bytes(secret), str(role), int(expires)] if (
                len(mesh) == KEY_SIZE and len(secret) == _SECRET_SIZE and role in ROLES
            ):
                return cls(mesh, secret, role, expires)
        raise MeshRejected("the invite text is damaged: copy it again", reason="bad invite")


def secret_from_code(code: str) -> bytes:
    """The invite secret behind a typed short code (dashes, spaces and case ignored)."""
    text = code.replace("-", "").replace(" ", "").upper()
    try:
        secret = base64.b32decode(text)
    except ValueError:
        secret = b""
    if len(secret) != _SECRET_SIZE:
        raise MeshRejected("an invite code is 16 letters and digits", reason="bad invite")
    return secret


@dataclass(frozen=True)
class JoinRequest:
    """A new device's answer to an invite."""

    mesh: bytes
    device: bytes
    name: str
    proof: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return codec.encode([1, self.mesh, self.device, self.name, self.proof, self.signature])

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinRequest:
        match codec.decode(data, max_bytes=1024):
            case [1, bytes(mesh), bytes(device), str(name), bytes(proof), bytes(signature)]:
                return cls(mesh, device, name, proof, signature)
        raise MeshRejected("not a join request", reason="bad join request")


def _join_proof(secret: bytes, mesh: bytes, device: bytes, name: str) -> bytes:
    message = signing_input(b"join-proof", mesh, device + name.encode())
    return hmac.new(secret, message, hashlib.sha256).digest()


def join_request(secret: bytes, mesh: bytes, key: DeviceKey, name: str = "") -> JoinRequest:
    """The request a new device with ``key`` sends to the owner of ``mesh``."""
    proof = _join_proof(secret, mesh, key.public, name)
    signature = key.sign(b"join", mesh, key.public + name.encode() + proof)
    return JoinRequest(mesh, key.public, name, proof, signature)


def owner_proof(secret: bytes, mesh: bytes, device: bytes) -> bytes:
    """The owner's answer to an admitted join: proof that it holds the invite's secret.

    The joiner checks it before keeping anything, so a node that merely claims to be the
    owner (on the join path, where nobody is authenticated yet) cannot enrol it into
    another mesh: only who made the invite knows the secret behind the code.
    """
    return hmac.new(secret, signing_input(b"join-ok", mesh, device), hashlib.sha256).digest()


def check_join(invite: Invite, request: JoinRequest, now_ms: int) -> None:
    """Raise MeshRejected unless ``request`` answers ``invite`` and is still in time."""
    expected = _join_proof(invite.secret, invite.mesh, request.device, request.name)
    if request.mesh != invite.mesh or not hmac.compare_digest(expected, request.proof):
        raise MeshRejected("the invite code does not match", reason="bad invite proof")
    if now_ms > invite.expires_ms:
        raise MeshRejected("the invite has expired: ask for a new one", reason="expired invite")
    message = request.device + request.name.encode() + request.proof
    if not verify(request.device, b"join", request.mesh, message, request.signature):
        raise MeshRejected("the join request is not signed by its key", reason="bad signature")

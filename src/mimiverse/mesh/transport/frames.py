"""Encrypted frames: ``counter (8 bytes, big-endian) || XSalsa20-Poly1305 box``.

Each direction has its own key, so a (key, nonce) pair never repeats: the 24-byte nonce is
16 zero bytes and the counter, which starts at 1 and only grows. Inside the box the first
byte is the frame kind, the rest its payload.
"""

from __future__ import annotations

import struct

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from mimiverse.mesh.transport.errors import ChannelClosed, FrameRejected
from mimiverse.mesh.transport.replay import ReplayWindow

DATA = 0  # an application message
PING = 1  # payload: 8-byte ping id; answered by PONG with the same id
PONG = 2
BYE = 3  # payload: UTF-8 reason; the sender closes next
READY = 4  # the responder's first frame: it accepted us, and the keys agree
KINDS = frozenset({DATA, PING, PONG, BYE, READY})

_COUNTER = struct.Struct(">Q")
OVERHEAD = _COUNTER.size + SecretBox.MACBYTES + 1  # counter, MAC, kind byte
MAX_COUNTER = 2**63  # far beyond any session; reconnecting gives fresh keys


def _nonce(counter: int) -> bytes:
    return bytes(16) + _COUNTER.pack(counter)


class Sealer:
    """Encrypts outgoing frames under one direction's key, numbering them 1, 2, 3 …"""

    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)
        self.counter = 0

    def seal(self, kind: int, payload: bytes = b"") -> bytes:
        """The next frame on the wire."""
        if self.counter + 1 >= MAX_COUNTER:
            raise ChannelClosed("frame counter exhausted: reconnect for fresh session keys")
        self.counter += 1
        box = self._box.encrypt(bytes((kind,)) + payload, _nonce(self.counter))
        return _COUNTER.pack(self.counter) + box.ciphertext


class Opener:
    """Authenticates and decrypts incoming frames; refuses replays, old and tampered ones."""

    def __init__(self, key: bytes, window: int = 1024) -> None:
        self._box = SecretBox(key)
        self.window = ReplayWindow(window)

    def open(self, frame: bytes) -> tuple[int, bytes]:
        """``(kind, payload)`` of an authentic frame never seen before, else FrameRejected."""
        if len(frame) < OVERHEAD:
            raise FrameRejected(f"frame of {len(frame)} bytes is too short", reason="malformed")
        (counter,) = _COUNTER.unpack_from(frame)
        verdict = self.window.check(counter)
        if verdict != "ok":
            raise FrameRejected(f"frame {counter} refused: {verdict}", reason=verdict)
        try:
            plain = self._box.decrypt(frame[_COUNTER.size :], _nonce(counter))
        except CryptoError:
            raise FrameRejected(
                f"frame {counter} failed authentication", reason="tampered"
            ) from None
        self.window.accept(counter)
        if plain[0] not in KINDS:
            raise FrameRejected(f"frame {counter} has unknown kind {plain[0]}", reason="malformed")
        return plain[0], plain[1:]

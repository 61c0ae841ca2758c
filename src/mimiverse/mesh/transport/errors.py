"""Errors of the mesh transport, as branches of Mimiverse's one exception tree.
::

    MimiError
    ├── ChannelClosed (503)            the peer connection is gone; carries code and reason
    └── BadRequest
        ├── Unauthorized
        │   └── HandshakeFailed (401)  bad signature, replayed or malformed handshake, timeout
        ├── Forbidden
        │   └── PeerRefused (403)      a roster check refused the key (ours or theirs)
        ├── NotFound
        │   └── PeerNotConnected (404) no open channel to that device key
        └── FrameRejected (400)        tampered, replayed, too old or malformed frame
            └── FrameTooLarge (400)    a message over ``ChannelLimits.max_message``
"""

from __future__ import annotations

from mimiverse.errors import BadRequest, Forbidden, MimiError, NotFound, Unauthorized


class ChannelClosed(MimiError):
    """The connection to the peer is closed; reconnect (the node's dialers do it for you)."""

    status = 503
    code = "channel_closed"

    def __init__(self, message: str, *, close_code: int = 1000, reason: str = "") -> None:
        super().__init__(message, close_code=close_code, reason=reason)
        self.close_code = close_code
        self.reason = reason


class HandshakeFailed(Unauthorized):
    """The peer could not prove its device key for this session (``by_peer``: it refused us)."""

    code = "mesh_handshake_failed"


class PeerRefused(Forbidden):
    """A roster check refused the peer's key (``by_peer`` False), or the peer refused ours."""

    code = "mesh_peer_refused"

    def __init__(self, message: str, *, by_peer: bool, **details: object) -> None:
        super().__init__(message, by_peer=by_peer, **details)
        self.by_peer = by_peer


class PeerNotConnected(NotFound):
    """No open channel to that device key."""

    code = "mesh_peer_not_connected"


class FrameRejected(BadRequest):
    """A frame failed authentication or replay checks; ``reason`` names which."""

    code = "mesh_frame_rejected"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


class FrameTooLarge(FrameRejected):
    """A message is larger than the channel allows: split it, or raise max_message."""

    code = "mesh_frame_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="oversized")

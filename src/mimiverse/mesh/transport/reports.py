"""Reports of misbehaving peers: what the transport refused, from whom, and why."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("mimiverse.mesh.transport")

ReportKind = Literal[
    "handshake_failed",  # bad signature, replay, malformed or timed-out handshake
    "refused",  # the roster check refused the peer's key
    "tampered",  # a frame failed its MAC
    "replayed",  # a frame counter seen before
    "too_old",  # a frame counter older than the replay window
    "malformed",  # a frame too short, of unknown kind, or a text frame
    "oversized",  # a frame over max_message
    "flood",  # over the message or byte rate: disconnected
    "silent",  # nothing heard for idle_timeout_s: disconnected
]


@dataclass(frozen=True)
class PeerReport:
    """One refusal: ``peer_key`` is None when the peer never proved a key."""

    kind: ReportKind
    detail: str
    peer_key: bytes | None = None
    address: str = ""
    at: float = field(default_factory=time.time)


Reporter = Callable[[PeerReport], None]


def log_report(report: PeerReport) -> None:
    """The default reporter: one warning line per refusal."""
    who = report.peer_key.hex()[:16] if report.peer_key else "unauthenticated"
    log.warning("mesh peer %s (%s): %s: %s", who, report.address, report.kind, report.detail)

"""Errors of the mesh core, as branches of Mimiverse's one exception tree.
::

    MimiError
    └── BadRequest
        └── MeshRejected (400)         a block, proof, invite or message was refused
            ├── NotCanonical (400)     bytes that are not this codec's canonical CBOR
            └── MeshBusy (409)         another process has this device's store open

Blocks that arrive from peers are never raised about: they are *reported* (see
``validate.Report``); these errors are for calls that cannot go on (a malformed sync
message, a bad invite code, writing as a read-only device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mimiverse.errors import BadRequest


class MeshRejected(BadRequest):
    """A mesh block, proof, invite or message was refused; ``reason`` names the check."""

    code = "mesh_rejected"

    def __init__(self, message: str, *, reason: str = "invalid", **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class NotCanonical(MeshRejected):
    """Bytes that do not decode, or decode but would not re-encode to the same bytes."""

    code = "mesh_not_canonical"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="not canonical")


class MeshBusy(MeshRejected):
    """Another process (``mimiverse serve`` or ``mesh run``) has this device's store open."""

    code = "mesh_busy"
    status = 409

    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"the mesh in {directory} is in use by another process (a running `mimiverse "
            "serve` or `mimiverse mesh run`): use its API (/api/mesh/…) or stop it first",
            reason="busy",
        )

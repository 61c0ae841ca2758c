"""Blocks that arrived before the blocks they follow: bounded, in memory only.

A block past a gap in its author's log waits here (its signature already checked) until
the gap fills. Limits per author and in all — blocks and bytes — keep a flood from
growing memory: past them a block is refused ("pending buffer full") and fetched again
by a later sync. A crash loses the buffer, which costs nothing but a re-fetch.
"""

from __future__ import annotations

from mimiverse.mesh.blocks import Block

PER_AUTHOR = 512  # blocks waiting per author
BLOCKS = 4096  # … in all
BYTES = 16 * 1024 * 1024  # … and their bytes in all


class PendingBuffer:
    """Out-of-order blocks by author and seq."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, dict[int, Block]] = {}
        self.count = 0
        self.bytes = 0

    def add(self, block: Block) -> bool:
        """Keep ``block``; False if a limit is reached (it is not kept)."""
        waiting = self._waiting.setdefault(block.author, {})
        if block.seq in waiting:
            return True
        size = len(block.to_bytes())
        if len(waiting) >= PER_AUTHOR or self.count >= BLOCKS or self.bytes + size > BYTES:
            if not waiting:
                del self._waiting[block.author]
            return False
        waiting[block.seq] = block
        self.count += 1
        self.bytes += size
        return True

    def take(self, author: bytes, seq: int) -> Block | None:
        """Remove and return the author's block ``seq``, dropping any at or below it."""
        waiting = self._waiting.get(author)
        if not waiting:
            return None
        for stale in [s for s in waiting if s < seq]:
            self._drop(author, stale)
        block = waiting.get(seq)
        if block is not None:
            self._drop(author, seq)
        return block

    def discard_from(self, author: bytes, seq: int) -> None:
        """Forget the author's blocks from ``seq`` on (they are past a fork)."""
        for later in [s for s in self._waiting.get(author, {}) if s >= seq]:
            self._drop(author, later)

    def _drop(self, author: bytes, seq: int) -> None:
        waiting = self._waiting[author]
        block = waiting.pop(seq)
        self.count -= 1
        self.bytes -= len(block.to_bytes())
        if not waiting:
            del self._waiting[author]

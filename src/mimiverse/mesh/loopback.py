"""Two replicas in one process, syncing through ``Replica.handle`` with no network.

What a transport does, minus the wire: each side's replies go to the other side until
nobody has anything to say. Used by tests and benchmarks, and a model for transports.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mimiverse.mesh.replica import Replica
from mimiverse.mesh.validate import Report

MAX_MESSAGES = 10_000


@dataclass
class Exchange:
    """What one sync between two replicas did."""

    report: Report = field(default_factory=Report)  # both sides' reports, merged
    messages: int = 0
    bytes: int = 0
    largest: int = 0  # the longest message, in bytes


def sync_pair(a: Replica, b: Replica, *, max_messages: int = MAX_MESSAGES) -> Exchange:
    """Anti-entropy between ``a`` and ``b`` (``a`` starts) until neither has more to say."""
    done = Exchange()
    queue: deque[tuple[Replica, Replica, bytes]] = deque([(a, b, a.vector().to_message())])
    while queue:
        sender, receiver, message = queue.popleft()
        done.messages += 1
        if done.messages > max_messages:
            raise RuntimeError(f"sync did not go quiet after {max_messages} messages")
        done.bytes += len(message)
        done.largest = max(done.largest, len(message))
        replies, report = receiver.handle(message)
        done.report.merge(report)
        queue.extend((receiver, sender, reply) for reply in replies)
    return done

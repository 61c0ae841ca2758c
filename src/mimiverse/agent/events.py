"""The agent's "glass box": typed events, stored in order and fanned out live.

Every step of a session emits one ``Event``. ``EventLog`` numbers them, stores them (so a
session can be replayed) and hands them to live subscribers (WebSocket, SSE, the CLI).
A subscriber first receives the stored events after the sequence number it already has,
then new ones as they happen, so a reconnecting browser misses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mimiverse.agent.store import AgentStore

EventKind = Literal[
    "session_started",  # task, settings that matter (budgets, tool mode, model)
    "plan",  # the model's plan for the task, as a list of steps
    "step_started",  # step n of max, with progress
    "step_finished",  # step n, tokens used, elapsed
    "model_text",  # what the model said besides tool calls (its reasoning)
    "tool_call",  # name, arguments, call id
    "observation",  # the tool's result as the model sees it (truncated), ok or not
    "output",  # streamed command output while a tool runs
    "proposed_diff",  # a changeset waiting for approval: id, files, hunks, diff
    "changeset_decided",  # hunks approved or rejected
    "changeset_applied",  # written to disk: files, hunks applied
    "changeset_undone",
    "test_result",  # command, passed, counts, failures summary
    "context_summarised",  # old turns folded into a summary to fit the window
    "error",  # something failed, explained in plain words
    "answer",  # the final answer to the user
    "session_finished",  # status: done, stuck, budget, cancelled, failed; usage
]

TERMINAL: frozenset[str] = frozenset({"session_finished"})


@dataclass
class Event:
    """One thing that happened in a session."""

    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)
    session_id: str = ""
    seq: int = 0
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@functools.cache
def default_redactor() -> Callable[[str], str]:
    """One Redactor for events (env secrets as of first use, plus credential shapes)."""
    from mimiverse.workspace.redact import Redactor

    return Redactor()


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


class EventLog:
    """Numbers, stores and publishes one session's events."""

    def __init__(
        self,
        session_id: str,
        store: AgentStore | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.session_id = session_id
        self.store = store
        self.redact = redact or default_redactor()
        """Applied to every string of an event (command output arrives redacted already)."""
        self.events: list[Event] = []
        if store is not None:
            self.events = store.events(session_id)
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.closed = bool(self.events and self.events[-1].kind in TERMINAL)

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest event (0 when none)."""
        return self.events[-1].seq if self.events else 0

    def emit(self, kind: EventKind, **data: Any) -> Event:
        """Record and publish one event."""
        if kind != "output":
            data = _redacted(data, self.redact)
        event = Event(kind=kind, data=data, session_id=self.session_id, seq=self.last_seq + 1)
        self.events.append(event)
        if self.store is not None and kind != "output":
            self.store.add_event(event)
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        if kind in TERMINAL:
            self.closed = True
        return event

    def reopen(self) -> None:
        """Accept new events after a finished run (the user sent another message)."""
        self.closed = False

    async def follow(self, after: int = 0, *, until_finished: bool = True) -> AsyncIterator[Event]:
        """Events with ``seq > after``: stored ones first, then live ones.

        Stops after a ``session_finished`` event when ``until_finished`` (the default).
        """
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            backlog = [e for e in self.events if e.seq > after]
            seen = after
            for event in backlog:
                seen = event.seq
                yield event
            if until_finished and self.closed and (not backlog or backlog[-1].kind in TERMINAL):
                return
            while True:
                event = await queue.get()
                if event.seq <= seen:
                    continue
                seen = event.seq
                yield event
                if until_finished and event.kind in TERMINAL:
                    return
        finally:
            self._subscribers.discard(queue)

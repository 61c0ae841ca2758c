"""One agent session: its project, history, changes, events and live state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mimiverse.agent.context import History
from mimiverse.agent.events import EventLog

if TYPE_CHECKING:
    from mimiverse.agent.changes import ChangeManager
    from mimiverse.agent.store import AgentStore
    from mimiverse.agent.tools.base import ToolContext

Status = Literal[
    "idle", "running", "waiting_approval", "done", "stuck", "budget", "failed", "cancelled"
]


@dataclass
class Usage:
    """Tokens and time one session has used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    steps: int = 0
    model_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "steps": self.steps,
            "model_ms": round(self.model_ms, 1),
        }


@dataclass
class AgentSession:
    """A conversation with the agent about one project."""

    id: str
    root: Path
    title: str
    log: EventLog
    changes: ChangeManager
    ctx: ToolContext
    auto_approve: bool = False
    history: History = field(default_factory=History)
    status: Status = "idle"
    usage: Usage = field(default_factory=Usage)
    created_at: float = field(default_factory=time.time)
    task: asyncio.Task[Any] | None = None
    decisions: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    """Changeset id → resolved when the user has decided every hunk of it."""

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.task is not None and not self.task.done()

    def state(self) -> dict[str, Any]:
        """What the store keeps to resume this session."""
        return {
            "history": self.history.as_dict(),
            "usage": self.usage.as_dict(),
            "auto_approve": self.auto_approve,
        }

    def save(self, store: AgentStore | None) -> None:
        """Persist status and state."""
        if store is not None:
            store.save_session(self.id, status=self.status, state=self.state())

    def describe(self) -> dict[str, Any]:
        """The session as the API shows it."""
        return {
            "id": self.id,
            "root": str(self.root),
            "title": self.title,
            "status": self.status,
            "auto_approve": self.auto_approve,
            "usage": self.usage.as_dict(),
            "created_at": self.created_at,
            "events": self.log.last_seq,
            "waiting_for": sorted(self.decisions),
        }

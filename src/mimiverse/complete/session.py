"""Per-editor state: the anchor, the generation in flight, the last suggestion, recent files.

An editor sends a request after (nearly) every keystroke. Ways to do less work:

- anchor: while the user types at one place, the text before the anchor (where typing
  began) is the FIM prefix and everything typed since is the start of the middle.
  Each keystroke then only appends to the prompt, and the model's KV cache keeps the
  rest, suffix included (in plain prefix-suffix-middle order a keystroke changes the end
  of the prefix, and the whole suffix after it is computed again);
- typed ahead: the user typed the start of the suggestion on screen: the rest of it is
  the new suggestion, no model call;
- in flight: the new text extends the text of the generation still running by what it
  has written (or may yet write): wait for it and show the rest;
- otherwise cancel the running generation (the model stops within a token) and start anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from mimiverse.complete.related import RecentFiles

MAX_SESSIONS = 256


@dataclass
class Outcome:
    """What one generation produced, from the prompt's end (after stop rules)."""

    text: str = ""
    """The suggestion at the cursor of the request that started the generation."""
    raw: str = ""
    model: str = ""
    endpoint: str = ""
    cached: bool = False
    cancelled: bool = False
    finish_reason: str = "stop"
    multiline: bool = False
    error: BaseException | None = None

    def after(self, typed: str) -> str | None:
        """The suggestion for a cursor ``typed`` characters further (None if it disagrees)."""
        if self.text.startswith(typed) and len(self.text) > len(typed):
            return self.text[len(typed) :]
        return None


@dataclass
class Anchor:
    """Where the current run of typing began: the text before it is frozen in the prompt."""

    path: str
    suffix: str
    head: str
    """The text before the anchor (from the top of the file)."""

    def holds(self, path: str, prefix: str, suffix: str, max_middle: int) -> bool:
        """Whether a request still types at this anchor."""
        return (
            path == self.path
            and suffix == self.suffix
            and prefix.startswith(self.head)
            and len(prefix) - len(self.head) <= max_middle
        )


@dataclass
class Flight:
    """One generation for one prompt; its pieces as they stream in."""

    key: str
    path: str
    prefix: str
    suffix: str
    started: float = field(default_factory=time.perf_counter)
    pieces: list[str] = field(default_factory=list)
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[None] | None = None
    listeners: list[Callable[[str], None]] = field(default_factory=list)
    """Called with each piece of text that passes the stop rules (for streaming answers)."""

    def generated(self) -> str:
        """The raw text so far."""
        return "".join(self.pieces)

    def typed_since(self, path: str, prefix: str, suffix: str) -> str | None:
        """What the user typed since this generation's request, if the cursor only moved
        forward by typing (same file, same text after the cursor); None otherwise."""
        if path != self.path or suffix != self.suffix or not prefix.startswith(self.prefix):
            return None
        return prefix[len(self.prefix) :]

    def agrees_with(self, typed: str) -> bool:
        """Whether the generation so far agrees with ``typed`` (as far as it has got)."""
        generated = self.generated()
        return generated.startswith(typed) or typed.startswith(generated)

    @property
    def running(self) -> bool:
        """Whether the generation has not finished yet."""
        return not self.future.done()

    async def cancel(self) -> None:
        """Stop the generation and wait until the model has let go of its slot."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self.future.done():
            self.future.set_result(Outcome(cancelled=True))


@dataclass
class Last:
    """The last suggestion shown for a cursor."""

    path: str
    prefix: str
    suffix: str
    text: str
    outcome: Outcome

    def remainder(self, path: str, prefix: str, suffix: str) -> str | None:
        """The rest of the suggestion after what the user typed of it; None if it does not
        match (or nothing is left)."""
        if path != self.path or suffix != self.suffix or not prefix.startswith(self.prefix):
            return None
        typed = prefix[len(self.prefix) :]
        if not typed or not self.text.startswith(typed) or len(typed) >= len(self.text):
            return None
        return self.text[len(typed) :]


class Session:
    """One editor's completion state."""

    def __init__(self, recent_files: int) -> None:
        self.anchor: Anchor | None = None
        self.flight: Flight | None = None
        self.last: Last | None = None
        self.recent = RecentFiles(recent_files)
        self.lock = asyncio.Lock()
        """Held while deciding what to do with a request (not while generating)."""


class Sessions:
    """Sessions by editor id, least recently used dropped beyond ``MAX_SESSIONS``."""

    def __init__(self, recent_files: int) -> None:
        self.recent_files = recent_files
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def get(self, key: str | None) -> Session:
        """The session of ``key`` (created on first use); a throwaway one for None."""
        if key is None:
            return Session(0)
        session = self._sessions.pop(key, None) or Session(self.recent_files)
        self._sessions[key] = session
        while len(self._sessions) > MAX_SESSIONS:
            _, dropped = self._sessions.popitem(last=False)
            if dropped.flight is not None and dropped.flight.task is not None:
                dropped.flight.task.cancel()
        return session

    async def close(self) -> None:
        """Cancel every running generation."""
        for session in self._sessions.values():
            if session.flight is not None:
                await session.flight.cancel()
        self._sessions.clear()

"""Fits a session into the model's window: system prompt, repo map, task, summary, turns.

The user's messages are pinned: they are never folded or dropped, so the task survives
any number of steps. Old assistant steps and their observations are folded into a
summary, one line per step, built from notes taken when the step happened (no model
call: a folded step costs nothing and cannot hallucinate). Recent observations that
still do not fit are cut in the middle, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 3.2
"""Conservative for code with Qwen/Llama tokenizers (measured ~3.4–3.9 on this repo)."""
KEEP_RECENT = 4
"""Messages at the end of the history that are never folded."""
SUMMARY_MAX_LINES = 60


def estimate_tokens(text: str) -> int:
    """A cheap upper estimate of the tokens in ``text``."""
    return int(len(text) / CHARS_PER_TOKEN) + 4


@dataclass
class Entry:
    """One history message plus what the context builder needs to know about it."""

    message: dict[str, Any]
    pinned: bool = False
    """A user message: never folded."""
    note: str = ""
    """One line standing for this message once folded (empty: folds silently with its step)."""
    step: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the store."""
        return {
            "message": self.message,
            "pinned": self.pinned,
            "note": self.note,
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """The inverse of ``as_dict``."""
        return cls(
            data["message"],
            bool(data.get("pinned")),
            str(data.get("note", "")),
            int(data.get("step", 0)),
        )


@dataclass
class History:
    """A session's conversation: entries in order and the summary of folded ones."""

    entries: list[Entry] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def add(
        self, message: dict[str, Any], *, pinned: bool = False, note: str = "", step: int = 0
    ) -> None:
        """Append one message."""
        self.entries.append(Entry(message, pinned, note, step))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the store."""
        return {"entries": [e.as_dict() for e in self.entries], "summary": self.summary}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The inverse of ``as_dict``."""
        return cls(
            [Entry.from_dict(e) for e in data.get("entries", [])], list(data.get("summary", []))
        )


@dataclass
class Window:
    """The messages to send and what fitting them cost."""

    messages: list[dict[str, Any]]
    tokens: int
    folded: int = 0
    cut: int = 0


class ContextBuilder:
    """Builds each step's messages within ``budget_tokens``."""

    def __init__(self, budget_tokens: int, *, observation_share: float = 0.35) -> None:
        self.budget = budget_tokens
        self.observation_cap = int(budget_tokens * observation_share * CHARS_PER_TOKEN)

    def build(self, system: str, history: History) -> Window:
        """Fold the oldest steps until the window fits; cut big observations if still over."""
        folded = 0
        while self._size(system, history) > self.budget and self._fold_oldest(history):
            folded += 1
        messages = self._render(system, history)
        cut = 0
        total = sum(estimate_tokens(_text(m)) for m in messages)
        if total > self.budget:
            for message in messages[1:]:
                if message.get("role") in ("tool", "user") and len(_text(message)) > 800:
                    message["content"] = _cut(_text(message), self.observation_cap)
                    cut += 1
            total = sum(estimate_tokens(_text(m)) for m in messages)
        return Window(messages, total, folded, cut)

    def _size(self, system: str, history: History) -> int:
        return sum(estimate_tokens(_text(m)) for m in self._render(system, history))

    def _render(self, system: str, history: History) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        summary_at = 1
        for index, entry in enumerate(history.entries):
            message = dict(entry.message)
            if message.get("role") in ("tool", "user") and not entry.pinned:
                text = _text(message)
                if len(text) > self.observation_cap:
                    message["content"] = _cut(text, self.observation_cap)
            messages.append(message)
            if index == 0 and entry.pinned:
                summary_at = 2
        if history.summary:
            lines = history.summary[-SUMMARY_MAX_LINES:]
            dropped = len(history.summary) - len(lines)
            head = f"({dropped} earlier steps not shown)\n" if dropped else ""
            messages.insert(
                summary_at,
                {
                    "role": "user",
                    "content": "Summary of your earlier steps (their full output was folded "
                    "to fit the context window):\n" + head + "\n".join(lines),
                },
            )
        return messages

    def _fold_oldest(self, history: History) -> bool:
        """Fold the oldest unpinned step (all its messages) into the summary."""
        foldable = len(history.entries) - KEEP_RECENT
        for index in range(max(foldable, 0)):
            entry = history.entries[index]
            if entry.pinned:
                continue
            step = entry.step
            group = [
                i
                for i in range(max(foldable, 0))
                if not history.entries[i].pinned and history.entries[i].step == step
            ]
            for i in group:
                if history.entries[i].note:
                    history.summary.append(history.entries[i].note)
            for i in reversed(group):
                del history.entries[i]
            # Native tool messages must follow their assistant message: drop orphans.
            while (
                index < len(history.entries)
                and history.entries[index].message.get("role") == "tool"
                and not history.entries[index].pinned
            ):
                del history.entries[index]
            return True
        return False


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = str(content)
    calls = message.get("tool_calls")
    return content + (str(calls) if calls else "")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit * 2 // 3]
    tail = text[-(limit // 3) :]
    return f"{head}\n… [{len(text) - len(head) - len(tail)} characters cut to fit the context] …\n{tail}"

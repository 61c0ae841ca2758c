"""Context assembly: prefix and suffix windows by token budget around the cursor.

Windows are cut at line boundaries. The prefix window's start moves in quarter-window
steps, so while the user types, consecutive prompts share everything up to the cursor
and llama.cpp's KV cache (``cache_prompt``) reuses it: a window that slid by one character
per keystroke would change the first token and recompute the whole prompt every time.
"""

from __future__ import annotations

from dataclasses import dataclass

CHARS_PER_TOKEN = 3.2
"""Characters per token of code, a conservative estimate (Qwen2.5-Coder's BPE: ~3.3-3.8)."""


TEMPLATE_TOKENS = 32
"""FIM and repo-level control tokens, file paths: a generous allowance."""


def chars_for(tokens: int) -> int:
    """Characters that fit in ``tokens`` tokens (estimated)."""
    return int(tokens * CHARS_PER_TOKEN)


def tokens_for(text: str) -> int:
    """Estimated tokens of ``text``."""
    return int(len(text) / CHARS_PER_TOKEN) + 1


@dataclass(frozen=True)
class Budget:
    """Token budgets of one completion prompt."""

    prefix_tokens: int = 640
    suffix_tokens: int = 32
    context_tokens: int = 256
    line_tokens: int = 24
    block_tokens: int = 32

    def prompt_tokens(self) -> int:
        """The most tokens a prompt may take, template tokens aside."""
        return self.prefix_tokens + self.suffix_tokens + self.context_tokens

    def middle_tokens(self) -> int:
        """The most typing kept after the anchor before a new anchor is set."""
        return self.prefix_tokens // 2

    def total_tokens(self) -> int:
        """Prompt, typing after the anchor, the longest generation and template tokens:
        what one slot of a model's context must hold."""
        generated = max(self.line_tokens, self.block_tokens)
        return self.prompt_tokens() + self.middle_tokens() + generated + TEMPLATE_TOKENS


@dataclass(frozen=True)
class Window:
    """The text the model sees around the cursor."""

    prefix: str
    suffix: str
    prefix_start: int
    """Offset of ``prefix`` in the text before the cursor (0 = from the top of the file)."""


def prefix_window(before: str, budget_chars: int) -> tuple[str, int]:
    """The end of ``before`` within ``budget_chars``, starting at a line and at a stable offset."""
    if len(before) <= budget_chars:
        return before, 0
    step = max(1, budget_chars // 4)
    # Round the earliest allowed start up to a multiple of ``step``: the same start for
    # ``step`` keystrokes in a row, and the window stays between 3/4 and all of the budget.
    start = -(-(len(before) - budget_chars) // step) * step
    newline = before.find("\n", start)
    if newline < 0 or newline + 1 >= len(before):
        return before[start:], start
    return before[newline + 1 :], newline + 1


def suffix_window(after: str, budget_chars: int) -> str:
    """The start of ``after`` within ``budget_chars``, ending at a line end when clipped."""
    if len(after) <= budget_chars:
        return after
    clipped = after[:budget_chars]
    newline = clipped.rfind("\n")
    return clipped[: newline + 1] if newline > 0 else clipped


def window(before: str, after: str, budget: Budget) -> Window:
    """Prefix and suffix windows for a cursor between ``before`` and ``after``."""
    prefix, start = prefix_window(before, chars_for(budget.prefix_tokens))
    return Window(prefix, suffix_window(after, chars_for(budget.suffix_tokens)), start)

"""Text helpers for the UI."""

from __future__ import annotations

ELLIPSIS = "…"


def truncate(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters; a cut text ends with '…' (which counts)."""
    if width < 1:
        raise ValueError("width must be at least 1")
    if len(text) <= width:
        return text
    return text[:width] + ELLIPSIS


def initials(name: str) -> str:
    """'ada lovelace' -> 'AL'."""
    return "".join(part[0].upper() for part in name.split())

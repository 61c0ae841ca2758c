"""Run-length encoding of strings."""

from __future__ import annotations


def encode(text: str) -> list[tuple[str, int]]:
    """'aaabcc' -> [('a', 3), ('b', 1), ('c', 2)]."""
    if not text:
        return []
    runs: list[tuple[str, int]] = []
    current, count = text[0], 1
    for char in text[1:]:
        if char == current:
            count += 1
        else:
            runs.append((current, count))
            current, count = char, 1
    return runs


def decode(runs: list[tuple[str, int]]) -> str:
    """The inverse of ``encode``."""
    return "".join(char * count for char, count in runs)

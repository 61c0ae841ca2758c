"""Word frequencies of a text."""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"[a-z']+")


def counts(text: str) -> Counter[str]:
    """How often each lowercased word occurs."""
    return Counter(WORD.findall(text.lower()))


def top_words(text: str, n: int = 3) -> list[str]:
    """The ``n`` most frequent words, most frequent first; ties in alphabetical order."""
    ranked = sorted(counts(text).items(), key=lambda kv: kv[0])
    return [word for word, _ in ranked[:n]]

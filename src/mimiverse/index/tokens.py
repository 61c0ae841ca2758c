"""Code-aware tokens for lexical search.

Identifiers are kept whole and also split at camelCase, snake_case and digit boundaries,
so ``getUserName`` matches the query "user name" and the query ``getUserName`` alike.
Documents and queries go through the same function; stemming is left to SQLite's
``porter`` tokenizer (or PostgreSQL's english config), which runs on these tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Words too common in docstring-style questions to tell code apart; dropped from queries
# only (documents keep them, so phrase-like matches still score).
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "those",
        "to",
        "was",
        "were",
        "which",
        "while",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


@lru_cache(maxsize=65_536)
def identifier_tokens(word: str) -> tuple[str, ...]:
    """``word`` lower-cased whole, then its parts when it has more than one."""
    parts = [p.lower() for p in _PARTS.findall(word)]
    whole = word.lower().strip("_").replace("_", "")
    if len(parts) <= 1:
        return (whole,) if whole else ()
    return (whole, *parts)


def tokens(text: str) -> list[str]:
    """All code-aware tokens of ``text``, in order (duplicates kept: term frequency counts)."""
    out: list[str] = []
    for word in _WORD.findall(text):
        out.extend(identifier_tokens(word))
    return out


def document(text: str) -> str:
    """``text`` as the space-separated token string stored in the lexical index."""
    return " ".join(tokens(text))


def query_terms(text: str, *, limit: int = 32) -> list[str]:
    """Distinct query tokens without stopwords (all tokens if only stopwords remain)."""
    seen: dict[str, None] = {}
    for token in tokens(text):
        seen.setdefault(token, None)
    terms = [t for t in seen if t not in STOPWORDS and len(t) > 1] or list(seen)
    return terms[:limit]

"""Code-aware tokens for lexical search.

Identifiers are kept whole and also split at camelCase, snake_case and digit boundaries,
so ``getUserName`` matches the query "user name" and the query ``getUserName`` alike.
Lower-case compounds are split with a list of the words identifiers are made of
(``readlines`` → read, lines; ``data/identifier_words.txt``), and common abbreviations
also store the word they stand for (``msg`` → message; ``data/abbreviations.toml``).
Documents and queries go through the same function; stemming is left to SQLite's
``porter`` tokenizer (or PostgreSQL's english config), which runs on these tokens.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources

VERSION = "2"
"""Bump when the tokens of a text change: stores re-index their files (vectors are kept)."""

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


_COMPOUND_MIN = 5
"""Shorter lower-case words are never split (``isdir`` is; ``ison`` is not)."""


@cache
def _word_counts() -> dict[str, int]:
    """How often each word was seen as a part of a multi-part identifier."""
    text = resources.files("mimiverse.index").joinpath("data/identifier_words.txt")
    counts: dict[str, int] = {}
    for line in text.read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            word, _, count = line.partition(" ")
            counts[word] = int(count)
    return counts


@cache
def _abbreviations() -> dict[str, str]:
    text = resources.files("mimiverse.index").joinpath("data/abbreviations.toml")
    expand: dict[str, str] = tomllib.loads(text.read_text("utf-8"))["expand"]
    return expand


def words_in(text: str) -> list[str]:
    """The identifier-like words and numbers of ``text``."""
    return _WORD.findall(text)


def split_identifier(word: str) -> list[str]:
    """``word``'s camelCase/snake_case/digit parts, lower-cased."""
    return [p.lower() for p in _PARTS.findall(word)]


def split_compound(word: str) -> tuple[str, str] | None:
    """Two known words that make up the lower-case ``word``, when the pair is used as
    parts more often than ``word`` itself is (``readlines`` → read, lines), else None."""
    if len(word) < _COMPOUND_MIN or not word.isalpha():
        return None
    counts = _word_counts()
    best, score = None, counts.get(word, 0)
    for i in range(2, len(word) - 1):
        head, tail = word[:i], word[i:]
        pair = min(counts.get(head, 0), counts.get(tail, 0))
        if pair > score:
            best, score = (head, tail), pair
    return best


@lru_cache(maxsize=65_536)
def identifier_tokens(word: str) -> tuple[str, ...]:
    """``word`` lower-cased whole, its parts when it has more than one, the words of its
    compound parts, and what its abbreviations stand for."""
    parts = split_identifier(word)
    whole = word.lower().strip("_").replace("_", "")
    out = [whole] if whole else []
    if len(parts) > 1:
        out.extend(parts)
    abbreviations = _abbreviations()
    extra: list[str] = []
    for part in parts if len(parts) > 1 else out:
        pieces = split_compound(part) or ()
        extra.extend(pieces)
        extra.extend(abbreviations[t] for t in (part, *pieces) if t in abbreviations)
    return (*out, *extra)


def tokens(text: str) -> list[str]:
    """All code-aware tokens of ``text``, in order (duplicates kept: term frequency counts)."""
    out: list[str] = []
    for word in words_in(text):
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


_SUFFIXES = ("ing", "es", "ed", "s")


def light_stem(word: str) -> str:
    """``word`` without one common English suffix (``watchers`` → watcher).

    The stores stem inside SQLite (Porter) and tantivy (Snowball), neither exposed to
    Python; comparing a query's words with the parts of a name needs only this much.
    """
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def name_coverage(symbol: str, query_terms: Sequence[str]) -> float:
    """The share of the defined name's words (its last dotted part: ``set_child_watcher``
    → set, child, watcher; a lone compound is also tried as its two words) that the
    query's terms contain, 0–1."""
    name = symbol.rsplit(".", 1)[-1]
    words = {light_stem(t) for t in query_terms}
    parts = [light_stem(p) for p in split_identifier(name) if len(p) > 1]
    if not parts:
        return 0.0
    share = sum(p in words for p in parts) / len(parts)
    if len(parts) == 1:
        pair = split_compound(parts[0])
        if pair:
            share = max(share, sum(light_stem(p) in words for p in pair) / 2)
    return share

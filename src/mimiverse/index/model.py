"""The index's plain data: files found by the scan and the chunks cut from them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceFile:
    """A file the scan accepted for indexing."""

    path: str
    """Path relative to the project root, with forward slashes."""
    language: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    """A file the scan left out, and why (binary, too large, minified, generated, ignored…)."""

    path: str
    reason: str


@dataclass
class Chunk:
    """One searchable unit: a function, method, class, section or line window."""

    path: str
    start_line: int
    """1-based, inclusive."""
    end_line: int
    """1-based, inclusive."""
    language: str
    kind: str
    """function | method | class | module | section | window | …"""
    symbol: str
    """The defined name ('' for windows); methods as Class.method."""
    content: str
    """The chunk's source text, exactly as in the file."""
    context: str = ""
    """Where it sits: enclosing class/module header and signature lines, for display and
    embedding (not part of the hit span)."""
    content_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = hash_text(f"{self.language}\0{self.context}\0{self.content}")


def hash_text(text: str) -> str:
    """SHA-256 hex of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

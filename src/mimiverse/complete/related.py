"""Related snippets: definitions of names used near the cursor, and recently edited files.

Definitions come from the index's symbol map when the index runs (``symbols`` returns
None otherwise: completions then use the open file and recent files only). Snippets are
ordered deterministically, so the same set renders the same prompt and the model's KV
cache stays valid while the user types on one line.
"""

from __future__ import annotations

import builtins
import keyword
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mimiverse.complete.languages import Language

if TYPE_CHECKING:
    from mimiverse.index.symbols import Tag

log = logging.getLogger("mimiverse.complete")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMON = frozenset(
    {
        *keyword.kwlist,
        *dir(builtins),
        "self", "cls", "this", "true", "false", "null", "nil", "var", "let", "const",
        "function", "return", "string", "int", "bool", "void", "func", "type", "struct",
    }
)  # fmt: skip
NEAR_LINES_BEFORE = 12
NEAR_LINES_AFTER = 3
MAX_NAMES = 8
SNIPPET_LINES = 12
RECENT_LINES = 24
CACHE_S = 30.0
"""How long a set of picked definitions is reused (the symbol map scan is O(all tags))."""


class SymbolSource(Protocol):
    """What we use of the index's ``SymbolMap``."""

    def definitions(self, name: str) -> list[Tag]:
        """Where ``name`` is defined."""
        ...


@dataclass(frozen=True)
class Snippet:
    """Text from another file shown to the model."""

    path: str
    text: str
    line: int = 0
    kind: str = "definition"
    """``definition`` or ``recent``."""


def names_near(before: str, after: str, limit: int = MAX_NAMES) -> list[str]:
    """Identifiers used around the cursor, nearest first (keywords and builtins left out)."""
    head = "\n".join(before[-3000:].split("\n")[-NEAR_LINES_BEFORE:])
    tail = "\n".join(after[:1000].split("\n")[:NEAR_LINES_AFTER])
    found: dict[str, int] = {}
    ordered = [*reversed(_IDENT.findall(head)), *_IDENT.findall(tail)]
    for name in ordered:
        if len(name) < 3 or name in _COMMON or name in found:
            continue
        found[name] = len(found)
        if len(found) >= limit:
            break
    return list(found)


def definition_text(lines: list[str], line: int, max_lines: int = SNIPPET_LINES) -> str:
    """The definition starting at 1-based ``line``: its lines until the block ends."""
    if not 1 <= line <= len(lines):
        return ""
    first = lines[line - 1]
    indent = len(first) - len(first.lstrip())
    out = [first]
    for text in lines[line : line - 1 + max_lines]:
        stripped = text.strip()
        if stripped and len(text) - len(text.lstrip()) <= indent and not stripped.startswith(")"):
            break
        out.append(text)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


class FileLines:
    """Lines of project files, re-read when their modification time changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def lines(self, path: str) -> list[str]:
        """The lines of ``path`` (relative to the root); empty when unreadable or outside."""
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root.resolve()):
            return []
        try:
            mtime = full.stat().st_mtime
            with self._lock:
                cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            lines = full.read_text("utf-8", errors="replace").split("\n")
        except OSError:
            return []
        with self._lock:
            self._cache[path] = (mtime, lines)
        return lines


class RecentFiles:
    """The last files an editor asked completions in: an excerpt around its last cursor."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._files: OrderedDict[str, Snippet] = OrderedDict()

    def note(self, path: str, before: str, after: str) -> None:
        """Remember ``path`` with the lines around the cursor."""
        if not path or self.keep <= 0:
            return
        head = before[-4000:].split("\n")[-RECENT_LINES // 2 :]
        tail = after[:4000].split("\n")[: RECENT_LINES // 2]
        text = "\n".join([*head[:-1], head[-1] + tail[0], *tail[1:]]).strip("\n")
        self._files.pop(path, None)
        self._files[path] = Snippet(path, text, kind="recent")
        while len(self._files) > self.keep:
            self._files.popitem(last=False)

    def others(self, path: str) -> list[Snippet]:
        """Recent files other than ``path``, oldest first."""
        return [s for p, s in self._files.items() if p != path and s.text.strip()]


class Related:
    """Finds snippets for a cursor within a character budget."""

    def __init__(
        self,
        root: Path | None = None,
        symbols: Callable[[], SymbolSource | None] | None = None,
    ) -> None:
        self.files = FileLines(root) if root is not None else None
        self.symbols = symbols or (lambda: None)
        self._picked: dict[tuple[str, tuple[str, ...], int], tuple[float, list[Snippet]]] = {}
        self._lock = threading.Lock()

    def definitions(self, path: str, before: str, after: str, budget_chars: int) -> list[Snippet]:
        """Definitions (in other files) of names used near the cursor, within the budget."""
        if budget_chars <= 0 or self.files is None:
            return []
        try:
            source = self.symbols()
        except Exception as exc:  # the index is optional: never fail a completion on it
            log.debug("symbol map unavailable: %s", exc)
            return []
        if source is None:
            return []
        names = tuple(names_near(before, after))
        key = (path, names, budget_chars)
        now = time.monotonic()
        with self._lock:
            hit = self._picked.get(key)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        picked = self._pick(source, path, names, budget_chars)
        with self._lock:
            if len(self._picked) > 512:
                self._picked.clear()
            self._picked[key] = (now, picked)
        return picked

    def _pick(
        self, source: SymbolSource, path: str, names: tuple[str, ...], budget_chars: int
    ) -> list[Snippet]:
        assert self.files is not None
        picked: list[Snippet] = []
        used = 0
        for name in names:
            tags = sorted(
                (t for t in source.definitions(name) if t.path != path),
                key=lambda t: (t.path, t.line),
            )
            for tag in tags[:1]:
                text = definition_text(self.files.lines(tag.path), tag.line)
                if not text or used + len(text) > budget_chars:
                    continue
                picked.append(Snippet(tag.path, text, tag.line))
                used += len(text)
        return sorted(picked, key=lambda s: (s.path, s.line))


def fit(snippets: list[Snippet], budget_chars: int) -> list[Snippet]:
    """The snippets, in order, that fit the budget (later ones dropped first)."""
    out: list[Snippet] = []
    used = 0
    for snippet in snippets:
        if used + len(snippet.text) > budget_chars:
            text = snippet.text[: max(0, budget_chars - used)]
            text = text[: text.rfind("\n")] if "\n" in text else ""
            if text.strip():
                out.append(Snippet(snippet.path, text, snippet.line, snippet.kind))
            break
        out.append(snippet)
        used += len(snippet.text)
    return out


def header(language: Language, path: str) -> str:
    """A comment line naming ``path`` (for model families without repo-level tokens)."""
    return f"{language.comment} {path}"

"""Search tools: ``search_code`` over the index, ``find_symbol`` and ``find_references``.

Each works without an index too (the server may still be building it, or run without
one): search falls back to a plain text scan of the project's files and the symbol tools
to tree-sitter tags of the files that mention the name, saying so in the observation.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from mimiverse.agent.tools._common import plural
from mimiverse.agent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.errors import BackendUnavailable, ToolError
from mimiverse.index import tokens
from mimiverse.index.model import SourceFile
from mimiverse.index.scan import read_text, scan
from mimiverse.index.symbols import Tag, extract_tags

SNIPPET_LINES = 4
SNIPPET_CHARS = 160
PER_FILE = 3
"""Text-search hits kept per file, so one file cannot fill the list."""
MAX_TAGS = 60
"""Definitions or references listed at most."""
NO_INDEX = "no code index is available yet, so this is a plain text search of the files"


class SearchCode(Tool):
    """Find code by meaning or by words."""

    name: ClassVar[str] = "search_code"
    description: ClassVar[str] = (
        "Search the project's code. Returns the best matching functions, classes and "
        "sections as path:start-end with a snippet. Use plain words or identifiers; "
        "mode 'text' finds exact text."
    )
    mutates: ClassVar[bool] = False

    class Args(ToolArgs):
        query: str = Field(
            min_length=1, description="What to look for: words, an identifier or exact text."
        )
        limit: int = Field(default=8, ge=1, le=30, description="How many results (1-30).")
        mode: Literal["hybrid", "lexical", "semantic", "text"] | None = Field(
            default=None,
            description=(
                "hybrid (default: words and meaning), lexical (words), semantic (meaning) "
                "or text (exact text in files, no index)."
            ),
        )

    async def run(self, args: SearchCode.Args, ctx: ToolContext) -> ToolResult:
        query = args.query.strip()
        if not query:
            raise ToolError("query is blank: say what to look for")
        indexer = ctx.indexer() if args.mode != "text" else None
        note = ""
        if indexer is not None:
            mode = args.mode or "hybrid"
            try:
                found = await indexer.search(query, limit=args.limit, mode=mode)
            except BackendUnavailable as exc:
                raise ToolError(exc.message) from None
            if found.hits or found.status.get("files"):
                return _render_hits(query, mode, found.hits)
            note = "the code index is empty (still being built?), so this is a text search"
        elif args.mode != "text":
            note = NO_INDEX
        root = ctx.workspace.root
        max_bytes = ctx.settings.index_max_file_bytes
        hits = await asyncio.to_thread(text_search, root, query, args.limit, max_bytes)
        return _render_text_hits(query, hits, note)


def _render_hits(query: str, mode: str, hits: Iterable[Any]) -> ToolResult:
    hits = list(hits)
    if not hits:
        return ToolResult(
            f"no results for {query!r} ({mode} search); try other words, an identifier, "
            "or mode 'text' for exact text",
            data={"mode": mode, "hits": []},
        )
    terms = [t.lower() for t in tokens.query_terms(query)]
    lines = [f"{plural(len(hits), 'result')} for {query!r} ({mode} search):"]
    data = []
    for n, hit in enumerate(hits, start=1):
        label = " ".join(x for x in (hit.kind, hit.symbol) if x)
        lines.append(f"{n}. {hit.path}:{hit.start_line}-{hit.end_line}  {label}".rstrip())
        lines.extend(_snippet(hit.content, hit.start_line, terms))
        data.append(
            {
                "path": hit.path,
                "start_line": hit.start_line,
                "end_line": hit.end_line,
                "kind": hit.kind,
                "symbol": hit.symbol,
                "score": hit.score,
            }
        )
    return ToolResult("\n".join(lines), data={"mode": mode, "hits": data})


def _snippet(content: str, start_line: int, terms: list[str]) -> list[str]:
    """The chunk's first line and the next lines that mention a query term, numbered."""
    rows = content.split("\n")
    picked = [0]
    for i, row in enumerate(rows[1:], start=1):
        if len(picked) >= SNIPPET_LINES:
            break
        low = row.lower()
        if any(t in low for t in terms):
            picked.append(i)
    if len(picked) == 1:
        picked = list(range(min(SNIPPET_LINES, len(rows))))
    out: list[str] = []
    previous = -1
    for i in picked:
        if previous >= 0 and i != previous + 1:
            out.append("       …")
        out.append(f"{start_line + i:>7} | {_cut(rows[i])}")
        previous = i
    return out


def _cut(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= SNIPPET_CHARS else line[:SNIPPET_CHARS] + "…"


# --- plain text search (no index) ---------------------------------------------------------


@dataclass(frozen=True)
class TextHit:
    """A line that matches a text search, with the lines around it."""

    path: str
    line: int
    score: float
    context: tuple[str, ...]
    """The line before, the line and the line after (fewer at the file's edges)."""
    first: int
    """Line number of ``context[0]``."""


def text_search(root: Path, query: str, limit: int, max_bytes: int) -> list[TextHit]:
    """Lines of the project's (scan-accepted) files that contain the query or its words.

    A line containing the whole query (case-insensitive) scores highest; otherwise a line
    scores by how many distinct query words it contains. At most ``PER_FILE`` per file.
    """
    phrase = query.lower()
    words = sorted({w.lower() for w in tokens.words_in(query) if len(w) > 1})
    patterns = [re.compile(re.escape(w)) for w in words]
    found: list[TextHit] = []
    for file, text in _file_texts(root, max_bytes):
        low = text.lower()
        if phrase not in low and not any(p.search(low) for p in patterns):
            continue
        rows = text.split("\n")
        if rows[-1] == "":
            rows.pop()
        scored: list[tuple[float, int]] = []
        for i, row in enumerate(rows):
            lower = row.lower()
            score = 10.0 if phrase in lower else 0.0
            score += sum(1 for w in words if w in lower)
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda s: (-s[0], s[1]))
        for score, i in scored[:PER_FILE]:
            first = max(0, i - 1)
            found.append(TextHit(file.path, i + 1, score, tuple(rows[first : i + 2]), first + 1))
    # Whole-query matches first, then lines with more of the words; ties by path and line.
    found.sort(key=lambda h: (-h.score, h.path, h.line))
    return found[:limit]


def _file_texts(root: Path, max_bytes: int) -> Iterator[tuple[SourceFile, str]]:
    """Each scan-accepted file of the project with its text (unreadable files skipped)."""
    for file in scan(root, max_bytes=max_bytes).files:
        try:
            text = read_text(root / file.path)
        except OSError:
            continue
        yield file, text


def _render_text_hits(query: str, hits: list[TextHit], note: str) -> ToolResult:
    prefix = f"({note})\n" if note else ""
    data: dict[str, Any] = {
        "mode": "text",
        "fallback": bool(note),
        "hits": [{"path": h.path, "line": h.line, "score": h.score} for h in hits],
    }
    if not hits:
        return ToolResult(f"{prefix}no file contains {query!r} or its words", data=data)
    lines = [f"{prefix}{plural(len(hits), 'text match', 'text matches')} for {query!r}:"]
    for n, hit in enumerate(hits, start=1):
        last = hit.first + len(hit.context) - 1
        lines.append(f"{n}. {hit.path}:{hit.first}-{last}")
        for offset, row in enumerate(hit.context):
            mark = ">" if hit.first + offset == hit.line else "|"
            lines.append(f"{hit.first + offset:>7} {mark} {_cut(row)}")
    return ToolResult("\n".join(lines), data=data)


# --- symbols ------------------------------------------------------------------------------


class _SymbolArgs(ToolArgs):
    name: str = Field(
        min_length=1,
        description="The identifier, e.g. 'load_config' or 'Parser.parse' (the last part is matched).",
    )


@dataclass
class _Listing:
    """What a symbol tool says about the tags it found."""

    title: str
    rows: Iterable[str]
    """One line per tag shown (at most ``MAX_TAGS``)."""
    empty: str
    """The answer when there are no tags."""
    data: dict[str, Any]


class _SymbolTool(Tool):
    """find_symbol and find_references: look the name's tags up, then list them."""

    role: ClassVar[str]
    """``def`` (definitions) or ``ref`` (references)."""
    mutates: ClassVar[bool] = False
    Args: ClassVar[type[ToolArgs]] = _SymbolArgs

    async def run(self, args: _SymbolArgs, ctx: ToolContext) -> ToolResult:
        name = _identifier(args.name)
        tags, note = await _tags(ctx, name, self.role)
        listing = await self.listing(name, tags, ctx)
        prefix = f"({note})\n" if note else ""
        if not tags:
            return ToolResult(prefix + listing.empty, data=listing.data)
        lines = [prefix + listing.title, *listing.rows]
        if len(tags) > MAX_TAGS:
            lines.append(f"[{len(tags) - MAX_TAGS} more not shown]")
        return ToolResult("\n".join(lines), data=listing.data)

    @abc.abstractmethod
    async def listing(self, name: str, tags: list[Tag], ctx: ToolContext) -> _Listing:
        """The title, rows, empty answer and data for ``tags`` of ``name``."""


class FindSymbol(_SymbolTool):
    """Where a function, class or method is defined."""

    name: ClassVar[str] = "find_symbol"
    description: ClassVar[str] = (
        "Find where a function, class, method or variable is defined: path:line, kind and "
        "the definition's first line."
    )
    role: ClassVar[str] = "def"

    async def listing(self, name: str, tags: list[Tag], ctx: ToolContext) -> _Listing:
        return _Listing(
            title=f"{plural(len(tags), 'definition')} of {name!r}:",
            rows=(f"{t.path}:{t.line}  {t.kind}  {t.signature}" for t in tags[:MAX_TAGS]),
            empty=f"no definition of {name!r} found; check the spelling, or use "
            "search_code to look for it by words",
            data={
                "name": name,
                "definitions": [
                    {"path": t.path, "line": t.line, "kind": t.kind, "signature": t.signature}
                    for t in tags
                ],
            },
        )


class FindReferences(_SymbolTool):
    """Where a name is used."""

    name: ClassVar[str] = "find_references"
    description: ClassVar[str] = (
        "Find where a function, class or variable is used (calls, imports, base classes): "
        "path:line and the line's text."
    )
    role: ClassVar[str] = "ref"

    async def listing(self, name: str, tags: list[Tag], ctx: ToolContext) -> _Listing:
        shown = tags[:MAX_TAGS]
        texts = await asyncio.to_thread(_line_texts, ctx.workspace.root, shown)
        return _Listing(
            title=f"{plural(len(tags), 'reference')} to {name!r}:",
            rows=[
                f"{t.path}:{t.line}  {_cut(x.strip())}" for t, x in zip(shown, texts, strict=True)
            ],
            empty=f"no references to {name!r} found (calls, imports and base classes are "
            "tracked); use search_code with mode 'text' for other mentions",
            data={
                "name": name,
                "references": [
                    {"path": t.path, "line": t.line, "kind": t.kind, "text": text}
                    for t, text in zip(shown, texts, strict=True)
                ],
                "total": len(tags),
            },
        )


def _identifier(name: str) -> str:
    name = name.strip().strip("`'\"").removesuffix("()")
    if not name:
        raise ToolError("name is blank: give an identifier such as 'load_config'")
    return name


async def _tags(ctx: ToolContext, name: str, role: str) -> tuple[list[Tag], str]:
    """Definitions (``role='def'``) or references of ``name``, and a note on the source."""
    indexer = ctx.indexer()
    if indexer is not None:
        symbols = await asyncio.to_thread(indexer.symbol_map)
        found = symbols.definitions(name) if role == "def" else symbols.references(name)
        return sorted(found, key=lambda t: (t.path, t.line)), ""
    root, max_bytes = ctx.workspace.root, ctx.settings.index_max_file_bytes
    found = await asyncio.to_thread(_scan_tags, root, name, role, max_bytes)
    return found, "no code index is available yet, so the files were parsed just now"


def _scan_tags(root: Path, name: str, role: str, max_bytes: int) -> list[Tag]:
    """Tags of ``name`` from parsing every scan-accepted file that mentions it."""
    short = name.rsplit(".", 1)[-1]
    found: list[Tag] = []
    for file, text in _file_texts(root, max_bytes):
        if short not in text:
            continue
        found.extend(
            t for t in extract_tags(file.path, text, file.language)
            if t.name == short and t.role == role
        )  # fmt: skip
    return sorted(found, key=lambda t: (t.path, t.line))


def _line_texts(root: Path, tags: list[Tag]) -> list[str]:
    """The text of each tag's line (read once per file)."""
    cache: dict[str, list[str]] = {}
    out = []
    for tag in tags:
        if tag.path not in cache:
            try:
                cache[tag.path] = read_text(root / tag.path).split("\n")
            except OSError:
                cache[tag.path] = []
        rows = cache[tag.path]
        out.append(rows[tag.line - 1] if 0 < tag.line <= len(rows) else "")
    return out


TOOLS = (SearchCode, FindSymbol, FindReferences)

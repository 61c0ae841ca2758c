"""Cut a source file into chunks: definitions via tree-sitter tags, sections, line windows.

Every chunk's ``content`` is ``"\\n".join(lines[start_line - 1 : end_line])`` with
``lines = text.split("\\n")`` (never ``splitlines``, which also splits on form feeds), and
every non-blank line of the file lies in at least one chunk.

Tag queries (``queries/<language>-tags.scm``) capture ``@definition.<kind>`` with
``@name.definition.<kind>``; the chunker cuts at functions, methods and types, uses
classes, interfaces, structs, enums, traits, modules and Rust ``impl`` blocks as
containers, looks through namespaces, and names Go methods by their ``@receiver``.
Reference patterns are disabled for chunking.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import cast

from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree
from tree_sitter_language_pack import SupportedLanguage, get_language

from mimiverse.index.languages import grammar_for, tag_query_for
from mimiverse.index.model import Chunk

log = logging.getLogger("mimiverse.index.chunk")

VERSION = "2"
"""Bump when the chunks cut from a text change: indexes re-cut their files."""

WINDOW_LINES = 60
"""Line-window size for files without a grammar (capped by ``max_lines``)."""

CALLABLES = frozenset({"function", "method", "macro"})
CONTAINERS = frozenset(
    {"class", "interface", "struct", "enum", "trait", "impl", "module", "union", "record"}
)
LEAVES = frozenset({"type"})
NAMESPACES = frozenset({"namespace"})
"""Looked through: their members are chunked as if they stood at the enclosing level."""
_CHUNKED = CALLABLES | CONTAINERS | LEAVES | NAMESPACES

_WRAPPERS = frozenset(
    {
        "decorated_definition",
        "export_statement",
        "template_declaration",
        "ambient_declaration",
        "lexical_declaration",
        "variable_declaration",
    }
)
_SINGLE_CHILD_WRAPPERS = frozenset({"lexical_declaration", "variable_declaration"})
_SIGNATURE_LINES = 4
_MAX_DEPTH = 32
"""Definitions nested deeper than this are inside function bodies: not worth the search."""

_C_COMMENTS = ("//", "/*", "*")
_COMMENT_STARTS = ("#", "//", "/*", "--")
"""Lines left out of a signature shown as context."""
_DOC_PREFIXES: dict[str, tuple[str, ...]] = {
    "python": ("#", "@"),
    "ruby": ("#",),
    "bash": ("#",),
    "c": _C_COMMENTS,
    "cpp": (*_C_COMMENTS, "template"),
    "go": _C_COMMENTS,
    "rust": (*_C_COMMENTS, "#["),
    "java": (*_C_COMMENTS, "@"),
    "javascript": (*_C_COMMENTS, "@"),
    "typescript": (*_C_COMMENTS, "@"),
    "tsx": (*_C_COMMENTS, "@"),
    "c_sharp": (*_C_COMMENTS, "["),
    "php": (*_C_COMMENTS, "#[", "#"),
}
"""Line prefixes of comments, decorators and attributes that belong to the next definition."""


# ---------------------------------------------------------------------------- grammars


@cache
def language_object(language: str) -> Language | None:
    """The tree-sitter ``Language`` for ``language``, or None if it has no grammar."""
    grammar = grammar_for(language)
    if grammar is None:
        return None
    try:
        return get_language(cast(SupportedLanguage, grammar))
    except LookupError:
        return None


_parsers = threading.local()


def parse(language: str, source: bytes) -> Tree | None:
    """Parse ``source``; None if ``language`` has no grammar. Parsers are per thread."""
    lang = language_object(language)
    if lang is None:
        return None
    cached: dict[str, Parser] = _parsers.__dict__.setdefault("by_language", {})
    parser = cached.get(language)
    if parser is None:
        parser = cached[language] = Parser(lang)
    return parser.parse(source)


@cache
def tags_source(language: str) -> str | None:
    """The text of ``language``'s tag query file, or None if it has none."""
    stem = tag_query_for(language)
    if stem is None:
        return None
    path = resources.files("mimiverse.index") / "queries" / f"{stem}-tags.scm"
    return path.read_text(encoding="utf-8")


@cache
def tags_query(language: str) -> Query | None:
    """The compiled tag query (definitions and references), cached per language."""
    lang, source = language_object(language), tags_source(language)
    if lang is None or source is None:
        return None
    return Query(lang, source)


@cache
def definitions_query(language: str) -> Query | None:
    """The tag query with only its definition patterns enabled, for chunking."""
    lang, source = language_object(language), tags_source(language)
    if lang is None or source is None:
        return None
    query = Query(lang, source)
    raw = source.encode("utf-8")
    for index in range(query.pattern_count):
        text = raw[query.start_byte_for_pattern(index) : query.end_byte_for_pattern(index)]
        if b"@definition." not in text:
            query.disable_pattern(index)
    return query


# ---------------------------------------------------------------------------- pieces


@dataclass
class _Piece:
    """A span of lines (0-based, inclusive) on its way to becoming a chunk."""

    start: int
    end: int
    kind: str
    symbol: str
    context: str
    weight: int
    """Which piece names a merged chunk: the heaviest (definitions outweigh code)."""
    signature: str = ""
    """Added to the context of every window when the piece is split."""
    loose: bool = False
    """Joins any neighbour when small (code between definitions, one-liners)."""
    run: bool = False
    """Made only of small pieces, so other small pieces may join it."""
    sealed: bool = False
    """Part of a large container's cut: takes in loose pieces only."""


@dataclass
class _Def:
    """One definition found by the tag query."""

    node: Node
    kind: str
    name: str
    receiver: str = ""
    children: list[_Def] = field(default_factory=list)
    first: int = 0
    last: int = 0
    header: str | None = None
    """The signature lines, once computed."""


def _end_row(node: Node) -> int:
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def _blank(line: str) -> bool:
    return not line.strip()


def _trim(lines: list[str], start: int, end: int) -> tuple[int, int]:
    while start <= end and _blank(lines[start]):
        start += 1
    while end >= start and _blank(lines[end]):
        end -= 1
    return start, end


def _windows(lines: list[str], start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Balanced windows of at most ``size`` lines, cut at a blank line where one is near."""
    out: list[tuple[int, int]] = []
    while True:
        start, end = _trim(lines, start, end)
        if start > end:
            return out
        remaining = end - start + 1
        if remaining <= size:
            out.append((start, end))
            return out
        count = -(-remaining // size)
        target = start + -(-remaining // count) - 1
        cut = _blank_near(
            lines, target, start + max(1, (target - start) * 3 // 4), start + size - 1
        )
        out.append(_trim(lines, start, cut))
        start = cut + 1


def _blank_near(lines: list[str], target: int, low: int, high: int) -> int:
    """The blank row nearest ``target`` within ``low..high`` (later rows first on a tie:
    the first window then keeps at least its balanced share), else ``target``."""
    for offset in range(max(target - low, high - target) + 1):
        for row in (target + offset, target - offset):
            if low <= row <= high and _blank(lines[row]):
                return row
    return target


def _merge(pieces: list[_Piece], max_lines: int, min_lines: int) -> list[_Piece]:
    """Merge small pieces (< ``min_lines``) with a neighbour.

    Loose pieces (code between definitions, one-line definitions) join any neighbour,
    even one about to be split; small definitions join runs of other small pieces while
    the run fits in ``max_lines``, never a large definition, so each sizeable definition
    keeps its own chunk and symbol. Sealed pieces (a large class's header and members)
    only take in loose ones.
    """
    out: list[_Piece] = []
    for piece in pieces:
        piece.run = not piece.sealed and _size(piece) < min_lines
        prev = out[-1] if out else None
        if prev is None or not _joinable(prev, piece, max_lines, min_lines):
            out.append(piece)
            continue
        keep = prev if prev.weight >= piece.weight else piece
        if prev.sealed or piece.sealed:
            keep = prev if prev.sealed else piece
        out[-1] = _Piece(
            prev.start,
            piece.end,
            keep.kind,
            keep.symbol,
            keep.context,
            keep.weight,
            signature=keep.signature,
            loose=prev.loose and piece.loose,
            run=prev.run and piece.run,
            sealed=prev.sealed or piece.sealed,
        )
    return out


def _size(piece: _Piece) -> int:
    return piece.end - piece.start + 1


def _joinable(prev: _Piece, piece: _Piece, max_lines: int, min_lines: int) -> bool:
    fits = piece.end - prev.start < max_lines
    prev_loose = prev.loose and not prev.sealed and _size(prev) < min_lines
    piece_loose = piece.loose and not piece.sealed and _size(piece) < min_lines
    if (prev_loose and (fits or _size(piece) > max_lines)) or (
        piece_loose and (fits or _size(prev) > max_lines)
    ):
        return True
    return fits and prev.run and piece.run


def _emit(
    path: str, language: str, lines: list[str], pieces: list[_Piece], max_lines: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for piece in pieces:
        start, end = _trim(lines, piece.start, piece.end)
        spans = [(start, end)]
        context = piece.context
        # A function is worth more whole than cut mid-body: it may run half again as long.
        limit = max_lines * 3 // 2 if piece.kind in CALLABLES else max_lines
        if end - start + 1 > limit:
            spans = _windows(lines, start, end, max_lines)
            if piece.signature and piece.signature not in context:
                context = f"{context}\n{piece.signature}"
        for start, end in spans:
            content = "\n".join(lines[start : end + 1])
            if not content.strip():
                continue
            chunks.append(
                Chunk(
                    path=path,
                    start_line=start + 1,
                    end_line=end + 1,
                    language=language,
                    kind=piece.kind,
                    symbol=piece.symbol,
                    content=content,
                    context=context,
                )
            )
    return chunks


# ---------------------------------------------------------------------------- entry point


def chunk_file(
    path: str, text: str, language: str, *, max_lines: int = 80, min_lines: int = 4
) -> list[Chunk]:
    """Chunks of one file: definitions where a tag query exists, else sections or windows.

    Windows (kind ``window``) do not overlap: each line is indexed once, so lexical
    scores are not doubled at the seams, and they are cut at blank lines where possible.
    """
    max_lines = max(1, max_lines)
    if not text.strip():
        return []
    lines = text.split("\n")
    pieces: list[_Piece] | None = None
    if language == "markdown":
        pieces = _markdown_pieces(path, lines, min_lines)
    elif definitions_query(language) is not None:
        try:
            pieces = _code_pieces(path, language, text, lines, max_lines, min_lines)
        except Exception:  # a grammar or query failure must not lose the file
            log.warning("tree-sitter failed on %s; using line windows", path, exc_info=True)
    if pieces is None:
        window = [_Piece(0, len(lines) - 1, "window", "", path, 0)]
        return _emit(path, language, lines, window, min(WINDOW_LINES, max_lines))
    return _emit(path, language, lines, _merge(pieces, max_lines, min_lines), max_lines)


# ---------------------------------------------------------------------------- code


def _collect(language: str, root: Node) -> list[_Def]:
    """Definitions from the tag query, nested by containment, outermost first."""
    query = definitions_query(language)
    assert query is not None
    found: dict[tuple[int, int], _Def] = {}
    cursor = QueryCursor(query)
    cursor.set_max_start_depth(_MAX_DEPTH)
    for _, captures in cursor.matches(root):
        for key, nodes in captures.items():
            if not key.startswith("definition."):
                continue
            kind = key[len("definition.") :]
            if kind not in _CHUNKED:
                continue
            node = nodes[0]
            names = captures.get(f"name.{key}")
            name = _text(names[0]) if names else ""
            receivers = captures.get("receiver")
            receiver = _text(receivers[0]) if receivers else ""
            span = (node.start_byte, node.end_byte)
            known = found.get(span)
            if known is None or (receiver and not known.receiver):
                found[span] = _Def(node, kind, name, receiver)
    roots: list[_Def] = []
    stack: list[_Def] = []
    for item in sorted(found.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte)):
        while stack and stack[-1].node.end_byte <= item.node.start_byte:
            stack.pop()
        (stack[-1].children if stack else roots).append(item)
        stack.append(item)
    return roots


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace").replace("::", ".").strip()


def _outer(node: Node) -> Node:
    """The node with its decorators, ``export`` or single ``const x =`` around it."""
    parent = node.parent
    while parent is not None and parent.type in _WRAPPERS:
        if parent.type in _SINGLE_CHILD_WRAPPERS and parent.named_child_count != 1:
            break
        node, parent = parent, parent.parent
    return node


def _signature(lines: list[str], node: Node) -> str:
    """The definition's header: its lines up to where its body starts, comments left out."""
    start = node.start_point[0]
    body = node.child_by_field_name("body")
    stop = start
    if body is not None:
        row, column = body.start_point
        stop = row if lines[row][:column].strip() else row - 1
    header = (line.strip() for line in lines[start : max(stop, start) + 1])
    kept = [line for line in header if line and not line.startswith(_COMMENT_STARTS)]
    return "\n".join(kept[:_SIGNATURE_LINES])


class _CodeChunker:
    """Turns the definition tree of one file into pieces."""

    def __init__(
        self, path: str, language: str, lines: list[str], max_lines: int, min_lines: int
    ) -> None:
        self.path = path
        self.lines = lines
        self.max_lines = max_lines
        self.min_lines = min_lines
        self.prefixes = _DOC_PREFIXES.get(language, ())

    def place(self, defs: list[_Def], floor: int) -> list[_Def]:
        """Chunk-level definitions with their line spans (doc comments included).

        Namespaces are looked through; a definition sharing a line with the one before
        is folded into it.
        """
        placed: list[_Def] = []
        for item in _level(defs):
            first = _outer(item.node).start_point[0]
            item.last = _end_row(item.node)
            if placed and first <= placed[-1].last:
                if item.last > placed[-1].last:
                    placed[-1].last = item.last
                    placed[-1].children = []
                continue
            bound = placed[-1].last if placed else floor
            while first - 1 > bound and self.lines[first - 1].lstrip().startswith(self.prefixes):
                first -= 1
            item.first = first
            placed.append(item)
        return placed

    def region(
        self, start: int, end: int, placed: list[_Def], scope: list[_Def], gap_kind: str
    ) -> list[_Piece]:
        """Pieces for lines ``start..end`` holding ``placed``; the rest is ``gap_kind`` code."""
        context = self.context(scope)
        owner = ".".join(d.name for d in scope)
        pieces: list[_Piece] = []
        cursor = start
        for item in placed:
            self.gap(pieces, cursor, item.first - 1, gap_kind, owner, context)
            pieces.extend(self.definition(item, scope))
            cursor = item.last + 1
        self.gap(pieces, cursor, end, gap_kind, owner, context)
        return pieces

    def gap(
        self, pieces: list[_Piece], start: int, end: int, kind: str, symbol: str, context: str
    ) -> None:
        start, end = _trim(self.lines, start, end)
        if start <= end:
            pieces.append(_Piece(start, end, kind, symbol, context, 0, loose=True))

    def definition(self, item: _Def, scope: list[_Def]) -> list[_Piece]:
        """One piece for a definition, or, for a large container, its header and members."""
        kind = item.kind
        symbol = ".".join([*(d.name for d in scope), item.name])
        if kind == "function" and (scope or "." in item.name):
            kind = "method"
        if item.receiver:
            kind, symbol = "method", f"{item.receiver}.{item.name}"
        signature = self.signature(item)
        context = self.context(scope)
        if kind == "method":
            context = f"{context}\n{signature}"
        weight = item.last - item.first + 2
        loose = item.first == item.last
        whole = _Piece(item.first, item.last, kind, symbol, context, weight, signature, loose)
        # Containers are always cut at their members, so each method is found on its own;
        # small neighbours are merged back below (a tiny class stays one chunk).
        if kind not in CONTAINERS:
            return [whole]
        header_row = item.node.start_point[0]
        members = self.place(item.children, header_row)
        if not members or members[0].first <= header_row:
            return [whole]
        header_end = members[0].first - 1
        header = _Piece(item.first, header_end, kind, symbol, context, weight, signature, True)
        pieces = [header]
        pieces.extend(self.region(header_end + 1, item.last, members, [*scope, item], kind))
        merged = _merge(pieces, self.max_lines, self.min_lines)
        for piece in merged:
            piece.sealed = True
        return merged

    def context(self, scope: list[_Def]) -> str:
        """The file path, then the header of each enclosing container."""
        return "\n".join([self.path, *(self.signature(d) for d in scope)])

    def signature(self, item: _Def) -> str:
        if item.header is None:
            item.header = _signature(self.lines, item.node)
        return item.header


def _level(defs: list[_Def]) -> list[_Def]:
    out: list[_Def] = []
    for item in defs:
        out.extend(_level(item.children) if item.kind in NAMESPACES else [item])
    return out


def _code_pieces(
    path: str, language: str, text: str, lines: list[str], max_lines: int, min_lines: int
) -> list[_Piece] | None:
    tree = parse(language, text.encode("utf-8"))
    if tree is None:
        return None
    chunker = _CodeChunker(path, language, lines, max_lines, min_lines)
    placed = chunker.place(_collect(language, tree.root_node), -1)
    return chunker.region(0, len(lines) - 1, placed, [], "module")


# ---------------------------------------------------------------------------- markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _markdown_pieces(path: str, lines: list[str], min_lines: int) -> list[_Piece]:
    """One section per heading (ATX or setext); fenced code never holds headings."""
    heads: list[tuple[int, int, str]] = []  # (row, level, text)
    fence = ""
    skip = _front_matter_end(lines)
    for row, line in enumerate(lines):
        if row <= skip:
            continue
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            continue
        if match:
            fence = match.group(1)
            continue
        atx = _ATX.match(line)
        if atx:
            heads.append((row, len(atx.group(1)), (atx.group(2) or "").strip()))
            continue
        setext = _SETEXT.match(line)
        if setext and row > 0 and lines[row - 1].strip() and (not heads or heads[-1][0] != row - 1):
            previous = lines[row - 1]
            if not _FENCE.match(previous) and not previous.lstrip().startswith((">", "-", "*")):
                level = 1 if setext.group(1)[0] == "=" else 2
                heads.append((row - 1, level, previous.strip()))
    pieces: list[_Piece] = []
    trail: list[tuple[int, str]] = []
    starts = [row for row, _, _ in heads]
    if not starts or starts[0] > 0:
        preamble_end = starts[0] - 1 if starts else len(lines) - 1
        pieces.append(_Piece(0, preamble_end, "section", "", path, 1))
    for index, (row, level, title) in enumerate(heads):
        end = starts[index + 1] - 1 if index + 1 < len(starts) else len(lines) - 1
        while trail and trail[-1][0] >= level:
            trail.pop()
        context = " > ".join(t for _, t in trail)
        trail.append((level, title))
        where = f"{path}\n{context}" if context else path
        pieces.append(_Piece(row, end, "section", title, where, end - row + 2, lines[row]))
    out: list[_Piece] = []
    for piece in pieces:
        piece.start, piece.end = _trim(lines, piece.start, piece.end)
        if piece.start <= piece.end:
            piece.loose = piece.end - piece.start + 1 < min_lines
            out.append(piece)
    return out


def _front_matter_end(lines: list[str]) -> int:
    """The row closing a leading ``---`` YAML front matter block, or -1."""
    if lines and lines[0].rstrip() == "---":
        for row in range(1, len(lines)):
            if lines[row].rstrip() in ("---", "..."):
                return row
    return -1

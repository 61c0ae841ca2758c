"""Reading tools: ``read_file`` (numbered lines) and ``list_dir`` (an ignore-aware tree)."""

from __future__ import annotations

import asyncio
import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pathspec import GitIgnoreSpec
from pydantic import Field, model_validator

from mimiverse.agent.tools._common import plural
from mimiverse.agent.tools.base import OBSERVATION_LIMIT, Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.errors import NotFound, ToolError
from mimiverse.index.scan import (  # the scan's own ignore rules, so the tree matches the index
    ROOT_SKIP_DIRS,
    SKIP_DIRS,
    _by_name,
    _ignored,
    _is_virtualenv,
    _load_spec,
    _Rules,
)
from mimiverse.workspace.files import BINARY_SNIFF_BYTES, is_binary, open_file

READ_LINES = 400
"""Lines ``read_file`` shows at most in one call."""
READ_CHARS = min(40_000, OBSERVATION_LIMIT - 1_000)
"""Characters ``read_file`` shows at most: under the observation cut, so its note survives."""
LINE_CHARS = 2_000
"""A longer line (minified code, data) is cut, saying how much was left out."""
COUNT_LINES_BYTES = 64_000_000
"""Past this size ``read_file`` stops reading after the shown range (no total line count)."""
LIST_ENTRIES = 200
"""Entries ``list_dir`` shows at most; the shallowest levels are kept first."""
LIST_SCAN = 5_000
"""Directory entries ``list_dir`` looks at at most."""
STAGED_NOTE = "includes your staged, not yet applied edits"


class ReadFile(Tool):
    """Show a text file with line numbers."""

    name: ClassVar[str] = "read_file"
    description: ClassVar[str] = (
        "Read a text file with numbered lines (like `cat -n`). Long files come in pages of "
        f"{READ_LINES} lines: pass start_line/end_line for the rest. Shows your staged edits "
        "when you have changed the file."
    )
    mutates: ClassVar[bool] = False

    class Args(ToolArgs):
        path: str = Field(description="File path relative to the project root, e.g. 'src/app.py'.")
        start_line: int | None = Field(
            default=None, ge=1, description="First line to show (1-based; default 1)."
        )
        end_line: int | None = Field(
            default=None,
            ge=1,
            description=f"Last line to show, inclusive (default: start_line + {READ_LINES - 1}).",
        )

        @model_validator(mode="after")
        def _ordered(self) -> ReadFile.Args:
            if self.start_line and self.end_line and self.end_line < self.start_line:
                raise ValueError(
                    f"end_line ({self.end_line}) is before start_line ({self.start_line})"
                )
            return self

    async def run(self, args: ReadFile.Args, ctx: ToolContext) -> ToolResult:
        full = ctx.workspace.resolve(args.path)
        rel = ctx.workspace.relative(full)
        try:
            staged = ctx.changes.current_text(rel)
        except ToolError:  # a path edits may not touch (.git/…): there is no draft of it
            staged = None
        start = args.start_line or 1
        if staged is not None:
            page = _page_text(staged, rel, start, args.end_line)
        else:
            page = await asyncio.to_thread(_read_page, full, rel, start, args.end_line, ctx)
        return _render(rel, page, staged=staged is not None)


@dataclass
class _Page:
    lines: list[str]
    start: int
    total: int | None
    """None when the file was too big to count its lines."""

    @property
    def end(self) -> int:
        return self.start + len(self.lines) - 1


def _read_page(full: Path, rel: str, start: int, end: int | None, ctx: ToolContext) -> _Page:
    """The lines of ``full`` from ``start`` (refusing directories, binaries, missing files)."""
    try:
        info = full.stat()
    except FileNotFoundError:
        raise _missing(full, rel, ctx) from None
    except OSError as exc:
        raise ToolError(f"cannot read {rel}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f'{rel} is a directory: use list_dir {{"path": "{rel}"}} to see it')
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{rel} is not a regular file (a device, socket or pipe): cannot read it")
    want = _window(start, end)
    lines: list[str] = []
    total = 0
    used = 0
    chars_cut = False
    with open_file(full, beneath=ctx.workspace.root) as handle:
        if is_binary(handle.read(BINARY_SNIFF_BYTES)):
            raise ToolError(
                f"{rel} is a binary file ({info.st_size} bytes): read_file shows text only"
            )
        handle.seek(0)
        for number, raw in enumerate(handle, start=1):
            total = number
            if number < start:
                continue
            if number > want or chars_cut:
                if info.st_size > COUNT_LINES_BYTES:
                    return _Page(lines, start, None)
                continue
            line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
            if number == 1:
                line = line.removeprefix("\ufeff")
            used += _shown_chars(line)
            if used > READ_CHARS and lines:
                chars_cut = True
                continue
            lines.append(line)
    return _check_start(_Page(lines, start, total), rel)


def _shown_chars(line: str) -> int:
    """Characters a line takes in the output (number, tab, text cut at ``LINE_CHARS``)."""
    return min(len(line), LINE_CHARS + 30) + 8


def _page_text(text: str, rel: str, start: int, end: int | None) -> _Page:
    """The page of an in-memory text (a staged version of a file)."""
    all_lines = text.split("\n")
    if all_lines and all_lines[-1] == "":
        all_lines.pop()
    want = _window(start, end)
    lines: list[str] = []
    used = 0
    for line in all_lines[start - 1 : want]:
        used += _shown_chars(line)
        if used > READ_CHARS and lines:
            break
        lines.append(line.rstrip("\r"))
    return _check_start(_Page(lines, start, len(all_lines)), rel)


def _window(start: int, end: int | None) -> int:
    """The last line to show: ``end``, but at most ``READ_LINES`` from ``start``."""
    last = start + READ_LINES - 1
    return min(end, last) if end is not None else last


def _check_start(page: _Page, rel: str) -> _Page:
    if page.total is not None and page.total > 0 and page.start > page.total:
        raise ToolError(
            f"start_line {page.start} is past the end of {rel} ({page.total} lines): "
            f"use a start_line of {page.total} or less"
        )
    return page


def _render(rel: str, page: _Page, *, staged: bool) -> ToolResult:
    notes = [STAGED_NOTE] if staged else []
    if page.total == 0:
        head = f"{rel} (empty file{'; ' + notes[0] if notes else ''})"
        return ToolResult(head, data={"path": rel, "total_lines": 0, "staged": staged})
    of = f"of {page.total}" if page.total is not None else "of a very large file"
    header = f"{rel} (lines {page.start}-{page.end} {of}"
    header += "".join(f"; {n}" for n in notes) + ")"
    body = []
    for number, line in enumerate(page.lines, start=page.start):
        if len(line) > LINE_CHARS:
            line = f"{line[:LINE_CHARS]}… [{len(line) - LINE_CHARS} more characters]"
        body.append(f"{number:>6}\t{line}")
    more = page.total is None or page.end < page.total
    footer = ""
    if more:
        rest = f"{page.end + 1}-{page.total}" if page.total is not None else f"{page.end + 1}-"
        footer = (
            f"\n[lines {rest} not shown: call read_file with start_line={page.end + 1} "
            "for the next page]"
        )
    text = header + "\n" + "\n".join(body) + footer
    data = {
        "path": rel,
        "start_line": page.start,
        "end_line": page.end,
        "total_lines": page.total,
        "staged": staged,
        "truncated": more,
    }
    return ToolResult(text, data=data)


def _missing(full: Path, rel: str, ctx: ToolContext) -> NotFound:
    """NotFound for ``rel``, naming similar files in the nearest existing folder."""
    folder = full.parent
    while folder != ctx.workspace.root and not folder.is_dir():
        folder = folder.parent
    where = ctx.workspace.relative(folder)
    hint = ""
    if folder != full.parent:
        missing = ctx.workspace.relative(full.parent)
        hint = f"; there is no folder {missing}/ (the nearest that exists is {where}/)"
    else:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            names = []
        close = difflib.get_close_matches(full.name, names, n=5, cutoff=0.5)
        if close:
            similar = ", ".join(f"{where}/{n}" if where != "." else n for n in close)
            hint = f"; similar names there: {similar}"
    return NotFound(
        f"no file {rel!r} in the project{hint}. Use list_dir or search_code to find it",
        path=rel,
    )


# --- list_dir -----------------------------------------------------------------------------


class ListDir(Tool):
    """A tree of a folder, marking what the index leaves out."""

    name: ClassVar[str] = "list_dir"
    description: ClassVar[str] = (
        "List a folder as a tree with file sizes. Folders and files left out by .gitignore/"
        ".mimiignore (or as dependencies, build output, binaries) are marked, not opened."
    )
    mutates: ClassVar[bool] = False

    class Args(ToolArgs):
        path: str = Field(default=".", description="Folder relative to the project root.")
        depth: int = Field(default=2, ge=1, le=6, description="How many levels to show (1-6).")

    async def run(self, args: ListDir.Args, ctx: ToolContext) -> ToolResult:
        full = ctx.workspace.resolve(args.path)
        rel = ctx.workspace.relative(full)
        if not full.exists():
            raise _missing(full, rel, ctx)
        if not full.is_dir():
            raise ToolError(f'{rel} is a file, not a folder: use read_file {{"path": "{rel}"}}')
        max_bytes = ctx.settings.index_max_file_bytes
        tree, stopped = await asyncio.to_thread(
            _walk, ctx.workspace.root, rel, args.depth, max_bytes
        )
        return _render_tree(rel, tree, args.depth, stopped=stopped)


@dataclass
class _Node:
    name: str
    rel: str
    is_dir: bool
    size: int = 0
    note: str = ""
    depth: int = 0
    children: list[_Node] = field(default_factory=list)
    count: int | None = None
    """For a folder not opened (too deep): how many entries it holds."""
    shown: bool = False


def _walk(root: Path, rel_dir: str, depth: int, max_bytes: int) -> tuple[_Node, bool]:
    """The tree under ``rel_dir`` to ``depth`` levels, with the scan's ignore rules, and
    whether the walk stopped at ``LIST_SCAN`` entries."""
    rules = _rules_down_to(root, rel_dir)
    top = _Node(rel_dir, rel_dir, True)
    budget = [LIST_SCAN]
    _fill(root, top, rules, depth, max_bytes, budget)
    return top, budget[0] < 0


def _rules_down_to(root: Path, rel_dir: str) -> tuple[_Rules, ...]:
    """The ignore rules in force in ``rel_dir`` (every folder's ignore files above it)."""
    parts = [] if rel_dir == "." else rel_dir.split("/")
    rules: tuple[_Rules, ...] = ()
    for n in range(len(parts)):
        rules = _with_folder_rules(root, "/".join(parts[:n]), rules)
    return rules


def _with_folder_rules(root: Path, rel_dir: str, rules: tuple[_Rules, ...]) -> tuple[_Rules, ...]:
    prefix = f"{rel_dir}/" if rel_dir and rel_dir != "." else ""
    folder = root / prefix if prefix else root
    specs: list[tuple[str, GitIgnoreSpec]] = []
    if not prefix and (root / ".git").is_dir():
        specs += _load_spec(root / ".git" / "info" / "exclude", ".git/info/exclude")
    specs += _load_spec(folder / ".gitignore", f"{prefix}.gitignore")
    specs += _load_spec(folder / ".mimiignore", f"{prefix}.mimiignore")
    return (*rules, _Rules(prefix, tuple(specs))) if specs else rules


def _fill(
    root: Path,
    node: _Node,
    rules: tuple[_Rules, ...],
    depth: int,
    max_bytes: int,
    budget: list[int],
) -> None:
    """Read ``node``'s folder and, ``depth`` levels down, the folders in it."""
    folder = root if node.rel == "." else root / node.rel
    rules = _with_folder_rules(root, node.rel, rules)
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: (not _is_dir(e), e.name))
    except OSError as exc:
        node.note = f"unreadable: {exc.strerror or exc}"
        return
    prefix = "" if node.rel == "." else f"{node.rel}/"
    for entry in entries:
        if budget[0] <= 0:
            budget[0] = -1
            return
        budget[0] -= 1
        rel = f"{prefix}{entry.name}"
        child = _Node(entry.name, rel, _is_dir(entry), depth=node.depth + 1)
        node.children.append(child)
        if child.is_dir:
            child.note = _dir_note(entry, rel, rules, at_root=not prefix)
            if child.note:
                continue
            if node.depth + 1 < depth:
                _fill(root, child, rules, depth, max_bytes, budget)
            else:
                child.count = _count(entry.path)
        else:
            child.note, child.size = _file_note(root, entry, rel, rules, max_bytes)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _count(path: str) -> int | None:
    try:
        with os.scandir(path) as listing:
            return sum(1 for _ in listing)
    except OSError:
        return None


def _dir_note(
    entry: os.DirEntry[str], rel: str, rules: tuple[_Rules, ...], *, at_root: bool
) -> str:
    """Why the index skips this folder ('' when it does not)."""
    if entry.name in SKIP_DIRS or entry.name.endswith(".egg-info"):
        return "skipped: dependencies, caches or version control"
    if at_root and entry.name in ROOT_SKIP_DIRS:
        return "skipped: build output"
    source = _ignored(rules, rel, is_dir=True)
    if source:
        return f"skipped: ignored by {source}"
    if _is_virtualenv(Path(entry.path)):
        return "skipped: virtualenv"
    return ""


def _file_note(
    root: Path, entry: os.DirEntry[str], rel: str, rules: tuple[_Rules, ...], max_bytes: int
) -> tuple[str, int]:
    """(why the index skips this file or '', its size)."""
    try:
        is_link = entry.is_symlink()
        info = os.stat(entry.path)
    except OSError:
        return ("broken symlink" if entry.is_symlink() else "unreadable"), 0
    if is_link:
        target = Path(os.path.realpath(entry.path))
        if not target.is_relative_to(root):
            return "symlink to outside the project: cannot be read", 0
        if stat.S_ISDIR(info.st_mode):
            return f"symlink to {os.path.relpath(target, root)}/", 0
    source = _ignored(rules, rel, is_dir=False)
    if source:
        return f"ignored by {source}", info.st_size
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file", 0
    reason = _by_name(rel)
    if reason is None and info.st_size > max_bytes:
        reason = "too large to index"
    if reason is None:
        try:
            with open(entry.path, "rb") as handle:
                if is_binary(handle.read(1024)):
                    reason = "binary"
        except OSError:
            reason = "unreadable"
    return reason or "", info.st_size


def _render_tree(rel: str, top: _Node, depth: int, *, stopped: bool) -> ToolResult:
    # Keep the shallowest entries first: every level-1 entry before any level-2 one.
    levels: list[list[_Node]] = []
    queue = list(top.children)
    while queue:
        levels.append(queue)
        queue = [c for node in queue for c in node.children]
    shown = 0
    total = sum(len(level) for level in levels)
    for level in levels:
        for node in level:
            if shown >= LIST_ENTRIES:
                break
            node.shown = True
            shown += 1
    lines = [f"{rel}/" if rel != "." else "./ (project root)"]
    _draw(top, lines, "")
    if top.note:
        lines.append(f"  ({top.note})")
    elif not top.children:
        lines.append("  (empty folder)")
    if shown < total:
        lines.append(
            f"[{total - shown} more entries not shown: list a subfolder or use a smaller depth]"
        )
    if stopped:
        lines.append(
            f"[stopped after {LIST_SCAN} entries: the folder is very large; list a subfolder]"
        )
    data = {"path": rel, "depth": depth, "entries": shown, "truncated": shown < total or stopped}
    return ToolResult("\n".join(lines), data=data)


def _draw(node: _Node, lines: list[str], indent: str) -> None:
    hidden = 0
    for child in node.children:
        if not child.shown:
            hidden += 1
            continue
        if child.is_dir:
            line = f"{indent}  {child.name}/"
            if child.note:
                line += f"  ({child.note})"
            elif child.count is not None and not child.children:
                line += f"  ({plural(child.count, 'entry', 'entries')})"
        else:
            line = f"{indent}  {child.name}  {_size(child.size)}"
            if child.note:
                line += f"  ({child.note})"
        lines.append(line)
        if child.is_dir:
            _draw(child, lines, indent + "  ")
    if hidden:
        lines.append(f"{indent}  … {hidden} more")


def _size(n: int) -> str:
    """``n`` bytes for people: 812 B, 4.2 KB, 1.5 MB."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
    return f"{n} B"  # unreachable: GB ends the loop


TOOLS = (ReadFile, ListDir)

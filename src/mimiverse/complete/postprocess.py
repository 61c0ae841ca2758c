"""Stop rules and post-processing of raw completions.

``Shape`` decides, from the cursor's position and language, whether a completion may span
lines, and at what indentation its block lives. ``cut`` is applied while tokens stream in:
once it finds the end, the caller closes the stream, which stops generation in the model.
``finish`` cleans the final text. Small models run on past the hole they were asked to
fill (into the next method, or repeating the code after the cursor): these rules end them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mimiverse.complete.languages import Language

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {v: k for k, v in OPEN.items()}
MAX_BLOCK_LINES = 8


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


@dataclass(frozen=True)
class Shape:
    """Where the cursor is, as the stop rules need it."""

    line_prefix: str
    """Text of the cursor's line before the cursor."""
    line_suffix: str
    """Text of the cursor's line after the cursor."""
    multiline: bool
    block_indent: int
    """Lines of a completion indented less than this end it (multi-line only)."""
    next_line: str
    """The first non-blank line after the cursor's line (stripped), for the repeat rule."""
    previous_line: str
    """The last non-blank line before the cursor's line (stripped), for the duplicate rule."""
    language: Language
    open_brackets: str = ""
    """Brackets still open at the cursor (from the prefix window), innermost last."""


def open_brackets(text: str) -> str:
    """Brackets left open at the end of ``text``; strings are skipped roughly (one line)."""
    stack: list[str] = []
    for line in text.split("\n")[-60:]:
        quote = ""
        for ch in line:
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'`":
                quote = ch
            elif ch == "#" and not stack:
                break
            elif ch in OPEN:
                stack.append(ch)
            elif ch in CLOSE:
                if stack and stack[-1] == CLOSE[ch]:
                    stack.pop()
                else:
                    stack.clear()
    return "".join(stack)


def shape(prefix: str, suffix: str, language: Language) -> Shape:
    """Single- or multi-line, and the block indentation, for a cursor between the two."""
    before_lines = prefix.split("\n")
    line_prefix = before_lines[-1]
    line_suffix = suffix.split("\n", 1)[0]
    previous = next((ln for ln in reversed(before_lines[:-1]) if ln.strip()), "")
    rest = suffix.split("\n")[1:]
    following = next((ln for ln in rest if ln.strip()), "")
    at_line_end = not line_suffix.strip(" \t)]}'\";,:")
    blank_line = not line_prefix.strip()
    # A block may follow: on an empty line after an opener (``def f():`` ⏎ |), or at the
    # end of the opener's line itself. Elsewhere, one line: the common, cheap case.
    after_opener = blank_line and language.opens_block(previous)
    on_opener = at_line_end and not blank_line and language.opens_block(line_prefix)
    multiline = at_line_end and not line_suffix.strip() and (after_opener or on_opener)
    if on_opener:
        block_indent = _indent(line_prefix) + 1
    elif blank_line:
        block_indent = len(line_prefix)
    else:
        block_indent = _indent(line_prefix)
    return Shape(
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        multiline=multiline,
        block_indent=block_indent,
        next_line=following.strip(),
        previous_line=previous.strip(),
        language=language,
        open_brackets=open_brackets(prefix),
    )


def _bracket_cut(text: str, opened: str) -> int | None:
    """Where ``text`` closes a bracket that was not open at the cursor (runaway)."""
    stack = list(opened)
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote or ch == "\n":
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in OPEN:
            stack.append(ch)
        elif ch in CLOSE:
            if not stack:
                return i
            if stack[-1] != CLOSE[ch]:
                return i
            stack.pop()
    return None


def cut(text: str, s: Shape) -> int | None:
    """Where the completion must end (an index into ``text``), or None to keep going.

    Called on the text so far after every streamed piece; the block rules only look at
    complete lines, so a line still being generated is never judged early.
    """
    ends: list[int] = []
    bracket = _bracket_cut(text, s.open_brackets)
    if bracket is not None:
        ends.append(bracket)
    if not s.multiline:
        newline = text.find("\n")
        if newline >= 0:
            ends.append(newline)
        return min(ends) if ends else None
    block_end = _block_cut(text, s)
    if block_end is not None:
        ends.append(block_end)
    return min(ends) if ends else None


def _block_cut(text: str, s: Shape) -> int | None:
    # Judge lines as they will stand in the file: the first one continues the cursor's line.
    lines = (s.line_prefix + text).split("\n")
    shift = len(s.line_prefix)
    offset = 0
    block: int | None = None
    blank_run = 0
    content_lines = 0
    for number, line in enumerate(lines[:-1]):  # complete lines only
        start = max(0, offset - shift)
        offset += len(line) + 1
        stripped = line.strip()
        if number == 0 and s.line_prefix.strip():
            continue  # the opener's own line
        if not stripped:
            blank_run += 1
            if blank_run >= 2 and content_lines:
                return start
            continue
        indent = _indent(line)
        if block is None:
            block = max(s.block_indent, indent)
        elif indent < block:
            return start  # dedented out of the block: the model ran on into the next method
        elif blank_run and indent == block and s.language.starts_definition(line):
            return start  # a new definition after a blank line: not part of this hole
        if s.next_line and len(s.next_line) > 3 and stripped == s.next_line:
            return start  # repeats the code after the cursor
        blank_run = 0
        content_lines += 1
        if content_lines >= MAX_BLOCK_LINES:
            return max(0, offset - 1 - shift)
    return None


def _overlap(text: str, following: str) -> int:
    """Length of the longest end of ``text`` that the code after the cursor starts with."""
    for size in range(min(len(text), len(following)), 0, -1):
        if following.startswith(text[-size:]):
            return size
    return 0


def finish(text: str, s: Shape, *, complete: bool = True) -> str:
    """The suggestion to show: cut, trimmed, de-duplicated; empty when there is none.

    ``complete`` is False when generation stopped at the token limit: a multi-line
    completion then loses its unfinished last line.
    """
    end = cut(text, s)
    if end is not None:
        text = text[:end]
    elif s.multiline and not complete and "\n" in text.strip("\n"):
        text = text[: text.rstrip("\n").rfind("\n")]
    lines = [ln.rstrip() for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not s.multiline:
        lines = lines[:1]
    text = "\n".join(lines)
    if "\n" not in text:
        text = text.rstrip() if not s.line_suffix.strip() else text
    if s.line_prefix and not s.line_prefix.strip():
        # The editor already typed the indentation; the model sometimes adds its own.
        first, _, rest = text.partition("\n")
        text = first.lstrip(" \t") + ("\n" + rest if rest else "")
    # Text the line already has after the cursor must not be suggested again.
    tail = s.line_suffix.strip()
    if tail and "\n" not in text:
        size = _overlap(text, tail)
        if size and (size >= 3 or not text[-size:].isalnum() or size == len(text)):
            text = text[:-size]
        elif any(ch.isalnum() for ch in tail):
            # In front of existing code: only a completion that runs into it fits there;
            # anything else would be glued to the code after the cursor.
            return ""
        text = text.rstrip() if not text.strip() else text
    if not text.strip():
        return ""
    if tail and tail.startswith(text.strip()):
        return ""  # the line after the cursor already holds it
    first = text.split("\n", 1)[0].strip()
    if (
        s.previous_line
        and not s.line_prefix.strip()
        and first == s.previous_line
        and len(first) >= 8
    ):
        return ""  # a copy of the line above
    return text

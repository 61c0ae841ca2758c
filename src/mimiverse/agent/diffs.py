"""Text-level work for changesets: hunks, their application, and search/replace edits.

Lines keep their endings (``\\n``, ``\\r\\n``, or none on a last line), so applying hunks
or a search/replace block never changes a byte the edit did not mean to change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from mimiverse.errors import EditMismatch

CONTEXT = 3
"""Unchanged lines shown around each change in a hunk."""

NO_NEWLINE = "\\ No newline at end of file"
_NUMBERED = re.compile(r"^ *\d+(?:\t| [|:] ?)")
"""A line number as ``read_file`` (``   12\tcode``) or an EditMismatch (``12 | code``) shows it."""
_WORD = re.compile(r"\w+")
_RANGE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SHOWN_LINES = 30
_AROUND = 2

Opcode = tuple[str, int, int, int, int]


def split_lines(text: str) -> list[str]:
    """``text`` cut after each ``\\n``; line endings stay on their lines."""
    if not text:
        return []
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# --- hunks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One hunk's place: lines ``[old_start, old_end)`` of before, ``[new_start, new_end)`` of after."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int

    def header(self) -> str:
        """The unified-diff header, ``@@ -a,b +c,d @@``."""
        old = _format_range(self.old_start, self.old_end)
        new = _format_range(self.new_start, self.new_end)
        return f"@@ -{old} +{new} @@"

    @classmethod
    def parse(cls, header: str) -> Span:
        """The span a ``@@ -a,b +c,d @@`` header describes."""
        match = _RANGE.match(header)
        if match is None:
            raise ValueError(f"not a unified-diff hunk header: {header!r}")
        old_start, old_end = _parse_range(match.group(1), match.group(2))
        new_start, new_end = _parse_range(match.group(3), match.group(4))
        return cls(old_start, old_end, new_start, new_end)


def _format_range(start: int, stop: int) -> str:
    length = stop - start
    first = start + 1
    if length == 1:
        return str(first)
    if length == 0:
        first -= 1
    return f"{first},{length}"


def _parse_range(first: str, length: str | None) -> tuple[int, int]:
    count = 1 if length is None else int(length)
    start = int(first) - 1 if count else int(first)
    return start, start + count


@dataclass(frozen=True)
class RawHunk:
    """A hunk before it gets an id: its span and its ``' '``/``'-'``/``'+'`` lines."""

    span: Span
    lines: list[str]


def diff_hunks(before: str, after: str, context: int = CONTEXT) -> list[RawHunk]:
    """The hunks that turn ``before`` into ``after``, ``context`` lines around each change."""
    old, new = split_lines(before), split_lines(after)
    hunks = []
    for group in _grouped(_opcodes(old, new), context):
        span = Span(group[0][1], group[-1][2], group[0][3], group[-1][4])
        lines: list[str] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += _shown(" ", old[i1:i2])
                continue
            lines += _shown("-", old[i1:i2])
            lines += _shown("+", new[j1:j2])
        hunks.append(RawHunk(span, lines))
    return hunks


def _opcodes(old: Sequence[str], new: Sequence[str]) -> list[Opcode]:
    """difflib's opcodes, with the common head and tail cut off first (fast on big files)."""
    head = 0
    limit = min(len(old), len(new))
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    middle = SequenceMatcher(
        None, old[head : len(old) - tail], new[head : len(new) - tail], autojunk=False
    )
    codes: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        codes.append((tag, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        codes.append(("equal", len(old) - tail, len(old), len(new) - tail, len(new)))
    return codes


def _grouped(codes: list[Opcode], context: int) -> list[list[Opcode]]:
    """Opcodes cut into hunks (difflib's ``get_grouped_opcodes`` over a given list)."""
    if not any(tag != "equal" for tag, *_ in codes):
        return []
    codes = list(codes)
    if codes[0][0] == "equal":
        _, i1, i2, j1, j2 = codes[0]
        codes[0] = ("equal", max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    if codes[-1][0] == "equal":
        _, i1, i2, j1, j2 = codes[-1]
        codes[-1] = ("equal", i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _shown(prefix: str, lines: Iterable[str]) -> list[str]:
    out = []
    for line in lines:
        if line.endswith("\n"):
            out.append(prefix + line.removesuffix("\n").removesuffix("\r"))
        else:
            out += [prefix + line, NO_NEWLINE]
    return out


def apply_spans(before: str, after: str, spans: Iterable[tuple[Span, bool]]) -> str:
    """``before`` with each span taken from ``after`` when its flag is True, else kept.

    Spans come from ``diff_hunks(before, after)``; a span left out keeps its old lines.
    """
    old, new = split_lines(before), split_lines(after)
    out: list[str] = []
    pos = 0
    for span, take in sorted(spans, key=lambda item: item[0].old_start):
        out += old[pos : span.old_start]
        out += new[span.new_start : span.new_end] if take else old[span.old_start : span.old_end]
        pos = span.old_end
    out += old[pos:]
    return "".join(out)


def unified_diff(before: str | None, after: str | None, old_path: str, new_path: str) -> str:
    """A unified diff of two versions of a file (None: the file is absent)."""
    hunks = diff_hunks(before or "", after or "")
    return render_diff(
        old_path if before is not None else None,
        new_path if after is not None else None,
        [(h.span.header(), h.lines) for h in hunks],
    )


def render_diff(
    old_path: str | None, new_path: str | None, hunks: Iterable[tuple[str, list[str]]]
) -> str:
    """File headers plus hunks as unified-diff text (None path: ``/dev/null``)."""
    out = []
    if old_path is not None and new_path is not None and old_path != new_path:
        out += [f"rename from {old_path}", f"rename to {new_path}"]
    out.append(f"--- a/{old_path}" if old_path is not None else "--- /dev/null")
    out.append(f"+++ b/{new_path}" if new_path is not None else "+++ /dev/null")
    for header, lines in hunks:
        out.append(header)
        out += lines
    return "\n".join(out) + "\n"


# --- search/replace edits --------------------------------------------------------------


def replace_block(text: str, search: str, replace: str, *, path: str) -> str:
    """``text`` with the one occurrence of ``search`` replaced by ``replace``.

    Tries an exact match, then one that ignores trailing whitespace, then one that also
    ignores a uniform indentation difference (the replacement is re-indented to match),
    then the same with line numbers copied from ``read_file`` output taken off.
    A file whose every line ends in CRLF is matched as LF and written back as CRLF.
    EditMismatch says when ``search`` is missing (showing the closest lines) or ambiguous.
    """
    if not search.strip():
        raise EditMismatch(
            f"search is empty: give the exact lines of {path} to replace "
            "(to replace the whole file use create_file with overwrite: true)",
            path=path,
        )
    if "\r\n" in text and "\n" not in text.replace("\r\n", ""):
        lf = replace_block(
            text.replace("\r\n", "\n"),
            search.replace("\r\n", "\n"),
            replace.replace("\r\n", "\n"),
            path=path,
        )
        return lf.replace("\n", "\r\n")
    if "\r\n" not in text:
        search, replace = search.replace("\r\n", "\n"), replace.replace("\r\n", "\n")
    starts = _find_all(text, search)
    if len(starts) == 1:
        return text[: starts[0]] + replace + text[starts[0] + len(search) :]
    if starts:
        raise _ambiguous(path, [text.count("\n", 0, s) + 1 for s in starts])
    lines, wanted = split_lines(text), split_lines(search)
    for matcher in (_match_rstrip, _match_indent):
        found = [m for i in range(len(lines) - len(wanted) + 1) if (m := matcher(lines, i, wanted))]
        if len(found) > 1:
            raise _ambiguous(path, [m.start + 1 for m in found])
        if found:
            return _splice(lines, found[0], split_lines(replace))
    bare = _unnumbered(search)
    if bare is not None:
        return replace_block(text, bare, _unnumbered(replace) or replace, path=path)
    raise EditMismatch(_not_found(path, lines, wanted), path=path)


def _unnumbered(text: str) -> str | None:
    """``text`` without ``read_file``-style line numbers, when every non-blank line has one."""
    lines = split_lines(text)
    if not any(line.strip() for line in lines):
        return None
    if not all(_NUMBERED.match(line) for line in lines if line.strip()):
        return None
    return "".join(_NUMBERED.sub("", line, count=1) for line in lines)


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    old_indent: str = ""
    new_indent: str = ""


def _find_all(text: str, needle: str) -> list[int]:
    starts, pos = [], text.find(needle)
    while pos != -1:
        starts.append(pos)
        pos = text.find(needle, pos + 1)
    return starts


def _match_rstrip(lines: list[str], at: int, wanted: list[str]) -> _Match | None:
    for k, want in enumerate(wanted):
        if lines[at + k].rstrip() != want.rstrip():
            return None
    return _Match(at, at + len(wanted))


def _match_indent(lines: list[str], at: int, wanted: list[str]) -> _Match | None:
    """Lines equal up to one indentation prefix swapped for another on every non-blank line."""
    indent = _common_indent(wanted)
    file_indent: str | None = None
    for k, want in enumerate(wanted):
        have = lines[at + k].rstrip()
        body = want.rstrip()[len(indent) :]
        if not body:
            if have:
                return None
            continue
        if not have.endswith(body):
            return None
        prefix = have[: len(have) - len(body)]
        if prefix.strip() or (file_indent is not None and prefix != file_indent):
            return None
        file_indent = prefix
    if file_indent is None:
        return None
    return _Match(at, at + len(wanted), indent, file_indent)


def _common_indent(lines: list[str]) -> str:
    indents = [line[: len(line) - len(line.lstrip())] for line in lines if line.strip()]
    return os.path.commonprefix(indents) if indents else ""  # noqa: RUF071 - strings, not paths


def _splice(lines: list[str], match: _Match, new: list[str]) -> str:
    if match.old_indent != match.new_indent:
        new = [_reindent(line, match.old_indent, match.new_indent) for line in new]
    text = "".join(new)
    last = lines[match.end - 1]
    if text and last.endswith("\n") and not text.endswith("\n"):
        text += "\r\n" if last.endswith("\r\n") else "\n"
    elif not last.endswith("\n") and text.endswith("\n"):
        text = text.removesuffix("\n").removesuffix("\r")
    return "".join(lines[: match.start]) + text + "".join(lines[match.end :])


def _reindent(line: str, old: str, new: str) -> str:
    if not line.strip():
        return line
    if line.startswith(old):
        return new + line[len(old) :]
    return new + line.lstrip(" \t")


def _ambiguous(path: str, line_numbers: list[int]) -> EditMismatch:
    where = ", ".join(str(n) for n in line_numbers[:20])
    if len(line_numbers) > 20:
        where += ", …"
    return EditMismatch(
        f"search text matches {len(line_numbers)} places in {path} (lines {where}); "
        "add more surrounding lines to search so that it matches exactly one place",
        path=path,
        lines=line_numbers,
    )


def _not_found(path: str, lines: list[str], wanted: list[str]) -> str:
    head = f"search text not found in {path}."
    tail = (
        "Copy the search text exactly from the file, with every space, tab and line "
        "(read the file again if it may have changed)."
    )
    if not lines:
        return f"{head} The file is empty. {tail}"
    start, end, ratio = closest_window(lines, wanted)
    if ratio < 0.3:
        return f"{head} No lines in it look like the search text. {tail}"
    first = max(0, start - _AROUND)
    last = min(len(lines), end + _AROUND, first + _SHOWN_LINES)
    width = len(str(last))
    body = "\n".join(
        f"{n:>{width}} {'|' if start < n <= end else ':'} {line.rstrip(chr(10)).rstrip(chr(13))}"
        for n, line in enumerate(lines[first:last], first + 1)
    )
    more = f"\n… ({end - last} more lines)" if end > last else ""
    return (
        f"{head} The most similar lines are {start + 1}-{end}, marked '|' "
        f"(line number, then the text; ':' marks lines around them):\n{body}{more}\n{tail}"
    )


def closest_window(lines: list[str], wanted: list[str]) -> tuple[int, int, float]:
    """The run of ``len(wanted)`` lines most like ``wanted``: (start, end, similarity 0-1)."""
    size = min(max(len(wanted), 1), len(lines))
    target = "".join(line.strip() + "\n" for line in wanted)
    keys = {line.strip() for line in wanted if line.strip()}
    words = set(_WORD.findall(target))
    # Cheap scores first (whole lines, then shared words); only the best windows get difflib.
    hits = [
        10 * (line.strip() in keys) + len(words.intersection(_WORD.findall(line))) for line in lines
    ]
    scores = [sum(hits[:size])]
    for i in range(1, len(lines) - size + 1):
        scores.append(scores[-1] + hits[i + size - 1] - hits[i - 1])
    candidates = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:40]
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)
    best = (0, size, -1.0)
    for i in sorted(candidates):
        matcher.set_seq1("".join(line.strip() + "\n" for line in lines[i : i + size]))
        if matcher.real_quick_ratio() <= best[2] or matcher.quick_ratio() <= best[2]:
            continue
        ratio = matcher.ratio()
        if ratio > best[2]:
            best = (i, i + size, ratio)
    return best

"""Safe path resolution: every path from a request or a model stays inside the root.

``Workspace.resolve`` is the one door from a user's or a model's path to the disk. It
refuses (``PathOutsideWorkspace``, 400) what could leave the root, judged first on the
text and then again on disk after symlinks are followed:

- absolute paths (POSIX ``/etc``, Windows ``C:\\``, UNC ``\\\\server\\share``), except one
  that names a place inside the root itself;
- ``..`` components, with either slash; a first component starting with ``~``;
- NUL, control and bidirectional-override characters, and U+FFFD (bytes that were not
  UTF-8);
- percent-encoded text that decodes (once or more: ``%252e``) to any of the above, or to
  overlong UTF-8 (``%c0%ae``);
- Unicode look-alikes that normalise (NFKC, plus slash look-alikes NFKC keeps, such as
  U+2215) to any of the above: ``．．／``, ``‥``;
- symlinks anywhere along the path (dangling ones and loops too) that lead outside.

Plain Unicode names (``docs/résumé.md``) and a literal ``%`` that decodes to nothing
dangerous (``100%.txt``) keep working. Backslashes are read as folder separators.

``check_relative`` is the text half alone, for globs and filters that never reach the
disk. A request field can put ``RELATIVE_PATH_PATTERN`` in its schema and validate with
``check_documented``, so the API document states the rule (schemathesis holds us to it).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

from mimiverse.errors import NotFound, PathOutsideWorkspace

HINT = "use a path relative to the project root (e.g. 'src/app.py')"
MAX_READINGS = 16
"""Readings of one path looked through (``%25252e`` takes three decodings)."""
SHOWN_CHARS = 200
"""A refused path is quoted in the error up to this many characters."""

_SEPARATORS = re.compile(r"[/\\]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]|\xe0[\x80-\x9f]|\xf0[\x80-\x8f]")
_LOOKALIKES = str.maketrans(
    {
        "\u2215": "/",  # division slash
        "\u2044": "/",  # fraction slash
        "\u29f8": "/",  # big solidus
        "\u2571": "/",  # box drawing diagonal
        "\u2216": "\\",  # set minus
        "\u29f5": "\\",  # reverse solidus operator
        "\u29f9": "\\",  # big reverse solidus
        "\u3002": ".",  # ideographic full stop (U+FF61 normalises to it)
    }
)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


_SCHEMA_EXCLUDED = (
    r"\x00-\x1f\x7f-\x9f%:\\"
    r"\u00a0\u00a8\u00af\u00b4\u00b8\u00bc-\u00be\u02d8-\u02dd\u037a"
    r"\u0384-\u0385\u061c\u1fbd\u1fbf-\u1fc1\u1fcd-\u1fcf\u1fdd-\u1fdf"
    r"\u1fed-\u1fee\u1ffd-\u1ffe\u2000-\u200a\u200e-\u200f\u2017"
    r"\u2024-\u2026\u202a-\u202f\u203e\u2044\u205f\u2066-\u2069"
    r"\u2100-\u2101\u2105-\u2106\u2150-\u215f\u2189\u2215-\u2216"
    r"\u2488-\u249b\u2571\u29f5\u29f8-\u29f9\u2a74\u3000\u3002\u309b-\u309c"
    r"\u33a7-\u33a8\u33ae-\u33af\u33c2\u33c6-\u33c7\u33d8\u33de-\u33df"
    r"\ufc5e-\ufc63\ufdfa-\ufdfb\ufe12-\ufe13\ufe19\ufe30"
    r"\ufe49-\ufe4c\ufe52\ufe55\ufe68\ufe6a\ufe70\ufe72\ufe74\ufe76\ufe78"
    r"\ufe7a\ufe7c\ufe7e\uff05\uff0e-\uff0f\uff1a\uff3c\uff5e\uff61\uffe3"
    r"\ufffd"
)
"""Characters a documented path never holds: controls, '%', ':', '\\', bidi marks, U+FFFD,
and every BMP character whose NFKC form holds '.', '/', '\\', '~', '%', ':' or a space
(tests/workspace/test_paths.py recomputes the list). Lone surrogates are refused too but
not listed: validators that read the schema (Rust regex) reject them in a pattern."""

RELATIVE_PATH_PATTERN = (
    r"^(?![/~])(?!(?:.*/)?[. ]*\.[. ]*\.[. ]*(?:/|$))[^" + _SCHEMA_EXCLUDED + r"]*$"
)
"""What a request schema promises a path field accepts (an ECMA and Python regex alike):
no leading '/' or '~', no '..' component, none of the characters above. Every text it
matches passes ``check_relative``; ``check_documented`` refuses the rest."""

_DOCUMENTED = re.compile(RELATIVE_PATH_PATTERN)


def check_documented(text: str) -> str:
    """``check_relative`` for a request field whose schema carries RELATIVE_PATH_PATTERN.

    It also refuses what the pattern leaves out, so the schema states the whole rule.
    """
    path = check_relative(text)
    if not _DOCUMENTED.fullmatch(text):
        raise _refused(
            text,
            "has a character request paths may not hold ('%', ':', '\\', a control or "
            "look-alike character)",
        )
    return path


def check_relative(text: str, *, shown: str | None = None) -> str:
    """``text`` as a root-relative path ('/' separators) when it cannot leave a root.

    A text-only check (no disk): PathOutsideWorkspace names what is wrong. Globs and
    other path-like filters that never reach the disk use this; paths use ``resolve``.
    ``shown`` is the text to quote in the error (default: ``text``).
    """
    for variant, how in _variants(text, shown or text):
        reason = _danger(variant)
        if reason:
            raise _refused(shown or text, how + reason)
    return text.replace("\\", "/")


def _refused(text: str, reason: str) -> PathOutsideWorkspace:
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"
    return PathOutsideWorkspace(
        f"path {shown!r} {reason}, which could lead outside the project; {HINT}", path=shown
    )


def _variants(text: str, shown: str) -> Iterator[tuple[str, str]]:
    """``text`` and its readings: percent-decoded and look-alikes normalised, in any order
    and repeatedly (``％２ｅ`` is both). Each comes with how it was read, for the error."""
    seen = {text}
    queue = [(text, "")]
    while queue:
        form, how = queue.pop(0)
        yield form, how
        for reading, label in _readings(form, shown):
            if reading not in seen and len(seen) < MAX_READINGS:
                seen.add(reading)
                queue.append((reading, how or label))


def _readings(text: str, shown: str) -> Iterator[tuple[str, str]]:
    """``text`` percent-decoded once, and NFKC-normalised with slash look-alikes mapped."""
    raw = unquote_to_bytes(text)
    if _OVERLONG.search(raw):
        raise _refused(shown, "is percent-encoded as overlong UTF-8 (a disguised '.' or '/')")
    yield raw.decode("utf-8", errors="replace"), "is percent-encoded: decoded, it "
    normal = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)
    yield normal, "uses look-alike characters: read as ASCII, it "


def _danger(text: str) -> str:
    """Why ``text`` could leave a root ('' when it cannot)."""
    if "\x00" in text:
        return "contains a NUL byte"
    if "\ufffd" in text:
        return "holds bytes that are not UTF-8 (U+FFFD; an overlong '.' or '/'?)"
    bad = next((c for c in text if _is_control(c)), None)
    if bad is not None:
        return f"contains the control character U+{ord(bad):04X}"
    if text[:1] in ("/", "\\"):
        return "is absolute"
    if _DRIVE.match(text):
        return "is a Windows drive path"
    parts = _SEPARATORS.split(text)
    if parts[0].startswith("~"):
        return "starts with '~' (home folders are not expanded)"
    if any(_climbs(part) for part in parts):
        return "goes up a folder with '..'"
    return ""


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI


def _climbs(part: str) -> bool:
    """``..``, and forms some systems read as it (``...``, ``.. ``)."""
    return part.count(".") >= 2 and not part.strip(". ")


class Workspace:
    """One project root. ``resolve`` is the only way from a user or model path to disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def resolve(self, path: str | Path, *, must_exist: bool = False) -> Path:
        """The absolute path of ``path`` (relative to the root), refused if it could leave.

        Symlinks are followed before the last check, so a link pointing out is refused too.
        """
        text = str(path).strip()
        if not text:
            raise PathOutsideWorkspace(f"empty path: {HINT}")
        candidate = Path(check_relative(self._inside_part(text), shown=text))
        try:
            full = (self.root / candidate).resolve()
        except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
            raise PathOutsideWorkspace(
                f"path {text!r} cannot be resolved (a symlink loop?); {HINT}", path=text
            ) from None
        full = self._without_root_name(candidate, full)
        if full != self.root and self.root not in full.parents:
            raise PathOutsideWorkspace(
                f"path {text!r} resolves outside the project through a symlink; {HINT}",
                path=text,
            )
        if must_exist and not full.exists():
            raise NotFound(
                f"no file or directory {self.relative(full)!r} in the project", path=text
            )
        return full

    def _inside_part(self, text: str) -> str:
        """An absolute ``text`` naming a place in the root, made relative; others unchanged."""
        root = str(self.root)
        if text == root:
            return "."
        if text.startswith(root.rstrip("/") + "/"):
            return text[len(root) :].lstrip("/") or "."
        return text

    def _without_root_name(self, candidate: Path, full: Path) -> Path:
        """``app/src/x.py`` in project ``app`` means ``src/x.py`` when only that exists.

        Models (and people) often prefix the project's own folder name.
        """
        parts = candidate.parts
        if len(parts) < 2 or parts[0] != self.root.name or full.exists():
            return full
        if (self.root / parts[0]).exists():
            return full
        stripped = (self.root / Path(*parts[1:])).resolve()
        return stripped if stripped.exists() else full

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the root, with forward slashes ('.' for the root)."""
        rel = os.path.relpath(Path(path), self.root)
        return rel.replace(os.sep, "/")

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

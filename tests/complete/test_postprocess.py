"""Stop rules and post-processing: hand-made cases, then recorded runaways of the real 0.5B.

``data/runaways.json`` holds real outputs of the bundled Qwen2.5-Coder-0.5B (temperature
0, 96 tokens, no stop but the template's) at stdlib cursors; ``data/record_runaways.py``
recorded them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mimiverse.complete.languages import language_of
from mimiverse.complete.postprocess import cut, finish, shape

PY = language_of("python")
RUNAWAYS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "runaways.json").read_text("utf-8")
)


def done(prefix: str, suffix: str, raw: str, language: str = "python", **kw: Any) -> str:
    return finish(raw, shape(prefix, suffix, language_of(language)), **kw)


# --- single line or block ------------------------------------------------------------------


def test_mid_line_is_single_line() -> None:
    s = shape("x = compute(", ")\nprint(x)\n", PY)
    assert not s.multiline and s.line_suffix == ")"


def test_empty_line_after_an_opener_is_a_block() -> None:
    s = shape("def f(x):\n    ", "\n\ndef g():\n    pass\n", PY)
    assert s.multiline and s.block_indent == 4


def test_end_of_an_opener_line_is_a_block() -> None:
    s = shape("if ready:", "\nprint(1)\n", PY)
    assert s.multiline and s.block_indent == 1


def test_braces_open_blocks_in_c_like_languages() -> None:
    s = shape("function f(a) {\n  ", "\n}\n", language_of("javascript"))
    assert s.multiline and s.block_indent == 2


def test_plain_statement_line_is_single_line() -> None:
    assert not shape("x = 1\n", "\ny = 2\n", PY).multiline


# --- rules ---------------------------------------------------------------------------------


def test_single_line_stops_at_the_newline() -> None:
    assert done("total = ", "\n", "a + b\nprint(total)\n") == "a + b"


def test_block_stops_when_it_dedents_into_the_next_method() -> None:
    prefix = "class A:\n    def f(self, x):\n        "
    raw = "y = x * 2\n        return y\n\n    def g(self):\n        return 0\n"
    assert done(prefix, "\n", raw) == "y = x * 2\n        return y"


def test_block_stops_at_a_new_top_level_definition() -> None:
    raw = "\n    return x + 1\n\n\ndef other():\n    pass\n"
    assert done("def f(x):", "\n", raw) == "\n    return x + 1"


def test_block_stops_before_repeating_the_code_after_the_cursor() -> None:
    prefix = "def f(items):\n    "
    suffix = "\n    return sorted(out)\n"
    raw = "out = []\n    for item in items:\n        out.append(item)\n    return sorted(out)\n"
    assert done(prefix, suffix, raw) == "out = []\n    for item in items:\n        out.append(item)"


def test_repeating_the_rest_of_the_line_is_trimmed() -> None:
    assert done("x = add(", ")\n", "a, b)") == "a, b"
    assert done("print(f'{name", "}')\n", "}')") == ""


def test_a_closing_bracket_that_was_never_opened_ends_it() -> None:
    assert done("    value = ", "\n", "compute(a)) + 1") == "compute(a)"


def test_unfinished_last_line_of_a_block_is_dropped_at_the_token_limit() -> None:
    prefix = "def f(x):\n    "
    raw = "y = x + 1\n    z = y * 2\n    return comp"
    assert done(prefix, "\n", raw, complete=False) == "y = x + 1\n    z = y * 2"
    assert done(prefix, "\n", raw, complete=True).endswith("return comp")


def test_trailing_whitespace_and_blank_lines_are_trimmed() -> None:
    assert done("def f():\n    ", "\n", "x = 1   \n    return x  \n\n") == "x = 1\n    return x"


def test_empty_and_duplicate_suggestions_are_dropped() -> None:
    assert done("x = ", "\n", "   ") == ""
    assert done("    ", "\n", "\n") == ""
    # a copy of the line above, on a fresh line
    assert done("    result = compute(a, b)\n    ", "\n", "result = compute(a, b)") == ""
    # what the line already holds after the cursor
    assert done("x = ", "value\n", "value") == ""


def test_cut_waits_for_whole_lines_in_a_block() -> None:
    s = shape("def f():\n    ", "\n", PY)
    assert cut("x = 1\n    y", s) is None  # the second line may still grow
    assert cut("x = 1\ndef g", s) is None
    assert cut("x = 1\ndef g():\n", s) == len("x = 1\n")  # where the ending line starts


# --- recorded runaways of the 0.5B ---------------------------------------------------------


def test_recordings_exist() -> None:
    assert len(RUNAWAYS) >= 6
    assert any("\n    def " in r["raw"] or "\ndef " in r["raw"] for r in RUNAWAYS)


@pytest.mark.parametrize("record", RUNAWAYS, ids=[f"{r['file']}-{r['kind']}" for r in RUNAWAYS])
def test_recorded_runaway_is_cut(record: dict[str, Any]) -> None:
    s = shape(record["prefix"], record["suffix"], PY)
    out = finish(record["raw"], s, complete=False)
    lines = out.split("\n")
    # only cuts and trims: what is left is where the raw output starts
    assert record["raw"].lstrip(" \t").startswith(lines[0])
    if not s.multiline:
        assert len(lines) == 1
    cursor_indent = len(s.line_prefix) - len(s.line_prefix.lstrip())
    for line in lines[1:]:
        stripped = line.lstrip()
        if stripped:
            # never a line that leaves the cursor's block: the next method, the next class
            assert len(line) - len(stripped) >= min(s.block_indent, cursor_indent + 1), out
    # never the code that follows the cursor again
    following = next((ln.strip() for ln in record["suffix"].split("\n")[1:] if ln.strip()), "")
    if len(following) > 3:
        assert following not in [ln.strip() for ln in lines], out
    assert all(ln == ln.rstrip() for ln in lines)


# What the rules make of each recording: the body the model wrote, without the method it
# ran on into; nothing where the cursor sits in front of existing code (the model's text
# would be glued to it), nor where it only repeats the rest of the line.
EXPECTED = {
    "textwrap.py-new-body": '"""_munge_whitespace(text : string) -> string',
    "shlex.py-new-body": "self._instream = instream",
    "fractions.py-new-body": "return self._numerator",
    "calendar.py-new-body": "self.month = month",
    "gettext.py-new-body": "pass",
}


@pytest.mark.parametrize("record", RUNAWAYS, ids=[f"{r['file']}-{r['kind']}" for r in RUNAWAYS])
def test_recorded_runaway_expected_suggestion(record: dict[str, Any]) -> None:
    s = shape(record["prefix"], record["suffix"], PY)
    out = finish(record["raw"], s, complete=False)
    assert out == EXPECTED.get(f"{record['file']}-{record['kind']}", "")

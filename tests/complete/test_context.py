"""Prefix/suffix windows: token budgets, line boundaries, a start that holds while typing."""

from __future__ import annotations

import itertools

from mimiverse.complete.context import Budget, chars_for, prefix_window, suffix_window, window
from mimiverse.complete.languages import language_of
from mimiverse.complete.related import RecentFiles, definition_text, names_near

TEXT = "".join(f"line_{i} = compute({i})\n" for i in range(400))


def test_short_text_is_taken_whole() -> None:
    w = window("x = 1\ny = ", "\nz = 3\n", Budget())
    assert (w.prefix, w.suffix, w.prefix_start) == ("x = 1\ny = ", "\nz = 3\n", 0)


def test_prefix_window_fits_budget_and_starts_at_a_line() -> None:
    budget = 200
    prefix, start = prefix_window(TEXT, budget)
    assert len(prefix) <= budget and prefix == TEXT[start:]
    assert TEXT[start - 1] == "\n"
    assert len(prefix) >= budget * 3 // 4 - 40  # at most a quarter (plus a line) is lost


def test_prefix_window_start_holds_while_typing() -> None:
    """Consecutive keystrokes keep the same start (so the KV cache keeps the prompt)."""
    budget = 400
    starts = [prefix_window(TEXT + "x" * k, budget)[1] for k in range(0, 400)]
    changes = sum(a != b for a, b in itertools.pairwise(starts))
    assert changes <= 4  # once per quarter window (100 chars), not per keystroke


def test_suffix_window_ends_at_a_line() -> None:
    suffix = suffix_window(TEXT, 100)
    assert len(suffix) <= 100 and suffix.endswith("\n") and TEXT.startswith(suffix)


def test_budget_in_tokens() -> None:
    b = Budget(prefix_tokens=100, suffix_tokens=10, context_tokens=20)
    assert b.prompt_tokens() == 130
    assert chars_for(100) > 100


def test_names_near_the_cursor_skip_keywords_and_builtins() -> None:
    before = "import os\n\ndef run(config):\n    for item in config.items:\n        total = "
    names = names_near(before, "\n    return total\n")
    assert names[:3] == ["total", "items", "config"]
    assert "for" not in names and "len" not in names and "import" not in names


def test_definition_text_stops_at_the_block_end() -> None:
    lines = ["def a(x,", "      y):", "    return x", "", "def b():", "    pass"]
    assert definition_text(lines, 1) == "def a(x,\n      y):\n    return x"


def test_recent_files_keep_the_lines_around_the_cursor() -> None:
    recent = RecentFiles(keep=2)
    recent.note("a.py", "one\ntwo\nthr", "ee\nfour\n")
    recent.note("b.py", "b", "")
    recent.note("c.py", "c", "")
    assert [s.path for s in recent.others("c.py")] == ["b.py"]  # a.py dropped: keep=2
    recent.note("a.py", "one\ntwo\nthr", "ee\nfour\n")
    assert recent.others("b.py")[-1].text == "one\ntwo\nthree\nfour"


def test_language_by_id_alias_or_extension() -> None:
    assert language_of("typescriptreact").name == "typescript"
    assert language_of("", "src/main.rs").name == "rust"
    assert language_of("cobol", "x.cbl").name == "default"

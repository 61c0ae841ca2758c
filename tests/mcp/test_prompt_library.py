"""Prompts as data files: front matter, arguments, rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mimiverse.agent.tools import default_registry
from mimiverse.errors import BadRequest, ConfigError, NotFound
from mimiverse.mcp.prompt_library import get_prompt, load_prompts, parse_prompt

REVIEW = """+++
title = "Review"
description = "Review code."
[[arguments]]
name = "scope"
description = "What to review."
required = true
[[arguments]]
name = "focus"
description = "What matters most."
default = "correctness"
+++
Review {{scope}}, mostly {{ focus }}. Keep {braces}.
"""


def test_the_shipped_prompts_parse_and_render_with_defaults() -> None:
    prompts = load_prompts()
    assert {"fix_failing_tests", "explain_code", "review_changes"} <= set(prompts)
    for prompt in prompts.values():
        assert prompt.description
        required = {a.name: "x" for a in prompt.arguments if a.required}
        text = prompt.render(required)
        assert "{{" not in text


def test_render_fills_values_and_defaults() -> None:
    prompt = parse_prompt("review", REVIEW)
    assert prompt.title == "Review"
    assert (
        prompt.render({"scope": "main..HEAD"})
        == "Review main..HEAD, mostly correctness. Keep {braces}."
    )
    assert "mostly security" in prompt.render({"scope": "x", "focus": "security"})


def test_render_names_missing_and_unknown_arguments() -> None:
    prompt = parse_prompt("review", REVIEW)
    with pytest.raises(BadRequest, match="needs the argument 'scope'"):
        prompt.render({})
    with pytest.raises(
        BadRequest, match=r"takes no argument 'colour'; its arguments are: scope, focus"
    ):
        prompt.render({"scope": "x", "colour": "red"})


def test_malformed_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="front matter"):
        parse_prompt("bare", "just text\n")
    with pytest.raises(ConfigError, match=r"\{\{colour\}\} is used but not declared"):
        parse_prompt("review", REVIEW + "In {{colour}}.\n")
    (tmp_path / "one.md").write_text("+++\ndescription = 'd'\n+++\nHello\n")
    assert list(load_prompts(tmp_path)) == ["one"]
    with pytest.raises(NotFound, match="the prompts are: one"):
        get_prompt(load_prompts(tmp_path), "two")


def test_the_shipped_prompts_name_only_real_tools() -> None:
    names = set(default_registry().names())
    for prompt in load_prompts().values():
        body = re.sub(r"\{\{.*?\}\}", "", prompt.body)
        mentioned = set(re.findall(r"\b[a-z]+_[a-z_]+\b", body))
        assert mentioned <= names, (prompt.name, mentioned - names)

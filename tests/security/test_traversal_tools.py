"""Every path-taking agent tool refuses every case of the traversal corpus.

The tools run through the real registry with a real ``ToolContext`` (store, sandbox,
changes). A refusal must be a failed result of type ``path_outside_workspace`` whose text
says to use a project-relative path; nothing may be staged, read or written outside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.store import AgentStore
from mimiverse.agent.toolkit import build_tool_context
from mimiverse.agent.tools import default_registry
from mimiverse.agent.tools.base import Registry, ToolContext
from mimiverse.settings import Settings
from tests.security.traversal_corpus import CASES, Arena

Args = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One path argument of one tool: how to put a corpus path in it, and a good path."""

    tool: str
    argument: str
    args: Args
    good: str

    @property
    def id(self) -> str:
        return f"{self.tool}.{self.argument}"


ENTRIES = (
    Entry("read_file", "path", lambda p: {"path": p}, "docs/résumé.md"),
    Entry("list_dir", "path", lambda p: {"path": p}, "docs"),
    Entry("edit_file", "path", lambda p: {"path": p, "search": "a - b", "replace": "a"}, "calc.py"),
    Entry(
        "create_file",
        "path",
        lambda p: {"path": p, "content": "pwned\n", "overwrite": True},
        "数据2.txt",
    ),
    Entry("delete_file", "path", lambda p: {"path": p}, "100%.txt"),
    Entry("rename_file", "src", lambda p: {"src": p, "dst": "moved.txt"}, "calc.py"),
    Entry("rename_file", "dst", lambda p: {"src": "calc.py", "dst": p}, "docs/résumé2.md"),
    Entry(
        "run_command",
        "cwd",
        lambda p: {"command": "cat secret.txt; echo pwned > pwned.txt", "cwd": p},
        "docs",
    ),
    Entry(
        "run_tests", "path", lambda p: {"path": p}, "tests/test_数据.py"
    ),  # not found, not refused
    Entry("git_diff", "path", lambda p: {"path": p}, "calc.py"),
    Entry("git_commit", "paths", lambda p: {"message": "pwned", "paths": [p]}, "calc.py"),
)
PATH_ARGUMENTS = frozenset({"path", "paths", "src", "dst", "cwd", "file", "dir", "root"})
"""Argument names that take a path: every tool argument so named must be an entry above."""


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return Arena(tmp_path / "arena")


@pytest.fixture
async def context(
    arena: Arena, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[[], ToolContext]]:
    """A factory of real tool contexts on the arena's project (one store for all)."""
    settings = make_settings(project_root=arena.root, agent_auto_approve=True)
    store = AgentStore(settings.data_dir / "mimiverse.sqlite3")
    made = 0

    def build() -> ToolContext:
        nonlocal made
        made += 1
        return build_tool_context(settings, arena.root, store=store, session_id=f"t{made}")

    yield build
    store.close()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


def test_every_path_argument_of_every_tool_is_in_the_corpus_run(registry: Registry) -> None:
    """A new tool with a path argument must join ENTRIES (or this fails)."""
    covered = {(e.tool, e.argument) for e in ENTRIES}
    taking = {
        (tool.name, name)
        for tool in registry
        for name in tool.parameters().get("properties", {})
        if name in PATH_ARGUMENTS
    }
    assert taking == covered


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
async def test_the_tool_refuses_every_way_out(
    entry: Entry, registry: Registry, arena: Arena, context: Callable[[], ToolContext]
) -> None:
    ctx = context()
    problems: list[str] = []
    for case in CASES:
        result = await registry.call(entry.tool, entry.args(case.text(arena)), ctx)
        problems += arena.check(case, result.text, repr(result.data))
        if result.ok or result.data.get("type") != "path_outside_workspace":
            problems.append(f"{case.id}: not refused: {result.text[:300]!r}")
        elif "relative to the project root" not in result.text:
            problems.append(f"{case.id}: the refusal does not say what to do: {result.text!r}")
        if ctx.changes.draft() is not None:
            problems.append(f"{case.id}: a change was staged")
    assert not problems, "\n".join(problems)
    assert arena.unchanged_inside()


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
async def test_a_plain_unicode_path_still_works(
    entry: Entry, registry: Registry, arena: Arena, context: Callable[[], ToolContext]
) -> None:
    """The control: the same call with a good path is not refused."""
    result = await registry.call(entry.tool, entry.args(entry.good), context())
    assert result.data.get("type") != "path_outside_workspace", result.text
    assert not arena.check(CASES[0], result.text)

"""The edit tools through the registry: they stage proposals and explain their mistakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.store import AgentStore
from mimiverse.agent.tools.base import Registry, ToolContext, ToolResult
from mimiverse.agent.tools.edit import TOOLS
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "calc.py").write_text(CALC)
    return project


@pytest.fixture
def ctx(root: Path, make_settings: Callable[..., Settings]) -> ToolContext:
    workspace = Workspace(root)
    changes = ChangeManager(workspace, AgentStore.memory(), session_id="s1")
    return ToolContext(workspace=workspace, settings=make_settings(), changes=changes)


async def call(ctx: ToolContext, name: str, **arguments: Any) -> ToolResult:
    return await Registry(tool() for tool in TOOLS).call(name, arguments, ctx)


def test_tools_are_declared_as_mutating_with_documented_fields() -> None:
    assert [t.name for t in TOOLS] == ["edit_file", "create_file", "delete_file", "rename_file"]
    for tool in TOOLS:
        assert tool.mutates
        for spec in tool.parameters()["properties"].values():
            assert spec.get("description")


async def test_edit_file_stages_a_proposal_and_shows_its_diff(root: Path, ctx: ToolContext) -> None:
    result = await call(ctx, "edit_file", path="calc.py", search="a - b", replace="a + b")
    assert result.ok, result.text
    assert result.text.startswith("staged edit to calc.py (proposal, not yet applied):\n")
    assert "-    return a - b\n+    return a + b" in result.text
    assert result.data["path"] == "calc.py" and "+    return a + b" in result.data["diff"]
    assert result.changeset_id is not None and result.data["changeset_id"] == result.changeset_id
    assert (root / "calc.py").read_text() == CALC

    second = await call(ctx, "edit_file", path="./calc.py", search="a * b", replace="b * a")
    assert second.ok and second.changeset_id == result.changeset_id
    assert "+    return a + b" not in second.text  # only this edit's diff
    assert ctx.changes.current_text("calc.py") == CALC.replace("a - b", "a + b").replace(
        "a * b", "b * a"
    )


async def test_auto_approve_still_only_stages(root: Path, ctx: ToolContext) -> None:
    ctx.auto_approve = True
    result = await call(ctx, "edit_file", path="calc.py", search="a - b", replace="a + b")
    assert result.ok
    assert (root / "calc.py").read_text() == CALC
    assert ctx.changes.has_draft()


async def test_search_that_does_not_match_lists_close_lines(root: Path, ctx: ToolContext) -> None:
    result = await call(
        ctx, "edit_file", path="calc.py", search="def add(x, y):\n    return x - y\n", replace=""
    )
    assert not result.ok
    assert result.text.startswith("error: search text not found in calc.py")
    assert "1 | def add(a, b):" in result.text and "2 |     return a - b" in result.text
    assert result.data["type"] == "edit_mismatch"
    assert not ctx.changes.has_draft()
    assert (root / "calc.py").read_text() == CALC


async def test_ambiguous_search_asks_for_more_lines(ctx: ToolContext) -> None:
    result = await call(ctx, "edit_file", path="calc.py", search="def ", replace="async def ")
    assert not result.ok
    assert "matches 2 places in calc.py (lines 1, 5)" in result.text
    assert not ctx.changes.has_draft()


@pytest.mark.parametrize("path", ["../x.py", "/etc/passwd", "out/link.py"])
async def test_paths_outside_the_project_are_refused(
    root: Path, tmp_path: Path, ctx: ToolContext, path: str
) -> None:
    (tmp_path / "x.py").write_text("x = 1\n")
    (root / "out").mkdir()
    (root / "out" / "link.py").symlink_to(tmp_path / "x.py")
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("edit_file", {"path": path, "search": "x = 1", "replace": "x = 2"}),
        ("create_file", {"path": path, "content": "pwned\n", "overwrite": True}),
        ("delete_file", {"path": path}),
        ("rename_file", {"src": "calc.py", "dst": path}),
    ]
    for name, args in attempts:
        result = await call(ctx, name, **args)
        assert not result.ok
        assert "outside the project" in result.text
        assert result.data["type"] == "path_outside_workspace"
    assert (tmp_path / "x.py").read_text() == "x = 1\n"
    assert not ctx.changes.has_draft()


async def test_invalid_arguments_name_the_field(ctx: ToolContext) -> None:
    result = await call(ctx, "edit_file", path="calc.py", search="a - b")
    assert not result.ok
    assert "invalid arguments for edit_file" in result.text and "replace" in result.text
    extra = await call(ctx, "delete_file", path="calc.py", force=True)
    assert not extra.ok and "force" in extra.text


async def test_create_file_refuses_to_overwrite_unless_asked(root: Path, ctx: ToolContext) -> None:
    refused = await call(ctx, "create_file", path="calc.py", content="x = 1\n")
    assert not refused.ok and "overwrite: true" in refused.text

    created = await call(ctx, "create_file", path="pkg/new.py", content="y = 2\n")
    assert created.ok
    assert created.text.startswith("staged new file pkg/new.py (proposal, not yet applied):")
    assert "--- /dev/null\n+++ b/pkg/new.py" in created.text
    again = await call(ctx, "create_file", path="pkg/new.py", content="z = 3\n")
    assert not again.ok  # exists in the draft

    replaced = await call(ctx, "create_file", path="calc.py", content="x = 1\n", overwrite=True)
    assert replaced.ok and "+x = 1" in replaced.text
    assert not (root / "pkg").exists() and (root / "calc.py").read_text() == CALC


async def test_delete_and_rename_then_apply(root: Path, ctx: ToolContext) -> None:
    (root / "old.txt").write_text("bye\n")
    deleted = await call(ctx, "delete_file", path="old.txt")
    assert deleted.ok and "-bye" in deleted.text and "+++ /dev/null" in deleted.text
    taken = await call(ctx, "rename_file", src="calc.py", dst="old.txt")
    assert not taken.ok and "already exists" in taken.text
    renamed = await call(ctx, "rename_file", src="calc.py", dst="lib/calc.py")
    assert renamed.ok, renamed.text
    assert "rename from calc.py\nrename to lib/calc.py" in renamed.text
    missing = await call(ctx, "delete_file", path="nope.txt")
    assert not missing.ok and "no file 'nope.txt'" in missing.text
    assert (root / "old.txt").exists() and (root / "calc.py").exists()

    changeset = ctx.changes.propose()
    assert changeset is not None and changeset.id == renamed.changeset_id
    ctx.changes.decide(changeset.id, all=True)
    ctx.changes.apply(changeset.id)
    assert not (root / "old.txt").exists() and not (root / "calc.py").exists()
    assert (root / "lib" / "calc.py").read_text() == CALC


def test_an_edit_that_breaks_the_syntax_says_so() -> None:
    from mimiverse.agent.tools.edit import syntax_warning

    good = "def add(a, b):\n    return a + b\n"
    broken = "def add(a, b):\n    return (a + b\n"
    warning = syntax_warning("calc.py", good, broken)
    assert "no longer parses as python" in warning and "line 2" in warning
    assert syntax_warning("calc.py", good, good.replace("+", "-")) == ""
    assert syntax_warning("calc.py", broken, broken + "x = 1\n") == ""  # was broken already
    assert syntax_warning("notes.txt", None, "((") == ""

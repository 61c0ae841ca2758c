"""read_file and list_dir against a real project on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.tools.base import OBSERVATION_LIMIT, Registry, ToolContext
from mimiverse.agent.tools.files import LIST_ENTRIES, READ_LINES, STAGED_NOTE, ListDir, ReadFile
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "README.md").write_text("# Calc\n")
    return root


@pytest.fixture
def ctx(root: Path, make_settings: Callable[..., Settings]) -> ToolContext:
    workspace = Workspace(root)
    return ToolContext(
        workspace=workspace,
        settings=make_settings(project_root=root),
        changes=ChangeManager(workspace),
    )


@pytest.fixture
def registry() -> Registry:
    return Registry([ReadFile(), ListDir()])


async def test_read_file_numbers_lines(registry: Registry, ctx: ToolContext) -> None:
    result = await registry.call("read_file", {"path": "src/calc.py"}, ctx)
    assert result.ok
    assert result.text == (
        "src/calc.py (lines 1-2 of 2)\n     1\tdef add(a, b):\n     2\t    return a + b"
    )
    assert result.data == {
        "path": "src/calc.py",
        "start_line": 1,
        "end_line": 2,
        "total_lines": 2,
        "staged": False,
        "truncated": False,
    }
    assert not ReadFile.mutates and not ListDir.mutates


async def test_long_files_come_in_pages(registry: Registry, ctx: ToolContext, root: Path) -> None:
    (root / "long.py").write_text("".join(f"x{n} = {n}\n" for n in range(1, 1001)))
    first = await registry.call("read_file", {"path": "long.py"}, ctx)
    assert first.text.startswith(f"long.py (lines 1-{READ_LINES} of 1000)")
    assert f"start_line={READ_LINES + 1}" in first.text
    assert first.data["truncated"]

    page = await registry.call("read_file", {"path": "long.py", "start_line": 990}, ctx)
    assert page.text.splitlines()[0] == "long.py (lines 990-1000 of 1000)"
    assert page.text.splitlines()[1] == "   990\tx990 = 990"
    assert not page.data["truncated"]

    window = await registry.call(
        "read_file", {"path": "long.py", "start_line": 5, "end_line": 7}, ctx
    )
    assert [line.split("\t")[1] for line in window.text.splitlines()[1:4]] == [
        "x5 = 5",
        "x6 = 6",
        "x7 = 7",
    ]
    assert "start_line=8" in window.text

    past = await registry.call("read_file", {"path": "long.py", "start_line": 2000}, ctx)
    assert not past.ok
    assert "1000 lines" in past.text


async def test_wide_files_are_cut_before_the_observation_limit(
    registry: Registry, ctx: ToolContext, root: Path
) -> None:
    (root / "wide.txt").write_text("".join(f"{n:04d}" + "w" * 196 + "\n" for n in range(400)))
    (root / "one_line.min.js").write_text("x" * 100_000)
    wide = await registry.call("read_file", {"path": "wide.txt"}, ctx)
    assert len(wide.text) < OBSERVATION_LIMIT
    assert wide.observation() == wide.text, "the note on reading on is never cut off"
    shown = wide.data["end_line"]
    assert 10 < shown < 400
    assert f"start_line={shown + 1}" in wide.text

    one = await registry.call("read_file", {"path": "one_line.min.js"}, ctx)
    assert one.ok and len(one.text) < 3000
    assert "more characters]" in one.text


async def test_read_file_shows_staged_edits(
    registry: Registry, ctx: ToolContext, root: Path
) -> None:
    ctx.changes.stage_edit("src/calc.py", "a + b", "a - b")
    ctx.changes.stage_write("src/new.py", "NEW = 1\n")
    result = await registry.call("read_file", {"path": "src/calc.py"}, ctx)
    assert STAGED_NOTE in result.text.splitlines()[0]
    assert "     2\t    return a - b" in result.text
    assert result.data["staged"]
    assert "a + b" in (root / "src" / "calc.py").read_text(), "the disk is untouched"
    new = await registry.call("read_file", {"path": "src/new.py"}, ctx)
    assert new.ok and "     1\tNEW = 1" in new.text


async def test_read_file_refuses_what_it_cannot_show(
    registry: Registry, ctx: ToolContext, root: Path, tmp_path: Path
) -> None:
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")

    binary = await registry.call("read_file", {"path": "logo.png"}, ctx)
    assert not binary.ok and "binary" in binary.text

    folder = await registry.call("read_file", {"path": "src"}, ctx)
    assert not folder.ok and "list_dir" in folder.text

    missing = await registry.call("read_file", {"path": "src/calk.py"}, ctx)
    assert not missing.ok
    assert "src/calc.py" in missing.text, "similar names from the same folder"
    assert missing.data["type"] == "not_found"

    for outside in ("../secret.txt", str(tmp_path / "secret.txt"), "link.txt", "src/../../x"):
        escaped = await registry.call("read_file", {"path": outside}, ctx)
        assert not escaped.ok, outside
        assert "outside the project" in escaped.text
        assert "s3cret" not in escaped.text


async def test_read_file_argument_errors_name_the_field(
    registry: Registry, ctx: ToolContext
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "start_line": {"path": "src/calc.py", "start_line": 0},
        "end_line": {"path": "src/calc.py", "start_line": 5, "end_line": 2},
        "path": {},
        "file": {"file": "src/calc.py"},
    }
    for field, args in cases.items():
        result = await registry.call("read_file", args, ctx)
        assert not result.ok
        assert field in result.text, (field, result.text)
        assert result.text.startswith("error: invalid arguments for read_file")


async def test_read_file_of_an_empty_file(registry: Registry, ctx: ToolContext, root: Path) -> None:
    (root / "empty.py").write_text("")
    result = await registry.call("read_file", {"path": "empty.py"}, ctx)
    assert result.ok and result.text == "empty.py (empty file)"


async def test_list_dir_marks_what_the_index_skips(
    registry: Registry, ctx: ToolContext, root: Path
) -> None:
    (root / ".gitignore").write_text("*.log\nbuild_out/\n")
    (root / ".mimiignore").write_text("fixtures/\n")
    (root / "src" / "debug.log").write_text("log\n")
    (root / "src" / "blob.dat").write_bytes(b"\0" * 10)
    (root / "src" / "pkg").mkdir()
    (root / "src" / "pkg" / "deep.py").write_text("d\n")
    (root / "src" / "pkg" / "deeper").mkdir()
    (root / "build_out").mkdir()
    (root / "fixtures").mkdir()
    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "big.txt").write_text("b" * 2000)
    ctx.settings.index_max_file_bytes = 1000

    result = await registry.call("list_dir", {}, ctx)
    assert result.ok
    lines = result.text.splitlines()
    assert lines[0] == "./ (project root)"
    text = result.text
    assert "  build_out/  (skipped: ignored by .gitignore)" in lines
    assert "  fixtures/  (skipped: ignored by .mimiignore)" in lines
    assert "  node_modules/  (skipped: dependencies, caches or version control)" in lines
    assert "    debug.log  4 B  (ignored by .gitignore)" in lines
    assert "    blob.dat  10 B  (binary)" in lines
    assert "  big.txt  2.0 KB  (too large to index)" in lines
    assert "    calc.py  32 B" in lines
    assert "    pkg/  (2 entries)" in lines, "depth 2 stops here, saying what is inside"
    assert "left-pad" not in text
    assert text.index("  src/") < text.index("  README.md"), "folders first"

    sub = await registry.call("list_dir", {"path": "src", "depth": 3}, ctx)
    assert sub.text.splitlines()[0] == "src/"
    assert "  debug.log  4 B  (ignored by .gitignore)" in sub.text.splitlines(), (
        "the root's rules apply in a subfolder"
    )
    assert "    deep.py  2 B" in sub.text.splitlines()


async def test_list_dir_caps_entries_keeping_the_top_level(
    registry: Registry, ctx: ToolContext, root: Path
) -> None:
    for n in range(LIST_ENTRIES + 50):
        (root / "src" / f"m{n:03d}.py").write_text("")
    result = await registry.call("list_dir", {}, ctx)
    assert "README.md" in result.text, "every top-level entry is shown before deeper ones"
    total = 2 + 1 + LIST_ENTRIES + 50  # src/, README.md; calc.py and the new files in src
    assert f"[{total - LIST_ENTRIES} more entries not shown" in result.text
    assert f"    … {total - LIST_ENTRIES} more" in result.text.splitlines()
    assert result.data["truncated"]
    assert result.data["entries"] == LIST_ENTRIES


async def test_list_dir_bad_input(
    registry: Registry, ctx: ToolContext, root: Path, tmp_path: Path
) -> None:
    os.symlink(tmp_path, root / "up")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"path": "src/calc.py"}, "read_file"),
        ({"path": "nowhere"}, "no file"),
        ({"path": ".."}, "outside the project"),
        ({"path": "up"}, "outside the project"),
        ({"depth": 0}, "depth"),
        ({"depth": "deep"}, "depth"),
    ]
    for args, expected in cases:
        result = await registry.call("list_dir", args, ctx)
        assert not result.ok, args
        assert expected in result.text, (args, result.text)

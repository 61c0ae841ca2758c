"""`mimiverse mcp` as a real subprocess, driven by the official SDK client over stdio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcp import Client, StdioServerParameters

MIMIVERSE = Path(sys.executable).with_name("mimiverse")
CALC = "def add(a, b):\n    return a - b\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def mimiverse_mcp(project: Path, data_dir: Path) -> Client:
    """The SDK client over a `mimiverse mcp --root <project>` subprocess (hermetic settings)."""
    params = StdioServerParameters(
        command=str(MIMIVERSE),
        args=["mcp", "--root", str(project)],
        env={"MIMI_DATA_DIR": str(data_dir), "MIMI_CONFIG": str(data_dir / "absent.toml")},
    )
    return Client(params, read_timeout_seconds=60)


async def test_stdio_server_lists_calls_and_proposes(project: Path, tmp_path: Path) -> None:
    async with mimiverse_mcp(project, tmp_path / "data") as client:
        assert client.server_info is not None and client.server_info.name == "mimiverse"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"read_file", "list_dir", "edit_file"} <= set(tools)
        read_hint = tools["read_file"].annotations
        edit_hint = tools["edit_file"].annotations
        assert read_hint is not None and read_hint.read_only_hint is True
        assert edit_hint is not None and edit_hint.read_only_hint is False
        assert "path" in tools["read_file"].input_schema["properties"]

        listed = await client.call_tool("list_dir", {"path": "."})
        assert not listed.is_error and "calc.py" in listed.content[0].text  # type: ignore[union-attr]
        read = await client.call_tool("read_file", {"path": "calc.py"})
        assert not read.is_error
        assert "return a - b" in read.content[0].text  # type: ignore[union-attr]

        edit = await client.call_tool(
            "edit_file", {"path": "calc.py", "search": "a - b", "replace": "a + b"}
        )
        assert not edit.is_error, edit.content
        text = edit.content[0].text  # type: ignore[union-attr]
        assert "proposed changeset" in text and "not applied" in text
        assert (project / "calc.py").read_text() == CALC  # nothing written

        invalid = await client.call_tool("read_file", {"path": "calc.py", "start_line": "x"})
        assert invalid.is_error
        assert "invalid arguments for read_file: start_line:" in invalid.content[0].text  # type: ignore[union-attr]
        outside = await client.call_tool("read_file", {"path": "../../etc/passwd"})
        assert outside.is_error and "outside the project" in outside.content[0].text  # type: ignore[union-attr]

        resources = {r.name for r in (await client.list_resources()).resources}
        assert "calc.py" in resources
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "fix_failing_tests" in prompts


def test_a_missing_root_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = {"MIMI_DATA_DIR": str(tmp_path / "data"), "MIMI_CONFIG": str(tmp_path / "absent.toml")}
    done = subprocess.run(
        [str(MIMIVERSE), "mcp", "--root", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 1
    assert "pass --root <project folder>" in done.stderr

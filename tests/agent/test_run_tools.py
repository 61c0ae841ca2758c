"""run_command and run_tests through the registry, in the real sandbox."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.tools.base import Registry, ToolContext
from mimiverse.agent.tools.run import TOOLS, detect_test_command
from mimiverse.errors import ToolError
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace
from mimiverse.workspace.redact import Redactor
from mimiverse.workspace.sandbox import Sandbox

PASSING_AND_FAILING = (
    "def test_add():\n    assert 1 + 2 == 3\n\n\ndef test_sub():\n    assert 3 == 4\n"
)

MakeCtx = Callable[..., ToolContext]


@pytest.fixture(autouse=True)
def _bwrap_installed() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bwrap not found: run `apt-get install bubblewrap`", pytrace=False)


@pytest.fixture
def registry() -> Registry:
    return Registry(tool() for tool in TOOLS)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    return path


@pytest.fixture
def make_ctx(root: Path, make_settings: Callable[..., Settings]) -> MakeCtx:
    def factory(sandbox: bool = True, **values: Any) -> ToolContext:
        settings = make_settings(**values)
        workspace = Workspace(root)
        return ToolContext(
            workspace=workspace,
            settings=settings,
            changes=ChangeManager(workspace),
            sandbox=Sandbox.from_settings(settings, root) if sandbox else None,
            redact=Redactor(),
        )

    return factory


def pytest_project(root: Path) -> None:
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(PASSING_AND_FAILING)


async def test_run_command_reports_exit_code_and_output(
    registry: Registry, make_ctx: MakeCtx
) -> None:
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    ctx = make_ctx()
    ctx.on_output = sink
    result = await registry.call("run_command", {"command": "echo hi; exit 3"}, ctx)
    assert not result.ok
    assert result.text.startswith("$ echo hi; exit 3\nexit code 3")
    assert result.text.endswith("hi\n") and chunks == ["hi\n"]
    assert result.data["exit_code"] == 3 and result.data["killed"] is None
    ok = await registry.call("run_command", {"command": "pwd", "cwd": "."}, ctx)
    assert ok.ok and ok.text.endswith(f"{ctx.workspace.root}\n")


async def test_run_command_timeout_is_capped_by_the_server_limit(
    registry: Registry, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx(sandbox_wall_s=1)
    args = {"command": "sleep 30", "timeout_s": 100}
    result = await registry.call("run_command", args, ctx)
    assert not result.ok and result.data["killed"] == "time limit"
    assert "killed: time limit" in result.text and "capped at 1 s" in result.text


async def test_run_command_refuses_a_cwd_outside_and_bad_args(
    registry: Registry, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx()
    outside = await registry.call("run_command", {"command": "ls", "cwd": "../"}, ctx)
    assert not outside.ok and "outside the project" in outside.text
    unknown = await registry.call("run_command", {"command": "ls", "shell": "zsh"}, ctx)
    assert not unknown.ok and "invalid arguments for run_command" in unknown.text


async def test_without_a_sandbox_the_tools_say_how_to_get_one(
    registry: Registry, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx(sandbox=False)
    for name, args in (("run_command", {"command": "ls"}), ("run_tests", {})):
        result = await registry.call(name, args, ctx)
        assert not result.ok and "apt-get install bubblewrap" in result.text


async def test_run_command_output_is_redacted(
    registry: Registry, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_TEST_DEPLOY_TOKEN", "deploy-token-value")
    result = await registry.call("run_command", {"command": "echo deploy-token-value"}, make_ctx())
    assert "deploy-token-value" not in result.text
    assert "[REDACTED:MIMI_TEST_DEPLOY_TOKEN]" in result.text


async def test_run_tests_counts_and_names_the_failure(
    registry: Registry, make_ctx: MakeCtx, root: Path
) -> None:
    pytest_project(root)
    result = await registry.call("run_tests", {}, make_ctx())
    assert not result.ok
    assert result.text.splitlines()[0] == (
        "1 failed, 1 passed: tests/test_calc.py::test_sub — assert 3 == 4"
    )
    data = result.data
    assert data["passed"] is False and data["exit_code"] == 1 and data["killed"] is None
    assert data["counts"]["failed"] == 1 and data["counts"]["passed"] == 1
    assert data["failures"] == [
        {"test": "tests/test_calc.py::test_sub", "message": "assert 3 == 4"}
    ]
    assert "-m pytest -q -x" in data["command"]
    assert not list(root.rglob("__pycache__")) and not (root / ".pytest_cache").exists()


async def test_run_tests_narrowed_to_one_test(
    registry: Registry, make_ctx: MakeCtx, root: Path
) -> None:
    pytest_project(root)
    args = {"path": "tests/test_calc.py::test_add"}
    result = await registry.call("run_tests", args, make_ctx())
    assert result.ok and result.text.startswith("tests passed: 1 passed")
    assert result.data["counts"]["passed"] == 1 and result.data["failures"] == []
    outside = await registry.call("run_tests", {"path": "../x.py"}, make_ctx())
    assert not outside.ok and "outside the project" in outside.text


async def test_run_tests_uses_the_configured_or_given_command(
    registry: Registry, make_ctx: MakeCtx, root: Path
) -> None:
    pytest_project(root)
    ctx = make_ctx(agent_test_command="echo configured runner; exit 0")
    result = await registry.call("run_tests", {}, ctx)
    assert result.ok and result.data["command"] == "echo configured runner; exit 0"
    assert "configured runner" in result.text
    given = await registry.call("run_tests", {"command": "echo '3 passed in 0.01s'"}, ctx)
    assert given.ok and given.data["counts"] == {"passed": 3}


async def test_run_tests_with_nothing_to_detect(registry: Registry, make_ctx: MakeCtx) -> None:
    result = await registry.call("run_tests", {}, make_ctx())
    assert not result.ok and result.text.startswith("error: no test runner found")
    assert "MIMI_AGENT_TEST_COMMAND" in result.text


async def test_run_tests_killed_by_the_time_limit(
    registry: Registry, make_ctx: MakeCtx, root: Path
) -> None:
    ctx = make_ctx(agent_test_command="sleep 30", sandbox_wall_s=1)
    result = await registry.call("run_tests", {}, ctx)
    assert not result.ok and result.data["killed"] == "time limit"
    assert result.text.startswith("tests killed: time limit")


def test_detection_order(root: Path) -> None:
    with pytest.raises(ToolError):
        detect_test_command(root)
    (root / "Cargo.toml").write_text("[package]\nname='x'\n")
    assert detect_test_command(root).command == "cargo test"
    (root / "go.mod").write_text("module x\n")
    assert detect_test_command(root).command == "go test ./..."
    (root / "package.json").write_text('{"scripts": {"test": "jest"}}')
    assert detect_test_command(root).command == "npm test --silent"
    (root / "setup.cfg").write_text("[tool:pytest]\naddopts = -q\n")
    assert detect_test_command(root).runner == "pytest"
    venv_python = root / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert detect_test_command(root).command.startswith(f"{venv_python} -m pytest")
    assert detect_test_command(root, "make test").command == "make test"


def test_npm_placeholder_script_is_not_a_test_runner(root: Path) -> None:
    (root / "package.json").write_text(
        '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'
    )
    with pytest.raises(ToolError):
        detect_test_command(root)


def test_pyproject_pytest_section(root: Path) -> None:
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    assert detect_test_command(root).runner == "pytest"

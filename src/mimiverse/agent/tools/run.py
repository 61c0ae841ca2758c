"""Tools that run commands in the sandbox: ``run_command`` and ``run_tests``.

Both execute code from the project, so both declare ``mutates = True`` — ``run_tests``
changes nothing by intent, but a test suite (or a ``conftest.py``) can write anywhere in
the project, and runtimes that gate mutating tools must gate it too.
"""

from __future__ import annotations

import configparser
import json
import shlex
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from mimiverse.agent.tools._common import project_path
from mimiverse.agent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.agent.tools.testparse import TestReport, parse
from mimiverse.errors import ToolError
from mimiverse.workspace.paths import check_relative
from mimiverse.workspace.sandbox import INSTALL_HINT, RunResult, Sandbox

TAIL_CHARS = 6_000
"""Output a model sees after the verdict line (the end of a run says the most)."""
PYTEST_ARGS = "-m pytest -q -x --no-header -p no:cacheprovider"
NPM_DEFAULT_TEST = 'echo "Error: no test specified" && exit 1'


def _sandbox(ctx: ToolContext) -> Sandbox:
    if ctx.sandbox is None:
        raise ToolError(f"commands cannot run here: no sandbox is available; {INSTALL_HINT}")
    return ctx.sandbox


def _status(result: RunResult) -> str:
    """``exit code 1 (2.3 s)`` or ``killed: time limit — …``."""
    if result.killed:
        line = f"killed: {result.killed} — {result.reason}"
        if result.exit_code is not None:
            line += f" (exit code {result.exit_code})"
        return line
    return f"exit code {result.exit_code} ({result.duration_s:.1f} s)"


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit} earlier characters left out …]\n{text[-limit:]}"


class RunCommandArgs(ToolArgs):
    command: str = Field(
        description="Shell command line, run by /bin/sh inside the project (no network).",
        min_length=1,
    )
    cwd: str = Field(default=".", description="Directory to run in, relative to the project root.")
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds before the command is killed (at most the server's limit).",
    )


class RunCommand(Tool):
    """Run one shell command in the sandbox and report its exit code and output."""

    name: ClassVar[str] = "run_command"
    description: ClassVar[str] = (
        "Run a shell command in the project (sandboxed: project dir writable, no network, "
        "time and memory limits). Returns the exit code and the output."
    )
    Args: ClassVar[type[ToolArgs]] = RunCommandArgs
    mutates: ClassVar[bool] = True

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        sandbox = _sandbox(ctx)
        limits, note = sandbox.limits, ""
        if args.timeout_s is not None:
            wall = min(args.timeout_s, ctx.settings.sandbox_wall_s)
            if wall < args.timeout_s:
                note = f" (timeout capped at {wall:g} s, the server's limit)"
            limits = replace(limits, wall_s=wall)
        result = await sandbox.run(
            args.command, cwd=args.cwd, limits=limits, on_output=ctx.on_output
        )
        text = f"$ {args.command}\n{_status(result)}{note}\n{result.output or '(no output)'}"
        return ToolResult(text=text, ok=result.ok, data=_data(result))


def _data(result: RunResult) -> dict[str, Any]:
    return {
        "command": result.command,
        "exit_code": result.exit_code,
        "killed": result.killed,
        "reason": result.reason,
        "truncated": result.truncated,
        "duration_s": round(result.duration_s, 3),
        "sandboxed": result.sandboxed,
    }


# --- run_tests ---------------------------------------------------------------------------


@dataclass
class TestCommand:
    """A test command line and the runner it belongs to."""

    __test__ = False  # not a pytest test class

    runner: str
    command: str


def detect_test_command(root: Path, configured: str = "") -> TestCommand:
    """The configured command, else the runner the project's files point to."""
    if configured.strip():
        return TestCommand("configured", configured.strip())
    if _uses_pytest(root):
        venv_python = root / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
        return TestCommand("pytest", f"{shlex.quote(python)} {PYTEST_ARGS}")
    if _npm_test_script(root):
        return TestCommand("npm", "npm test --silent")
    if (root / "go.mod").is_file():
        return TestCommand("go", "go test ./...")
    if (root / "Cargo.toml").is_file():
        return TestCommand("cargo", "cargo test")
    raise ToolError(
        "no test runner found (looked for pytest config or tests/test_*.py, package.json "
        "scripts.test, go.mod, Cargo.toml); pass `command`, or set MIMI_AGENT_TEST_COMMAND "
        "(agent_test_command in mimiverse.toml) to the command that runs the tests"
    )


def _uses_pytest(root: Path) -> bool:
    if (root / "pytest.ini").is_file() or (root / "conftest.py").is_file():
        return True
    try:
        pyproject = tomllib.loads((root / "pyproject.toml").read_text())
        if "pytest" in pyproject.get("tool", {}):
            return True
    except (OSError, tomllib.TOMLDecodeError):
        pass
    for name, section in (("setup.cfg", "tool:pytest"), ("tox.ini", "pytest")):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(root / name)
        except configparser.Error:
            continue
        if parser.has_section(section):
            return True
    if any(root.glob("test_*.py")):
        return True
    return any(
        any(d.rglob(pattern))
        for d in (root / "tests", root / "test")
        if d.is_dir()
        for pattern in ("test_*.py", "*_test.py")
    )


def _npm_test_script(root: Path) -> bool:
    try:
        package = json.loads((root / "package.json").read_text())
    except (OSError, ValueError):
        return False
    script = package.get("scripts", {}).get("test") if isinstance(package, dict) else None
    return isinstance(script, str) and script.strip() not in ("", NPM_DEFAULT_TEST)


def _narrow(ctx: ToolContext, test: TestCommand, path: str) -> str:
    """``test.command`` limited to ``path`` (a file, a directory or a test id)."""
    target = path.split("::", 1)[0]
    if test.runner in ("pytest", "go"):
        ctx.workspace.resolve(target, must_exist=True)
    else:  # a name pattern for some runners: only its text is checked
        check_relative(target)
    if test.runner == "go":
        rel = project_path(ctx, target)
        return f"go test ./{rel}/..." if rel != "." else test.command
    if test.runner == "npm":
        return f"{test.command} -- {shlex.quote(path)}"
    return f"{test.command} {shlex.quote(path)}"


class RunTestsArgs(ToolArgs):
    path: str | None = Field(
        default=None,
        description="Run only these tests: a file, a directory or a test id "
        "(e.g. 'tests/test_calc.py::test_add').",
    )
    command: str | None = Field(
        default=None,
        description="Test command to run instead of the detected one (e.g. 'make test').",
    )


class RunTests(Tool):
    """Run the project's tests in the sandbox and say what failed and why.

    Declared ``mutates = True``: it executes project code (see the module docstring).
    """

    name: ClassVar[str] = "run_tests"
    description: ClassVar[str] = (
        "Run the project's tests (pytest, npm test, go test or cargo test, detected; or "
        "the configured command). Returns counts, failing tests with their messages, and "
        "the end of the output."
    )
    Args: ClassVar[type[ToolArgs]] = RunTestsArgs
    mutates: ClassVar[bool] = True

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        sandbox = _sandbox(ctx)
        if args.command:
            test = TestCommand("configured", args.command.strip())
        else:
            test = detect_test_command(ctx.workspace.root, ctx.settings.agent_test_command)
        command = _narrow(ctx, test, args.path) if args.path else test.command
        result = await sandbox.run(command, on_output=ctx.on_output)
        report = parse(result.output)
        passed = result.ok
        data = {
            "command": command,
            "exit_code": result.exit_code,
            "passed": passed,
            "killed": result.killed,
            **report.as_dict(),
        }
        text = f"{_verdict(result, report)}\n$ {command}\n{_tail(result.output)}"
        return ToolResult(text=text, ok=passed, data=data)


def _verdict(result: RunResult, report: TestReport) -> str:
    """One line first: ``2 failed, 3 passed: tests/t.py::test_add — assert 3 == 4``."""
    summary = report.summary()
    if result.killed:
        head = f"tests killed: {result.killed} — {result.reason}"
        return f"{head} ({summary} before that)" if summary else head
    if not summary:
        if result.ok:
            return "tests passed (exit code 0; no test summary found in the output)"
        if report.runner == "pytest":
            return f"no tests ran (exit code {result.exit_code})"
        return f"tests failed: exit code {result.exit_code} (no test summary found in the output)"
    if result.ok:
        return f"tests passed: {summary}"
    if report.failures:
        first = report.failures[0]
        more = f" (+{len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        why = f" — {first.message}" if first.message else ""
        return f"{summary}: {first.test}{why}{more}"
    return f"tests failed: {summary} (exit code {result.exit_code})"


TOOLS = (RunCommand, RunTests)

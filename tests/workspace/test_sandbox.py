"""The sandbox with real bubblewrap and real cgroups: isolation, limits, output, errors."""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.errors import NotFound, PathOutsideWorkspace, SandboxError
from mimiverse.workspace.limits import cgroup_parents
from mimiverse.workspace.redact import Redactor
from mimiverse.workspace.sandbox import Limits, Sandbox
from tests.workspace.sandboxing import needs_cgroups

PY = shlex.quote(sys.executable)
pytestmark = pytest.mark.usefixtures("bwrap_installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    return root


@pytest.fixture
def make(project: Path, cgroup_parent: str) -> Callable[..., Sandbox]:
    def factory(network: bool = False, **limits: Any) -> Sandbox:
        return Sandbox(
            project, limits=Limits(**limits), network=network, cgroup_parent=cgroup_parent
        )

    return factory


async def test_runs_a_command_in_the_project(make: Callable[..., Sandbox], project: Path) -> None:
    result = await make().run("pwd; echo out; echo err >&2; exit 3")
    assert result.output == f"{project}\nout\nerr\n"
    assert result.exit_code == 3 and not result.ok and result.killed is None
    assert (await make().run(["/bin/echo", "a b"], cwd="sub")).output == "a b\n"
    assert (await make().run("pwd", cwd="sub")).output == f"{project / 'sub'}\n"


async def test_no_network_unless_granted(make: Callable[..., Sandbox]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        probe = f"{PY} -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'"
        probe += " && echo connected"
        denied = await make().run(probe)
        granted = await make(network=True).run(probe)
    assert denied.exit_code != 0 and "connected" not in denied.output
    assert granted.ok and granted.output.strip().endswith("connected")


async def test_writes_outside_the_project_fail(
    make: Callable[..., Sandbox], project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    marker = f"mimi-{uuid.uuid4().hex[:8]}"
    script = "; ".join(
        [f"touch /{d}/{marker}" for d in ("usr", "etc", "root", "")]
        + [f"cat {outside}/secret.txt", f"touch {outside}/{marker}"]
        + ["cat /etc/shadow", "ls -A $HOME", "touch inside.txt /tmp/scratch"]
    )
    result = await make().run(script)
    assert (project / "inside.txt").exists()
    for host in (Path("/usr"), Path("/etc"), Path("/root"), Path("/"), outside):
        assert not (host / marker).exists()
    assert "host secret" not in result.output and "No such file" in result.output
    assert result.output.count("Read-only file system") == 4
    assert "root:" not in result.output  # /etc/shadow is masked
    assert not Path("/tmp/scratch").exists()


async def test_home_and_environment_are_not_the_servers(
    make: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_TEST_API_TOKEN", "tok-very-secret-123")
    result = await make().run('env; ls -A /root; echo "home=$HOME"', env={"EXTRA": "given"})
    assert "tok-very-secret-123" not in result.output
    assert "MIMI_TEST_API_TOKEN" not in result.output
    assert "EXTRA=given" in result.output and "home=/tmp/home" in result.output
    assert ".bashrc" not in result.output and ".config" not in result.output


async def test_output_is_redacted_and_streamed(
    make: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_TEST_API_TOKEN", "tok-very-secret-123")
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    key = "ghp_" + "a1B2" * 9
    sandbox = make()
    assert isinstance(sandbox.redact, Redactor)
    script = f"echo one; sleep 0.3; echo tok-very-secret-123 >&2; sleep 0.3; echo {key}"
    result = await sandbox.run(script, on_output=sink)
    expected = "one\n[REDACTED:MIMI_TEST_API_TOKEN]\n[REDACTED:GITHUB_TOKEN]\n"
    assert result.output == expected
    assert "".join(chunks) == expected
    assert chunks[0] == "one\n" and len(chunks) == 3  # live, in order, line by line


async def test_output_keeps_head_and_tail(make: Callable[..., Sandbox]) -> None:
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    result = await make(output_bytes=1000).run("seq 1 20000", on_output=sink)
    assert result.truncated and result.ok
    assert result.output.startswith("1\n2\n3\n") and result.output.endswith("19999\n20000\n")
    assert "characters cut from the middle" in result.output
    assert len(result.output) < 1100
    streamed = "".join(chunks)
    assert streamed.startswith("1\n2\n") and streamed.endswith("20000\n")
    assert "not shown" in streamed and len(streamed) < 2100


async def test_wall_time_kills_the_whole_tree(make: Callable[..., Sandbox]) -> None:
    marker = f"999.{uuid.uuid4().int % 10**6}"
    result = await make(wall_s=2).run(f"sleep {marker} & sleep {marker}; echo never")
    assert result.killed == "time limit" and result.timed_out
    assert result.exit_code is None and "MIMI_SANDBOX_WALL_S" in result.reason
    assert "never" not in result.output
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == ""


async def test_cancelling_a_run_kills_it(make: Callable[..., Sandbox]) -> None:
    marker = f"998.{uuid.uuid4().int % 10**6}"
    started: list[str] = []

    async def sink(text: str) -> None:
        started.append(text)

    task = asyncio.create_task(make().run(f"echo go; sleep {marker}", on_output=sink))
    while not started:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == ""


@needs_cgroups
async def test_fork_bomb_is_stopped_by_the_process_limit(make: Callable[..., Sandbox]) -> None:
    bomb = f"{PY} -c 'import os\nwhile True: os.fork()'"
    result = await make(pids=64, wall_s=60).run(bomb)
    assert result.killed == "process limit", result.output[-500:]
    shell_bomb = await make(pids=64, wall_s=60).run("bash -c ':(){ :|:& };:'; sleep 999")
    assert shell_bomb.killed == "process limit"
    assert (await make().run("echo still fine")).output == "still fine\n"


@needs_cgroups
async def test_memory_limit(make: Callable[..., Sandbox]) -> None:
    hog = f"{PY} -c 'b = bytearray(2 * 1024**3)'; echo exit=$?"
    result = await make(memory_mb=256).run(hog)
    assert result.killed == "memory limit"
    assert "exit=137" in result.output and "256 MiB" in result.reason


@needs_cgroups
async def test_cpu_limit_counts_every_process(make: Callable[..., Sandbox]) -> None:
    spin = f"{PY} -c 'while True: pass'"
    result = await make(cpu_s=1, wall_s=60).run(f"{spin} & {spin} & wait")
    assert result.killed == "cpu limit"


async def test_without_cgroups_rlimits_and_the_wall_clock_still_apply(project: Path) -> None:
    sandbox = Sandbox(project, limits=Limits(wall_s=2, memory_mb=256), use_cgroups=False)
    assert sandbox.describe()["limits"].startswith("prlimit")
    hog = await sandbox.run(f"{PY} -c 'bytearray(2 * 1024**3)'")
    assert hog.exit_code == 1 and "MemoryError" in hog.output
    assert (await sandbox.run("sleep 999")).killed == "time limit"


async def test_cwd_must_stay_in_the_project(
    make: Callable[..., Sandbox], project: Path, tmp_path: Path
) -> None:
    (project / "link").symlink_to(tmp_path)
    for cwd in ("..", "/etc", "link", "sub/../.."):
        with pytest.raises(PathOutsideWorkspace):
            await make().run("pwd", cwd=cwd)
    with pytest.raises(NotFound):
        await make().run("pwd", cwd="missing")


def test_missing_bwrap_names_the_fix(project: Path, make_settings: Callable[..., Any]) -> None:
    with pytest.raises(SandboxError) as caught:
        Sandbox(project, bwrap="/nonexistent/bwrap")
    assert "apt-get install bubblewrap" in caught.value.message
    assert "MIMI_SANDBOX_UNSAFE_NO_SANDBOX=true" in caught.value.message
    with pytest.raises(SandboxError):
        Sandbox.from_settings(make_settings(), project, bwrap="/nonexistent/bwrap")


async def test_unsafe_mode_says_so(
    project: Path, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_TEST_PASSWORD", "hunter2-hunter2")
    settings = make_settings(sandbox_unsafe_no_sandbox=True, sandbox_wall_s=5)
    sandbox = Sandbox.from_settings(settings, project, bwrap="/nonexistent/bwrap")
    assert "UNSAFE" in sandbox.describe()["isolation"]
    result = await sandbox.run("env; pwd")
    assert result.ok and not result.sandboxed
    assert "hunter2-hunter2" not in result.output and f"{project}\n" in result.output
    # with bubblewrap installed the unsafe setting changes nothing
    assert Sandbox.from_settings(settings, project).describe()["isolation"].startswith("bubble")


def test_describe_names_each_mechanism(make: Callable[..., Sandbox]) -> None:
    info = make(memory_mb=300, pids=50).describe()
    assert info["isolation"].startswith("bubblewrap") and info["network"] is False
    assert "300 MiB" in info["memory"] and "50" in info["processes"]
    if cgroup_parents() is not None:
        assert info["limits"] == "cgroup v1" and "pids.max" in info["processes"]


def test_limits_from_settings(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(sandbox_wall_s=7, sandbox_memory_mb=512, sandbox_pids=99)
    limits = Limits.from_settings(settings)
    assert (limits.wall_s, limits.memory_mb, limits.pids) == (7, 512, 99)


async def test_git_dir_is_read_only_inside(tmp_path: Path) -> None:
    """A command cannot plant hooks or filter drivers that git would run outside."""
    import subprocess

    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    sandbox = Sandbox(root, limits=Limits(wall_s=20))
    result = await sandbox.run(
        "echo '[filter \"x\"]' >> .git/config; touch .git/hooks/pre-commit; echo ok > f.txt"
    )
    assert "[filter" not in (root / ".git" / "config").read_text()
    assert not (root / ".git" / "hooks" / "pre-commit").exists()
    assert (root / "f.txt").read_text() == "ok\n"
    assert "Read-only file system" in result.output

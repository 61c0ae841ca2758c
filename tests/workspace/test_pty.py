"""Terminals on a real pseudo-terminal, in real bubblewrap, with real cgroups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.errors import BadRequest, RateLimited, SandboxError
from mimiverse.settings import Settings
from mimiverse.workspace.limits import Limits
from mimiverse.workspace.pty import PtySession, Terminals, session_members
from mimiverse.workspace.sandbox import INSTALL_HINT, Sandbox
from tests.workspace.sandboxing import needs_cgroups

MISSING_BWRAP = "/nonexistent/bwrap"
pytestmark = pytest.mark.usefixtures("bwrap_installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    return root


class Term:
    """A started session and everything it printed so far."""

    def __init__(self, session: PtySession) -> None:
        self.session = session
        self.text = ""
        self.runs = 0

    async def expect(self, needle: str, timeout: float = 5.0) -> str:
        """Read until ``needle`` has been printed (after what earlier calls consumed)."""
        async with asyncio.timeout(timeout):
            while needle not in self.text:
                chunk = await self.session.read()
                if not chunk:
                    raise AssertionError(f"the shell ended before {needle!r}:\n{self.text}")
                self.text += chunk
        before, _, self.text = self.text.partition(needle)
        return before

    async def run(self, line: str) -> str:
        """Type ``line`` and return what it printed (the marker is split in the typed text,
        so only its output matches; the typed line is echoed twice: kernel and readline)."""
        self.runs += 1
        await self.session.write(f"{line}; echo '<<E''ND{self.runs}>>'\r")
        before = await self.expect(f"<<END{self.runs}>>")
        out = before.rpartition(f"ND{self.runs}>>'")[2].removeprefix("\r\n")
        return out.removeprefix("\x1b[?2004l\r")  # bash ends bracketed paste mode

    async def drain(self, timeout: float = 5.0) -> str:
        """Everything until the shell is gone."""
        async with asyncio.timeout(timeout):
            while chunk := await self.session.read():
                self.text += chunk
        return self.text


@pytest.fixture
def terminal(
    make_settings: Callable[..., Settings], project: Path, cgroup_parent: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[Term]]:
    """Open a terminal in ``project``: ``async with terminal(**options) as term``."""

    @contextlib.asynccontextmanager
    async def open_terminal(
        cols: int = 250, rows: int = 24, *, network: bool = False, bwrap: str = "bwrap",
        unsafe: bool = False, idle_s: float = 0, **limits: Any,
    ) -> AsyncIterator[Term]:  # fmt: skip
        settings = make_settings(terminal_idle_s=idle_s)
        box = Sandbox(
            project, limits=Limits(**limits), network=network, bwrap=bwrap, unsafe=unsafe,
            cgroup_parent=cgroup_parent,
        )  # fmt: skip
        session = await PtySession.start(settings, project, cols, rows, sandbox=box)
        try:
            yield Term(session)
        finally:
            await session.close()

    return open_terminal


def new_marker() -> str:
    """A number no other process's arguments start with: ``sleep {marker}`` is findable."""
    return f"{uuid.uuid4().int % 10**12 + 10**12}"


def processes_with(marker: str) -> list[int]:
    """Host pids with an argument that starts with ``marker`` (a whole argument: other
    processes' long numbers, such as a browser's handles, may contain it by chance)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if any(arg.startswith(marker.encode()) for arg in args):
                    found.append(int(entry.name))
    return found


def described(pids: list[int]) -> list[str]:
    """Each pid with its command line (for failure messages)."""
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            out.append(f"{pid}: {b' '.join(args).decode(errors='replace')[:200]}")
    return out


async def until(check: Any, within: float = 10.0) -> Any:
    """``check()`` once it is truthy, or its last value after ``within`` seconds (a loaded
    machine starts and kills processes late)."""
    deadline = time.monotonic() + within
    while not (value := check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return value


async def test_echo_round_trip_in_the_project(terminal: Any, project: Path) -> None:
    async with terminal() as term:
        assert term.session.sandboxed
        assert await term.run("echo hello-$((6*7))") == "hello-42\r\n"
        assert await term.run("pwd") == f"{project}\r\n"
        env = await term.run("env")
        names = {line.split("=", 1)[0] for line in env.split("\r\n") if "=" in line}
        assert {"TERM", "HOME", "PATH", "LANG", "COLUMNS", "LINES"} <= names
        assert "TERM=xterm-256color" in env and "LANG=C.UTF-8" in env
        assert not names & {"MIMI_CONFIG", "PYTEST_CURRENT_TEST"}


async def test_server_environment_never_reaches_the_shell(
    terminal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_SESSION_SECRET", "s3cret-value-123")
    async with terminal() as term:
        assert "s3cret-value-123" not in await term.run("env")


async def test_resize_is_seen_by_stty_and_the_shell(terminal: Any) -> None:
    async with terminal(100, 30) as term:
        assert await term.run("stty size") == "30 100\r\n"
        term.session.resize(120, 40)
        assert await term.run("stty size; echo $COLUMNS $LINES") == "40 120\r\n120 40\r\n"
        with pytest.raises(BadRequest, match="1 to 1000"):
            term.session.resize(0, 10)
        with pytest.raises(BadRequest, match="1 to 1000"):
            term.session.resize(80, 1001)


@pytest.mark.parametrize("server_ignores_sigint", [False, True])
async def test_ctrl_c_interrupts_the_foreground_job(
    terminal: Any, server_ignores_sigint: bool
) -> None:
    """Also when the server was started with SIGINT ignored (``nohup``, a script's ``&``):
    ignored signals survive exec, so the launcher must reset them."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if server_ignores_sigint else None
    try:
        opened = terminal()
        term = await opened.__aenter__()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        marker = new_marker()
        await term.session.write(f"sleep {marker}\r")
        assert await until(lambda: processes_with(marker)), "the job never started"
        await term.session.write("\x03")
        await term.expect("^C", timeout=10)
        gone = await until(lambda: not processes_with(marker))
        assert gone, f"^C left the job running: {described(processes_with(marker))}"
        assert await term.run("echo after-$((1+1))") == "after-2\r\n"
    finally:
        await opened.__aexit__(None, None, None)


async def test_utf8_split_across_reads_survives(terminal: Any) -> None:
    async with terminal() as term:
        # the euro sign's three bytes, written in two pieces with a pause between them
        out = await term.run(r"printf '\342\202'; sleep 0.3; printf '\254 split\n'")
        assert out == "€ split\r\n"
        assert await term.run(r"printf 'a\377b\n'") == "a\ufffdb\r\n"


async def test_exit_code_and_end_of_output(terminal: Any) -> None:
    async with terminal() as term:
        await term.session.write("echo bye; exit 7\r")
        assert "bye" in await term.drain()
        assert await term.session.wait() == 7
        assert term.session.returncode == 7
        assert await term.session.read() == ""


async def test_close_kills_the_whole_tree(terminal: Any) -> None:
    marker = new_marker()
    async with terminal() as term:
        await term.run(f"sleep {marker}1 & setsid sleep {marker}2 & nohup sleep {marker}3 & true")
        await asyncio.sleep(0.3)
        assert len(processes_with(marker)) == 3
        leader = term.session.pid
        await term.session.close()
        assert term.session.returncode == 137
    assert processes_with(marker) == []
    assert session_members(leader) == []


async def test_close_kills_the_tree_without_bubblewrap(terminal: Any) -> None:
    marker = new_marker()
    async with terminal(bwrap=MISSING_BWRAP, unsafe=True) as term:
        assert not term.session.sandboxed
        await term.run(f"sleep {marker}1 & nohup sleep {marker}2 >/dev/null 2>&1 & true")
        await asyncio.sleep(0.3)
        assert len(processes_with(marker)) == 2
        await term.session.close()
    assert processes_with(marker) == []


async def test_exiting_shell_takes_its_background_jobs(terminal: Any) -> None:
    marker = new_marker()
    async with terminal() as term:
        await term.run(f"nohup sleep {marker} >/dev/null 2>&1 & true")
        await term.session.write("exit 0\r")
        await term.drain()
        assert await term.session.wait() == 0
        # killed EXIT_GRACE_S after the shell's exit (a moment for its output to be read)
        assert await until(lambda: not processes_with(marker)), processes_with(marker)


async def test_cannot_write_outside_the_project(
    terminal: Any, project: Path, tmp_path: Path
) -> None:
    async with terminal() as term:
        for outside in ("/etc/owned", "/usr/owned", "/owned", f"{Path.home()}/owned"):
            assert "Read-only file system" in await term.run(f"touch {outside}"), outside
        # the project's parent is under /tmp: a private tmpfs in the sandbox, not the host's
        assert await term.run(f"echo x > {tmp_path}/escape.txt") == ""
        assert await term.run("echo y > inside.txt") == ""
    assert not (tmp_path / "escape.txt").exists()
    assert (project / "inside.txt").read_text() == "y\n"


async def test_no_network_unless_granted(terminal: Any) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        probe = f"(echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo net-yes || echo net-no"
        async with terminal() as term:
            assert await term.run(probe) == "net-no\r\n"
        async with terminal(network=True) as term:
            assert await term.run(probe) == "net-yes\r\n"


@needs_cgroups
async def test_memory_limit_applies(terminal: Any) -> None:
    async with terminal(memory_mb=64) as term:
        hog = "python3 -c 'b = bytearray(512 * 2**20); print(len(b))' 2>/dev/null; echo $?"
        assert (await term.run(hog)).endswith("137\r\n")  # SIGKILL by the OOM killer
        assert await term.run("echo still-here") == "still-here\r\n"  # the shell survives


async def test_output_waits_for_the_reader(terminal: Any, project: Path) -> None:
    """A client that stops reading blocks the shell (bounded memory), not the server."""
    async with terminal() as term:
        await term.session.write("head -c 2000000 /dev/zero | tr '\\0' x; touch done.txt\r")
        await asyncio.sleep(1.0)
        assert not (project / "done.txt").exists(), "the shell ran ahead of its reader"
        async with asyncio.timeout(10):
            while not (project / "done.txt").exists():
                assert await term.session.read()


async def test_idle_terminal_is_closed(terminal: Any) -> None:
    async with terminal(idle_s=0.5) as term:
        assert await term.run("echo ready") == "ready\r\n"
        await term.drain(timeout=5)
        assert "MIMI_TERMINAL_IDLE_S" in term.session.reason
        assert await term.session.wait() == 137


async def test_without_bubblewrap_it_refuses_unless_unsafe(
    make_settings: Callable[..., Settings],
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # a machine without bwrap
    with pytest.raises(SandboxError) as refused:
        await PtySession.start(make_settings(), project)
    assert INSTALL_HINT in refused.value.message
    settings = make_settings(sandbox_unsafe_no_sandbox=True, terminal_idle_s=0)
    session = await PtySession.start(settings, project)
    try:
        assert not session.sandboxed
        assert await Term(session).run("echo plain-$((2*3)); pwd") == f"plain-6\r\n{project}\r\n"
    finally:
        await session.close()


async def test_bad_sizes_are_refused(make_settings: Callable[..., Settings], project: Path) -> None:
    with pytest.raises(BadRequest, match="cols"):
        await PtySession.start(make_settings(), project, 0, 24)
    with pytest.raises(BadRequest, match="rows"):
        await PtySession.start(make_settings(), project, 80, 5000)


def test_terminals_per_user_are_capped() -> None:
    terminals = Terminals(2)
    with terminals.slot("alice"), terminals.slot("alice"), terminals.slot("bob"):
        one_more = terminals.slot("alice")
        with pytest.raises(RateLimited, match="MIMI_TERMINAL_MAX_SESSIONS"):
            one_more.__enter__()
    assert terminals.open == {}
    with terminals.slot("alice"):
        assert terminals.open == {"alice": 1}


def test_runs_under_uvloop(make_settings: Callable[..., Settings], project: Path) -> None:
    """`mimiverse serve` runs uvicorn on uvloop: readers, pass_fds and reaping work there."""
    import uvloop

    async def main() -> None:
        session = await PtySession.start(make_settings(terminal_idle_s=0), project)
        try:
            term = Term(session)
            assert await term.run("echo uv-$((4*4)); stty size") == "uv-16\r\n24 80\r\n"
            await session.write("exit 4\r")
            await term.drain()
            assert await session.wait() == 4
        finally:
            await session.close()

    uvloop.run(main())

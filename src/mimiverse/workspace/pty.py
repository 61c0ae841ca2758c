"""Interactive terminals: the user's shell on a real pseudo-terminal, inside the sandbox.

A :class:`PtySession` runs ``bash -l`` (``sh -l`` where bash is missing) with the same
isolation as the agent's commands (``isolation.py``: read-only system, the project as the
only writable directory, no network unless ``sandbox_network``, an own PID namespace, an
empty environment) and the same memory and process limits (``limits.py``), but no CPU or
wall-clock limit: a terminal lives as long as its user wants it, or until it has been idle
for ``terminal_idle_s``. Without bubblewrap it refuses like the sandbox does, unless
``sandbox_unsafe_no_sandbox`` allows a plain shell.

The shell keeps the pseudo-terminal as its controlling terminal (job control, Ctrl-C), so
bwrap runs without ``--new-session``: the TIOCSTI escape that option guards against needs a
terminal shared with something outside the sandbox, and this one has nobody else on it.

Output is read only when the caller asks for it (:meth:`PtySession.read`): a client that
stops reading fills the kernel's buffer and the shell blocks, instead of our memory
growing. :meth:`PtySession.close` kills the whole process tree.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import fcntl
import os
import shlex
import shutil
import signal
import struct
import sys
import tempfile
import termios
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mimiverse.errors import BadRequest, RateLimited, SandboxError
from mimiverse.workspace.isolation import SANDBOX_HOME, bwrap_argv, sandbox_env
from mimiverse.workspace.limits import RunCgroup, prlimit_args
from mimiverse.workspace.sandbox import Sandbox, cgroup_join_argv

if TYPE_CHECKING:
    from collections.abc import Callable

    from mimiverse.settings import Settings

    _Watch = Callable[[int, Callable[[asyncio.Future[None]], None], asyncio.Future[None]], None]
    _Unwatch = Callable[[int], bool]

__all__ = ["MAX_SIZE", "PtySession", "Terminals", "shell_argv"]

TERM = "xterm-256color"
MAX_SIZE = 1000
"""Largest number of columns or rows a terminal may have."""
READ_BYTES = 65_536
EXIT_GRACE_S = 0.5
"""After the shell exits: time for what it wrote to be read before its leftovers are killed."""
LEADER_GRACE_S = 1.0
"""After killing the sandbox's processes: time for bwrap to notice and exit on its own."""
SHELL_REAP_S = 0.05
"""Without bwrap: time for the shell to reap the jobs just killed, before it goes too."""
CTTY = (
    "import fcntl, os, signal, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGQUIT, "
    "signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)]; "
    "signal.pthread_sigmask(signal.SIG_SETMASK, []); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""Makes stdin (the pseudo-terminal) the controlling terminal of the new session, resets
the job-control signals to their defaults and unblocks every signal, then execs. Ignored
signals survive exec: a server started with SIGINT ignored (``nohup``, a script's ``&``)
would otherwise give its terminals jobs that ^C cannot stop."""
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def shell_argv() -> list[str]:
    """A login shell: bash when installed, else the POSIX sh."""
    bash = shutil.which("bash", path=SYSTEM_PATH)
    return [bash, "-l"] if bash else ["/bin/sh", "-l"]


def check_size(cols: int, rows: int) -> tuple[int, int]:
    """``(cols, rows)`` when both are whole numbers in 1..MAX_SIZE; else BadRequest."""
    for name, value in (("cols", cols), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise BadRequest(f"{name} must be a whole number from 1 to {MAX_SIZE}, not {value!r}")
    return cols, rows


def _profile(env: dict[str, str]) -> str:
    """``~/.profile``: the system profile resets PATH; this puts the project's back."""
    return f"PATH={shlex.quote(env['PATH'])}; export PATH\n"


class _Launch:
    """The command line that starts a terminal's shell, and what it holds until started.

    The launcher joins the cgroups, takes the pseudo-terminal as its controlling terminal,
    sets rlimits where cgroups are missing (never CPU: a shell lives long), then runs the
    shell in bwrap (a ``~/.profile`` handed over on a pipe) or, unsafe, in a clean
    environment with a throwaway HOME.
    """

    def __init__(self, box: Sandbox, cgroup: RunCgroup | None, extra: dict[str, str]) -> None:
        root, shell = box.workspace.root, shell_argv()
        self.home: str | None = None
        self.pass_fds: tuple[int, ...] = ()
        argv = [*(cgroup_join_argv(cgroup) if cgroup else []), sys.executable, "-I", "-S"]
        argv += ["-c", CTTY]
        rlimits = prlimit_args(box.limits, cgroups=cgroup is not None, cpu=False)
        if box.prlimit and rlimits:
            argv += [box.prlimit, *rlimits, "--"]
        if box.bwrap is not None:
            env = sandbox_env(root, extra, SANDBOX_HOME) | {"SHELL": shell[0]}
            profile, writer = os.pipe()
            self.pass_fds = (profile,)
            with os.fdopen(writer, "w") as pipe:  # a few bytes: fits the pipe's buffer
                pipe.write(_profile(env))
            files = ["--file", str(profile), f"{SANDBOX_HOME}/.profile"]
            argv += bwrap_argv(
                box.bwrap, root, root, env, network=box.network, new_session=False, extra=files
            )
        else:
            self.home = tempfile.mkdtemp(prefix="mimiverse-home-")
            env = sandbox_env(root, extra, self.home) | {"TMPDIR": self.home, "SHELL": shell[0]}
            Path(self.home, ".profile").write_text(_profile(env))
            argv += ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
        self.argv = argv + shell

    def close_fds(self) -> None:
        """Our copies of what the launcher inherits."""
        for fd in self.pass_fds:
            os.close(fd)


class PtySession:
    """One shell on a pseudo-terminal. Build with :meth:`start`; always :meth:`close`."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        master: int,
        *,
        cgroup: RunCgroup | None,
        home: str | None,
        idle_s: float,
        sandboxed: bool,
    ) -> None:
        self._proc = proc
        self._fd = master
        self._cgroup = cgroup
        self._home = home
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._eof = False
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._last = time.monotonic()
        self.idle_s = idle_s
        self.sandboxed = sandboxed
        """False only under MIMI_SANDBOX_UNSAFE_NO_SANDBOX."""
        self.reason = ""
        """Why the terminal was ended by us (idle), in plain words; empty otherwise."""
        self._tasks = [asyncio.create_task(self._reap())]
        if idle_s > 0:
            self._tasks.append(asyncio.create_task(self._watch_idle()))

    @classmethod
    async def start(
        cls,
        settings: Settings,
        root: str | Path,
        cols: int = 80,
        rows: int = 24,
        *,
        sandbox: Sandbox | None = None,
    ) -> PtySession:
        """Start the shell in project ``root`` on a ``cols`` x ``rows`` terminal.

        SandboxError when bubblewrap is missing (and unsafe mode is off) or the limits
        cannot be set up; ``sandbox`` replaces the one built from ``settings``.
        """
        check_size(cols, rows)
        box = sandbox or Sandbox.from_settings(settings, root)
        root = box.workspace.root
        cgroup: RunCgroup | None = None
        if box.cgroups is not None:
            try:
                cgroup = await asyncio.to_thread(RunCgroup, box.cgroups, box.limits)
            except OSError as exc:
                raise SandboxError(f"cannot create the terminal's cgroup: {exc}") from exc
        master, slave = os.openpty()
        launch: _Launch | None = None
        try:
            launch = _Launch(box, cgroup, {"TERM": TERM, "COLUMNS": str(cols), "LINES": str(rows)})
            _set_size(master, cols, rows)
            os.set_blocking(master, False)
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=slave, stdout=slave, stderr=slave, cwd=root,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
                pass_fds=launch.pass_fds,
            )  # fmt: skip
        except BaseException:
            os.close(master)
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
            if launch is not None and launch.home is not None:
                shutil.rmtree(launch.home, ignore_errors=True)
            raise
        finally:
            os.close(slave)
            if launch is not None:
                launch.close_fds()
        return cls(
            proc, master, cgroup=cgroup, home=launch.home, idle_s=settings.terminal_idle_s,
            sandboxed=box.bwrap is not None,
        )  # fmt: skip

    # --- the terminal ------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The launcher's pid: leader of the terminal's session and process group."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The shell's exit status (128 + n when killed by signal n), None while it runs."""
        code = self._proc.returncode
        return None if code is None else _status(code)

    async def read(self) -> str:
        """The next output the shell wrote, decoded; ``""`` once it is gone (or closed)."""
        if self._reading:
            raise RuntimeError("PtySession.read() is already waiting in another task")
        self._reading = True
        try:
            while not self._eof and not self._closed:
                try:
                    data = os.read(self._fd, READ_BYTES)
                except BlockingIOError:
                    await self._ready(self._loop.add_reader, self._loop.remove_reader)
                    continue
                except OSError as exc:  # EIO: every process holding the terminal is gone
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    self._eof = True
                    break
                self._last = time.monotonic()
                if text := self._decoder.decode(data):
                    return text
            return self._decoder.decode(b"", final=True)
        finally:
            self._reading = False

    async def __aiter__(self) -> AsyncIterator[str]:
        """Output chunks until the shell is gone."""
        while chunk := await self.read():
            yield chunk

    async def write(self, data: bytes | str) -> None:
        """Type ``data`` into the terminal; waits while the shell is not reading."""
        view = memoryview(data.encode() if isinstance(data, str) else data)
        self._last = time.monotonic()
        while view and not self._closed:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._ready(self._loop.add_writer, self._loop.remove_writer)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                return  # the shell is gone: what it would have read does not matter

    def resize(self, cols: int, rows: int) -> None:
        """Set the terminal's size; the kernel sends SIGWINCH to the foreground job."""
        check_size(cols, rows)
        if not self._closed:
            _set_size(self._fd, cols, rows)

    async def wait(self) -> int:
        """The shell's exit status (128 + n when killed by signal n) once it has exited."""
        return _status(await self._proc.wait())

    async def close(self) -> None:
        """Kill every process of the terminal and free what it held. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters:
            _wake(waiter)
        for task in self._tasks:
            task.cancel()
        try:
            await self._kill_tree()
        finally:
            if self._proc.returncode is None:  # cancelled half-way: never leave it running
                self._kill(everyone=True)
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            os.close(self._fd)
            if self._cgroup is not None:
                await asyncio.to_thread(self._cgroup.remove)
            if self._home is not None:
                shutil.rmtree(self._home, ignore_errors=True)

    # --- internals -----------------------------------------------------------------------

    async def _ready(self, add: _Watch, remove: _Unwatch) -> None:
        """Wait until the terminal is readable (or writable), or the session closes."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(waiter)
        add(self._fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            if not self._closed:
                remove(self._fd)

    async def _kill_tree(self) -> None:
        """SIGKILL every process of the terminal, the session's leader last.

        The leader (bwrap, or the shell without it) then reaps what it lost, and bwrap exits
        on its own; killed first, it would leave them to PID 1, which in a container may
        never reap them.
        """
        self._kill(everyone=False)
        if self.sandboxed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), LEADER_GRACE_S)
        else:
            await asyncio.sleep(SHELL_REAP_S)
        self._kill(everyone=True)  # and whatever forked meanwhile
        if self._cgroup is not None:
            await asyncio.to_thread(self._cgroup.kill)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), 5.0)

    def _kill(self, *, everyone: bool) -> None:
        """SIGKILL the processes of the terminal's session (``everyone``: its leader too)."""
        if everyone:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        for pid in session_members(self.pid):
            if everyone or pid != self.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    async def _reap(self) -> None:
        """When the shell exits, nothing it started may outlive it (``nohup``, ``setsid``)."""
        await self._proc.wait()
        await asyncio.sleep(EXIT_GRACE_S)
        await self._kill_tree()

    async def _watch_idle(self) -> None:
        while True:
            left = self._last + self.idle_s - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(left)
        self.reason = (
            f"closed after {self.idle_s:g} s without input or output (MIMI_TERMINAL_IDLE_S)"
        )
        await self._kill_tree()


class Terminals:
    """How many terminals each user has open; one more than ``max_per_user`` is refused."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self.open: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, user: str) -> Iterator[None]:
        """Hold one of ``user``'s terminal slots; RateLimited when all are taken."""
        if self.open.get(user, 0) >= self.max_per_user:
            raise RateLimited(
                f"{self.max_per_user} terminals are open already: close one first "
                "(MIMI_TERMINAL_MAX_SESSIONS raises the limit)",
                retry_after=5,
            )
        self.open[user] = self.open.get(user, 0) + 1
        try:
            yield
        finally:
            self.open[user] -= 1
            if not self.open[user]:
                del self.open[user]


def session_members(sid: int) -> list[int]:
    """Processes in session ``sid`` (from ``/proc``), the leader first."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 3 and int(fields[3]) == sid:
                found.append(int(entry.name))
    return sorted(found, key=lambda pid: pid != sid)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _status(code: int) -> int:
    return 128 - code if code < 0 else code

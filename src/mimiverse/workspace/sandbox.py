"""Run commands from the agent (or a user) inside a bubblewrap sandbox, with limits.

Inside: a read-only system (``/usr``, ``/etc`` less its secret files, the Python that runs
tests), a fresh ``/tmp`` and ``HOME``, and the project root as the only writable directory.
No network unless granted, an own PID namespace (everything dies with the command), no
capabilities, and an empty environment plus a few known variables — never the server's.
Limits come from ``limits.py`` (cgroup v1, else ``prlimit``); the wall clock is ours.

Output (stdout and stderr merged) is redacted line by line, streamed to ``on_output`` and
kept up to ``Limits.output_bytes`` (head and tail, the cut noted in the middle).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimiverse.errors import SandboxError, ToolError
from mimiverse.workspace.isolation import SANDBOX_HOME, bwrap_argv, sandbox_env
from mimiverse.workspace.limits import (
    CGROUP_PARENT,
    Limits,
    RunCgroup,
    cgroup_parents,
    prlimit_args,
)
from mimiverse.workspace.output import CappedOutput
from mimiverse.workspace.paths import Workspace
from mimiverse.workspace.redact import RedactingStream, Redactor

if TYPE_CHECKING:
    from mimiverse.settings import Settings

__all__ = ["INSTALL_HINT", "Limits", "RunResult", "Sandbox", "cgroup_join_argv"]

OutputSink = Callable[[str], Awaitable[None]]

INSTALL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap` on Debian/Ubuntu, `dnf install "
    "bubblewrap` on Fedora), or set MIMI_SANDBOX_UNSAFE_NO_SANDBOX=true to run commands "
    "without isolation (UNSAFE: they can then read your files, use your network and "
    "touch anything you can)"
)
POLL_S = 0.1

REASONS = {
    "time limit": "ran longer than {wall_s:g} s; it was stopped with everything it started "
    "(MIMI_SANDBOX_WALL_S)",
    "memory limit": "used more than {memory_mb} MiB of memory and the kernel killed it "
    "(MIMI_SANDBOX_MEMORY_MB)",
    "process limit": "hit the limit of {pids} processes or threads at once; new ones were "
    "refused and the run was stopped (MIMI_SANDBOX_PIDS)",
    "cpu limit": "used more than {cpu_s} s of CPU time and was stopped (MIMI_SANDBOX_CPU_S)",
}


def cgroup_join_argv(cgroup: RunCgroup) -> list[str]:
    """A launcher prefix: the process writes its pid into the run's cgroups, then execs the
    rest of the command line (so nothing of it runs outside the limits)."""
    script = (
        'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || '
        '{ echo "mimiverse: cannot join cgroup $f" >&2; exit 125; }; shift; done; '
        'shift; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "mimiverse-enter", *cgroup.procs_files(), "--"]


@dataclass
class RunResult:
    """How one command ended, and what it printed (redacted, capped)."""

    command: str
    exit_code: int | None
    """None when the sandbox killed the command (see ``killed``)."""
    output: str
    truncated: bool = False
    timed_out: bool = False
    killed: str | None = None
    """``"time limit"``, ``"memory limit"``, ``"process limit"`` or ``"cpu limit"``."""
    duration_s: float = 0.0
    reason: str = ""
    """``killed`` in plain words, naming the setting that raises the limit."""
    sandboxed: bool = True
    """False only under MIMI_SANDBOX_UNSAFE_NO_SANDBOX."""

    @property
    def ok(self) -> bool:
        """Exited 0 and was not killed."""
        return self.exit_code == 0 and self.killed is None


class Sandbox:
    """Runs commands in one project root. Build with ``from_settings`` in the app.

    ``unsafe`` allows running without isolation only when ``bwrap`` is not installed
    (never silently: ``RunResult.sandboxed`` and ``describe()`` say so). ``bwrap`` names the
    binary (a path that does not exist simulates a machine without it); run cgroups live
    under ``cgroup_parent`` in the server's own cgroup; ``use_cgroups=False`` forces the
    ``prlimit`` fallback.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        limits: Limits | None = None,
        network: bool = False,
        unsafe: bool = False,
        redact: Callable[[str], str] | None = None,
        bwrap: str = "bwrap",
        cgroup_parent: str = CGROUP_PARENT,
        use_cgroups: bool = True,
    ) -> None:
        self.workspace = Workspace(root)
        if self.workspace.root == Path("/"):
            raise SandboxError("the project root cannot be '/': choose the project's directory")
        self.limits = limits or Limits()
        self.network = network
        self.redact = redact or Redactor()
        self.bwrap = shutil.which(bwrap)
        self.unsafe = unsafe and self.bwrap is None
        if self.bwrap is None and not unsafe:
            raise SandboxError(f"cannot run commands safely: {bwrap!r} not found; {INSTALL_HINT}")
        self.prlimit = shutil.which("prlimit")
        self.cgroups = cgroup_parents(cgroup_parent) if use_cgroups else None

    @classmethod
    def from_settings(cls, settings: Settings, root: str | Path, **kwargs: Any) -> Sandbox:
        """A sandbox with the ``sandbox_*`` settings; SandboxError when bwrap is missing."""
        return cls(
            root,
            limits=Limits.from_settings(settings),
            network=settings.sandbox_network,
            unsafe=settings.sandbox_unsafe_no_sandbox,
            **kwargs,
        )

    def describe(self) -> dict[str, Any]:
        """What isolates commands and enforces each limit (for ``mimiverse doctor``)."""
        lim, cg = self.limits, self.cgroups is not None
        cpu_total = "cpuacct" in (self.cgroups or {})
        return {
            "isolation": "none (UNSAFE: MIMI_SANDBOX_UNSAFE_NO_SANDBOX)"
            if self.unsafe
            else f"bubblewrap ({self.bwrap})",
            "network": self.network,
            "limits": "cgroup v1" if cg else "prlimit (cgroups not writable)",
            "memory": f"{lim.memory_mb} MiB, "
            + ("cgroup memory.limit_in_bytes" if cg else "RLIMIT_AS per process"),
            "processes": f"{lim.pids}, "
            + ("cgroup pids.max" if cg else "RLIMIT_NPROC (not enforced for root)"),
            "cpu": f"{lim.cpu_s} s, "
            + ("cgroup cpuacct total + " if cpu_total else "")
            + ("RLIMIT_CPU per process" if self.prlimit else "not enforced (prlimit missing)"),
            "wall": f"{lim.wall_s:g} s, whole process tree killed",
            "output": f"{lim.output_bytes} characters kept (head and tail)",
            "cgroup_parents": {k: str(v) for k, v in (self.cgroups or {}).items()},
        }

    async def run(
        self,
        command: str | list[str],
        *,
        cwd: str = ".",
        env: dict[str, str] | None = None,
        limits: Limits | None = None,
        network: bool | None = None,
        on_output: OutputSink | None = None,
    ) -> RunResult:
        """Run ``command`` (a string goes to ``/bin/sh -c``) in ``cwd`` inside the project."""
        workdir = self.workspace.resolve(cwd, must_exist=True)
        if not workdir.is_dir():
            raise ToolError(f"cwd {cwd!r} is not a directory; give a directory in the project")
        limits = limits or self.limits
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        shown = command if isinstance(command, str) else shlex.join(command)
        cgroup = None
        if self.cgroups is not None:
            try:
                cgroup = await asyncio.to_thread(RunCgroup, self.cgroups, limits)
            except OSError as exc:
                raise SandboxError(f"cannot create the run's cgroup: {exc}") from exc
        home: str | None = None
        try:
            launch = self._launcher(cgroup, limits)
            if self.bwrap is not None:
                variables = sandbox_env(self.workspace.root, env, SANDBOX_HOME)
                wide = self.network if network is None else network
                launch += bwrap_argv(
                    self.bwrap, self.workspace.root, workdir, variables, network=wide
                )
            else:  # unsafe: no isolation, only a clean environment and a throwaway HOME
                home = tempfile.mkdtemp(prefix="mimiverse-home-")
                variables = sandbox_env(self.workspace.root, env, home) | {"TMPDIR": home}
                launch += ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items())]
            return await self._execute(launch + argv, shown, workdir, limits, cgroup, on_output)
        finally:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
            if home is not None:
                shutil.rmtree(home, ignore_errors=True)

    # --- building the command line -------------------------------------------------------

    def _launcher(self, cgroup: RunCgroup | None, limits: Limits) -> list[str]:
        """Join the run's cgroups (pid written before exec), then apply rlimits."""
        argv = cgroup_join_argv(cgroup) if cgroup is not None else []
        if self.prlimit:
            argv += [self.prlimit, *prlimit_args(limits, cgroups=cgroup is not None), "--"]
        return argv

    # --- running ---------------------------------------------------------------------------

    async def _execute(
        self,
        argv: list[str],
        shown: str,
        workdir: Path,
        limits: Limits,
        cgroup: RunCgroup | None,
        on_output: OutputSink | None,
    ) -> RunResult:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        output = CappedOutput(limits.output_bytes, on_output)
        assert proc.stdout is not None
        reader = asyncio.create_task(self._pump(proc.stdout, output))
        waiter = asyncio.create_task(proc.wait())
        killed: str | None = None
        try:
            deadline = started + limits.wall_s
            while not waiter.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    killed = "time limit"
                    break
                await asyncio.wait({waiter}, timeout=min(POLL_S, left))
                if cgroup is not None and not waiter.done():
                    killed = cgroup.live_verdict()
                    if killed:
                        break
            if killed:
                await self._kill(proc, cgroup)
            await waiter
            if not (await asyncio.wait({reader}, timeout=2.0))[0]:
                # something the command left behind still holds the pipe: end it
                await self._kill(proc, cgroup)
                if not (await asyncio.wait({reader}, timeout=2.0))[0]:
                    reader.cancel()
        except BaseException:  # cancelled: nothing may outlive the caller
            await self._kill(proc, cgroup)
            reader.cancel()
            waiter.cancel()
            raise
        if not reader.cancelled():
            reader.result()  # surfaces a bug in the reader, if any
        exit_code = None if killed else proc.returncode
        killed = killed or self._verdict_after(proc.returncode, cgroup)
        await output.finish()
        return RunResult(
            command=shown,
            exit_code=exit_code,
            output=output.text(),
            truncated=output.truncated,
            timed_out=killed == "time limit",
            killed=killed,
            duration_s=time.monotonic() - started,
            reason=REASONS[killed].format(**vars(limits)) if killed else "",
            sandboxed=not self.unsafe,
        )

    async def _pump(self, stream: asyncio.StreamReader, output: CappedOutput) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        redacting = RedactingStream(self.redact)
        while chunk := await stream.read(65_536):
            await output.add(redacting.feed(decoder.decode(chunk)))
        await output.add(redacting.feed(decoder.decode(b"", final=True)) + redacting.flush())

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process, cgroup: RunCgroup | None) -> None:
        """Kill the launcher's process group (bwrap: the PID namespace dies with it) and the
        run's cgroup."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.kill)

    @staticmethod
    def _verdict_after(exit_code: int | None, cgroup: RunCgroup | None) -> str | None:
        if cgroup is not None and cgroup.memory_killed():
            return "memory limit"
        if cgroup is not None and (verdict := cgroup.live_verdict()):
            return verdict
        if exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return "cpu limit"
        return None

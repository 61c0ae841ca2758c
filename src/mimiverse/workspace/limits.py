"""Resource limits for sandboxed commands: cgroup v1 when writable, ``prlimit`` otherwise.

A run gets its own cgroup in each controller, a child of the cgroup the server itself is
in (``<mount>/<own path>/mimiverse/<run id>``), so the server's own limits still apply:

- ``memory``: ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, so swap
  cannot stretch it); an OOM kill shows in ``memory.oom_control``;
- ``pids``: ``pids.max``; a refused fork shows in ``pids.events`` (the run is then killed:
  a fork bomb would otherwise spin until the wall clock);
- ``cpuacct``: total CPU time of every process of the run, checked while it runs.

The command's first process writes its own pid into each ``cgroup.procs`` and only then
execs the sandbox, so nothing runs outside the limits. Without writable cgroups the
command gets ``RLIMIT_AS`` / ``RLIMIT_NPROC`` / ``RLIMIT_CPU`` via ``prlimit``: weaker
(per process, and ``RLIMIT_NPROC`` is not enforced for root).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimiverse.settings import Settings

CONTROLLERS = ("memory", "pids", "cpuacct")
CGROUP_PARENT = "mimiverse"
"""Directory (under the server's own cgroup) that holds one cgroup per run."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    wall_s: float = 300.0
    """Seconds of wall-clock time before the whole process tree is killed."""
    cpu_s: int = 300
    """CPU seconds, summed over every process of the run."""
    memory_mb: int = 1024
    """Memory of every process of the run together, MiB."""
    pids: int = 256
    """Processes and threads alive at once."""
    output_bytes: int = 200_000
    """Output kept (head and tail); counted in characters of the decoded text."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The ``sandbox_*`` settings."""
        return cls(
            wall_s=settings.sandbox_wall_s,
            cpu_s=settings.sandbox_cpu_s,
            memory_mb=settings.sandbox_memory_mb,
            pids=settings.sandbox_pids,
            output_bytes=settings.sandbox_output_bytes,
        )


def prlimit_args(limits: Limits, *, cgroups: bool, cpu: bool = True) -> list[str]:
    """``prlimit`` options for one run: CPU (unless ``cpu=False``), memory and processes
    without cgroups."""
    args = [f"--cpu={limits.cpu_s + 1}"] if cpu else []  # per process; cgroup total first
    if not cgroups:
        args += [f"--as={limits.memory_mb * 1024 * 1024}", f"--nproc={_nproc(limits.pids)}"]
    return args


def _nproc(pids: int) -> int:
    """RLIMIT_NPROC counts every process of the user, not just this run's."""
    try:
        uid = os.getuid()
        mine = sum(
            1 for p in Path("/proc").iterdir() if p.name.isdigit() and p.stat().st_uid == uid
        )
    except OSError:
        mine = 0
    return mine + pids


def controller_mounts() -> dict[str, tuple[str, Path]]:
    """(root, mount point) of each cgroup v1 controller we use, from ``/proc/self/mountinfo``."""
    found: dict[str, tuple[str, Path]] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3 or extra[0] != "cgroup":
            continue
        options = set(extra[2].split(","))
        for name in CONTROLLERS:
            if name in options and name not in found:
                found[name] = (fields[3], Path(fields[4]))
    return found


def own_cgroups() -> dict[str, str]:
    """This process's cgroup path in each v1 controller, from ``/proc/self/cgroup``."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(","):
                paths[name] = path
    return paths


def cgroup_parents(parent: str = CGROUP_PARENT) -> dict[str, Path] | None:
    """Writable per-controller parent directories for run cgroups, or None when unusable."""
    mounts, own = controller_mounts(), own_cgroups()
    if not all(name in mounts for name in ("memory", "pids")):
        return None
    parents: dict[str, Path] = {}
    for name, (root, mount) in mounts.items():
        path = own.get(name, "/")
        if root != "/" and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]
        base = mount / path.lstrip("/") / parent
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError:
            if name in ("memory", "pids"):
                return None
            continue
        if not os.access(base, os.W_OK):
            return None
        parents[name] = base
    return parents


class RunCgroup:
    """The cgroups of one run: created with limits set, inspected, killed and removed."""

    def __init__(self, parents: dict[str, Path], limits: Limits) -> None:
        self.limits = limits
        self.id = uuid.uuid4().hex[:12]
        self.dirs = {name: base / self.id for name, base in parents.items()}
        try:
            for path in self.dirs.values():
                path.mkdir()
            memory = str(limits.memory_mb * 1024 * 1024)
            _write(self.dirs["memory"] / "memory.limit_in_bytes", memory)
            memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                _write(memsw, memory)
            _write(self.dirs["pids"] / "pids.max", str(limits.pids))
        except OSError:
            self.remove()
            raise

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the first process writes its pid into."""
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    def live_verdict(self) -> str | None:
        """``"process limit"`` or ``"cpu limit"`` when the run must be stopped now."""
        if _event_count(self.dirs["pids"] / "pids.events", "max"):
            return "process limit"
        if "cpuacct" in self.dirs:
            used = _read_int(self.dirs["cpuacct"] / "cpuacct.usage")
            if used is not None and used >= self.limits.cpu_s * 1_000_000_000:
                return "cpu limit"
        return None

    def memory_killed(self) -> bool:
        """Whether the kernel's OOM killer acted inside this run."""
        memory = self.dirs["memory"]
        if _event_count(memory / "memory.oom_control", "oom_kill"):
            return True
        peak = _read_int(memory / "memory.max_usage_in_bytes") or 0
        failed = _read_int(memory / "memory.failcnt") or 0
        return failed > 0 and peak >= 0.9 * self.limits.memory_mb * 1024 * 1024

    def pids(self) -> list[int]:
        """Processes still in the run's cgroup."""
        try:
            text = (self.dirs["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process of the run until none is left (forks race the first pass)."""
        deadline = time.monotonic() + timeout_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the run's cgroup directories."""
        if any(path.exists() for path in self.dirs.values()):
            self.kill()
        for path in self.dirs.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: a process is still exiting
                    time.sleep(0.02)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _event_count(path: Path, key: str) -> int:
    """The number after ``key`` in a ``key value`` per line file (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0

"""The test's side of the netns mesh: device directories, peer processes, convergence.

``make_devices`` creates a real mesh on disk (owner + members added to its roster; the
members learn the roster over the network). ``PeerProcess`` runs ``tests.mesh.netns.peer``
inside a host's namespace and talks to it over stdin/stdout.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mimiverse.mesh.identity import DeviceKey
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import create_mesh, device_key_path

from .network import Lab

ROOT = Path(__file__).resolve().parents[3]
PORT = 7463


def make_devices(root: Path, count: int) -> list[Path]:
    """``count`` device directories: d1 is the owner, d2… are members on its roster."""
    dirs = [root / f"d{i}" for i in range(1, count + 1)]
    owner = create_mesh(dirs[0])
    try:
        for number, directory in enumerate(dirs[1:], start=2):
            directory.mkdir(parents=True)
            key = DeviceKey.load_or_create(device_key_path(directory))
            owner.add_device(key.public, "member", f"device {number}")
            Replica.open(directory, key, mesh=owner.mesh).close()
    finally:
        owner.close()
    return dirs


class PeerGone(RuntimeError):
    """The peer process exited or stopped answering."""


class PeerProcess:
    """One ``tests.mesh.netns.peer`` process in a lab host's namespace."""

    def __init__(
        self,
        lab: Lab,
        host: int,
        directory: Path,
        *,
        dial: Sequence[int] = (),
        shim: str = "",
        log_dir: Path,
    ) -> None:
        self.lab, self.host, self.directory = lab, host, directory
        self.dial, self.shim = list(dial), shim
        self.log_path = log_dir / f"peer{host}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.device = ""

    @property
    def url(self) -> str:
        return f"ws://{self.lab.address(self.host)}:{PORT}/mesh/v1"

    def start(self, timeout_s: float = 30.0) -> PeerProcess:
        argv = [
            sys.executable, "-m", "tests.mesh.netns.peer",
            "--dir", str(self.directory),
            "--listen", f"{self.lab.address(self.host)}:{PORT}",
        ]  # fmt: skip
        for other in self.dial:
            argv += ["--peer", f"ws://{self.lab.address(other)}:{PORT}/mesh/v1"]
        if self.shim:
            argv += ["--shim", self.shim]
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            self.lab.exec_argv(self.host, argv),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        log.close()
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True)
        self.reader.start()
        ready = self._next(timeout_s)
        if ready.get("event") != "ready":
            raise PeerGone(f"peer {self.host} did not start: {ready}\n{self.log_tail()}")
        self.device = str(ready["device"])
        return self

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _next(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise PeerGone(f"peer {self.host} said nothing for {timeout_s} s") from None
        if line is None:
            raise PeerGone(f"peer {self.host} exited\n{self.log_tail()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def request(self, op: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Send one command; its reply (PeerGone if the peer is gone or it failed)."""
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise PeerGone(f"peer {self.host} is not running")
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        answer = self._next(timeout_s)
        if not answer.get("ok"):
            raise PeerGone(f"peer {self.host}: {op} failed: {answer.get('error')}")
        return answer

    def status(self) -> dict[str, Any]:
        return self.request("status")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or power loss would leave it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
            self._release()

    def _release(self) -> None:
        """Close our ends of the exited process's pipes."""
        assert self.proc is not None
        if self.reader is not None:
            self.reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.proc = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Quit cleanly; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
        self._release()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  peer{self.host}| {line}" for line in text[-lines:])


def converged(statuses: Sequence[dict[str, Any]]) -> bool:
    """The same state hash and the same Merkle roots everywhere."""
    return (
        len({s["state_hash"] for s in statuses}) == 1
        and len({json.dumps(s["roots"], sort_keys=True) for s in statuses}) == 1
    )


def wait_for(
    peers: Sequence[PeerProcess],
    check: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Poll the peers' status until ``check(statuses)`` holds; AssertionError with the
    statuses and the peers' logs when it does not in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [p.status() for p in peers]
        if check(statuses):
            return statuses
        if time.monotonic() > deadline:
            summary = "\n".join(
                f"peer {p.host}: blocks={s['blocks']} hash={s['state_hash'][:12]} "
                f"connected={len(s['connected'])} waiting={s['waiting']}"
                for p, s in zip(peers, statuses, strict=True)
            )
            logs = "\n".join(p.log_tail(10) for p in peers)
            raise AssertionError(f"{what}: not after {timeout_s} s\n{summary}\n{logs}")
        time.sleep(0.1)

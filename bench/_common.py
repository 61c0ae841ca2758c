"""Helpers the bench scripts share: load check, statistics, tables, the JSON line,
real-code prompts from the CPython stdlib, and a `mimiverse serve` subprocess.

Benches import it as a sibling module (``from _common import …``): run them as
``.venv/bin/python bench/<name>.py`` so ``bench/`` is on ``sys.path``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 20261121
LOAD_LIMIT = 1.5

# --- machine state --------------------------------------------------------------------------


def load_check(limit: float = LOAD_LIMIT) -> tuple[float, bool]:
    """The 1-minute load average, and whether it is too high to time (a warning is printed)."""
    load1 = os.getloadavg()[0]
    high = load1 > limit
    if high:
        print(
            f"WARNING: 1-minute load average is {load1:.2f} (> {limit}): the machine is busy, "
            "timings below are unreliable (load_warning = true)",
            flush=True,
        )
    return load1, high


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CpuWatch:
    """CPU time used by processes other than ``pids`` (and stolen by the hypervisor).

    On a shared 2-core machine one foreign busy thread makes llama.cpp's OpenMP barriers
    stall for whole scheduler slices, so a sample taken while others ran is worthless.
    ``foreign(mark)`` says how much foreign CPU ran since ``mark = watch.mark()``; the
    resolution is one clock tick (10 ms), so judge windows of tens of ms or more.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.tick = 1.0 / os.sysconf("SC_CLK_TCK")

    def mark(self) -> tuple[int, int, int]:
        """(busy ticks of the whole machine, steal ticks, ticks of ``pids``)."""
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        ours = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{pid}/stat") as fh:
                    stat = fh.read().rsplit(")", 1)[1].split()
                ours += int(stat[11]) + int(stat[12])
        return user + nice + system + irq + softirq, steal, ours

    def foreign(self, since: tuple[int, int, int]) -> float:
        """Seconds of CPU that others (or steal) used since ``since``."""
        busy, steal, ours = self.mark()
        others = (busy - since[0]) - (ours - since[2])
        return max(0, others + steal - since[1]) * self.tick

    def busy(self, since: tuple[int, int, int], elapsed_s: float, share: float = 0.025) -> bool:
        """Whether foreign CPU since ``since`` exceeds 2 ticks plus ``share`` of capacity."""
        return self.foreign(since) > 2 * self.tick + share * cores() * elapsed_s


# --- statistics and output -----------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    """The median; nan when empty."""
    return statistics.median(values) if values else float("nan")


def rounded(value: float, digits: int = 3) -> float | None:
    """``value`` rounded for JSON (None for nan/inf, which JSON cannot carry)."""
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, digits)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def emit(figures: dict[str, Any]) -> None:
    """Print the bench's final JSON line (the output contract: it must be the last line)."""
    print(json.dumps(figures, separators=(", ", ": ")), flush=True)


# --- real-code prompts ----------------------------------------------------------------------


@dataclass(frozen=True)
class CodePrompt:
    """A cursor inside a real function: the text before and after it."""

    path: str  # relative to the stdlib root
    function: str
    line: int  # 1-based line of the cursor
    prefix: str
    suffix: str


# encodings/ is generated codec tables: near-identical files that would crowd the sample.
_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idle_test",
    "__pycache__",
    "encodings",
}


def stdlib_root() -> Path:
    """The CPython standard library on this machine."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """Python files of the stdlib (no tests, no site-packages), in a stable order."""
    root = root or stdlib_root()
    files = [
        p
        for p in root.rglob("*.py")
        if not (_SKIP_DIRS & set(p.relative_to(root).parts[:-1])) and not p.name.startswith("test_")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def parsed_stdlib_files(
    rng: random.Random, root: Path | None = None
) -> Iterator[tuple[Path, str, ast.Module]]:
    """Stdlib files in an order shuffled by ``rng``, with their text and syntax tree
    (files that cannot be read or parsed are passed over)."""
    files = stdlib_files(root or stdlib_root())
    rng.shuffle(files)
    for path in files:
        try:
            text = path.read_text("utf-8")
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        yield path, text, tree


def function_prompts(
    count: int,
    *,
    seed: int = SEED,
    prefix_chars: int = 1500,
    suffix_chars: int = 500,
    min_body_lines: int = 3,
    root: Path | None = None,
) -> list[CodePrompt]:
    """``count`` cursors inside function bodies of stdlib files, one per file, seeded.

    The cursor sits on a random non-blank body line at a random column between the
    indentation and the line end. The prefix is up to ``prefix_chars`` before it and the
    suffix up to ``suffix_chars`` after it, both cut at line boundaries when clipped.
    """
    root = root or stdlib_root()
    rng = random.Random(seed)
    prompts: list[CodePrompt] = []
    for path, text, tree in parsed_stdlib_files(rng, root):
        if len(prompts) >= count:
            break
        functions = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None
            and node.end_lineno - node.body[0].lineno + 1 >= min_body_lines
        ]
        if not functions:
            continue
        node = rng.choice(functions)
        lines = text.splitlines(keepends=True)
        first = node.body[0].lineno
        if isinstance(node.body[0], ast.Expr) and isinstance(
            getattr(node.body[0], "value", None), ast.Constant
        ):
            first = (node.body[0].end_lineno or first) + 1  # skip the docstring
        candidates = [
            n for n in range(first, (node.end_lineno or first) + 1) if lines[n - 1].strip()
        ]
        if not candidates:
            continue
        line_no = rng.choice(candidates)
        line = lines[line_no - 1].rstrip("\r\n")
        indent = len(line) - len(line.lstrip())
        column = rng.randint(indent, len(line))
        offset = sum(len(x) for x in lines[: line_no - 1]) + column
        prefix = text[:offset]
        if len(prefix) > prefix_chars:
            prefix = prefix[-prefix_chars:]
            cut = prefix.find("\n")
            prefix = prefix[cut + 1 :] if 0 <= cut < len(prefix) - 1 else prefix
        suffix = text[offset:]
        if len(suffix) > suffix_chars:
            suffix = suffix[:suffix_chars]
            cut = suffix.rfind("\n")
            suffix = suffix[: cut + 1] if cut > 0 else suffix
        prompts.append(
            CodePrompt(path.relative_to(root).as_posix(), node.name, line_no, prefix, suffix)
        )
    return prompts


# --- a `mimiverse serve` subprocess ---------------------------------------------------------


class MimiServer:
    """``mimiverse serve`` on a free loopback port with its own temp data dir.

    Every ``MIMI_*`` variable of the caller is dropped; only ``env`` is passed (plus
    ``MIMI_HOST``/``MIMI_PORT``/``MIMI_DATA_DIR`` and a ``MIMI_CONFIG`` that names no
    file, so no ``mimiverse.toml`` is read). Use as a context manager: the process is
    stopped on every exit path, and its log is kept in the data dir until then.
    """

    def __init__(self, env: dict[str, str], *, keep: bool = False) -> None:
        self.keep = keep
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="mimi-bench-"))
        self.log_path = self.data_dir / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
        self.env.update(
            {
                "MIMI_HOST": "127.0.0.1",
                "MIMI_PORT": str(self.port),
                "MIMI_DATA_DIR": str(self.data_dir),
                "MIMI_CONFIG": str(self.data_dir / "no-config.toml"),
                **env,
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def command(self) -> list[str]:
        """The console script next to this interpreter, else ``python -m mimiverse.cli``."""
        script = Path(sys.executable).with_name("mimiverse")
        if script.exists():
            return [str(script), "serve"]
        return [sys.executable, "-c", "from mimiverse.cli import app; app()", "serve"]

    def start(self) -> MimiServer:
        """Start the process (returns at once; see ``wait``)."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)
        return self

    def wait(
        self, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 180.0
    ) -> dict[str, Any]:
        """Poll ``/api/health`` until ``ready(body)``; RuntimeError with the log tail otherwise."""
        import httpx

        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mimiverse serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    last = client.get("/api/health").json()
                    if ready(last):
                        return last
                time.sleep(0.1)
        raise RuntimeError(
            f"mimiverse serve not ready after {timeout_s:.0f}s; last health {last}\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_text(self) -> str:
        """The server's whole output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; remove the data dir unless ``keep``. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)
        if not self.keep:
            import shutil

            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MimiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_LIVE: set[MimiServer] = set()


def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


_PENDING: list[BaseException] = []


def install_cleanup() -> None:
    """Stop every MimiServer at exit; SIGINT/SIGTERM/SIGHUP end the run cleanly.

    A signal that lands while the main thread runs a callback from native code (e.g.
    xllamacpp's per-chunk callback) would be swallowed there, so the handler also records
    the exit: callbacks return ``stop_requested()`` and callers run ``check_stop()``.
    """
    import atexit

    atexit.register(_stop_all)

    def _exit(signum: int, _frame: object) -> None:
        exc: BaseException = (
            KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)
        )
        _PENDING.append(exc)
        raise exc

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signum == signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started in the background by a shell: leave it ignored
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, _exit)


def stop_requested() -> bool:
    """Whether a stop signal arrived (native callbacks: return this to cancel)."""
    return bool(_PENDING)


def check_stop() -> None:
    """Raise the exit a signal asked for, if one arrived and was swallowed."""
    if _PENDING:
        raise _PENDING[0]


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: …; elapsed()`` in seconds."""
    began = time.perf_counter()
    end: list[float] = []
    try:
        yield lambda: (end[0] if end else time.perf_counter()) - began
    finally:
        end.append(time.perf_counter())

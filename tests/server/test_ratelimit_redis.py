"""Rate limits shared through a real redis-server: two limiters, then two server processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mimiverse.server.ratelimit import Limiter, build_storage
from mimiverse.settings import Settings
from tests.conftest import RedisServer, free_port

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") or os.access("/usr/bin/redis-server", os.X_OK)),
    reason="redis-server not found: install Debian's redis-server (scripts/setup --dev)",
)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-rl")).start()
    yield server
    server.stop()


def flush_all(server: RedisServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK")


async def test_two_limiters_share_counts(redis: RedisServer) -> None:
    settings = Settings(redis_url=redis.url, data_dir=Path("/nonexistent"))
    first, second = Limiter(build_storage(settings)), Limiter(build_storage(settings))
    key = uuid.uuid4().hex
    assert [await first.hit("4/minute", key), await second.hit("4/minute", key)] == [0, 0]
    assert [await first.hit("4/minute", key), await second.hit("4/minute", key)] == [0, 0]
    wait = await first.hit("4/minute", key)
    assert 1 <= wait <= 60 and await second.test("4/minute", key) > 0
    await second.clear("4/minute", key)
    assert await first.hit("4/minute", key) == 0
    await first.close()
    await second.close()


class Serve:
    """`mimiverse serve` (no models) on a free port, sharing rate-limit counts via Redis."""

    def __init__(self, base: Path, name: str, redis_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / f"{name}.log"
        (base / "proj").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
        env.update(
            MIMI_CONFIG=str(base / "absent.toml"),
            MIMI_DATA_DIR=str(base / name),
            MIMI_PORT=str(self.port),
            MIMI_PROJECT_ROOT=str(base / "proj"),
            MIMI_LOG_LEVEL="warning",
            MIMI_EMBEDDED="false",
            MIMI_INDEX_ON_START="false",
            MIMI_REDIS_URL=redis_url,
            MIMI_RATE_LIMIT_DEFAULT="10/minute",
        )
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mimiverse.cli", "serve"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
            )  # fmt: skip

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                httpx.get(self.url + "/api/health", timeout=2)  # exempt from the limits
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mimiverse serve did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def servers(
    redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, Serve]]:
    base = tmp_path_factory.mktemp("two-serves")
    pair = Serve(base, "a", redis.url), Serve(base, "b", redis.url)
    try:
        for serve in pair:
            serve.wait_ready()
        yield pair
    finally:
        for serve in pair:
            serve.stop()


@pytest.mark.parametrize("first", [0, 1], ids=["11th-on-a", "11th-on-b"])
def test_eleventh_request_is_refused_by_whichever_process_gets_it(
    servers: tuple[Serve, Serve], redis: RedisServer, first: int
) -> None:
    """Acceptance (issue 6): 10/minute holds across two processes sharing one Redis."""
    flush_all(redis)  # a fresh minute for each case
    order = [servers[(first + i) % 2] for i in range(12)]
    codes = [httpx.get(s.url + "/v1/models", timeout=10).status_code for s in order[:10]]
    assert codes == [200] * 10
    eleventh = httpx.get(order[10].url + "/v1/models", timeout=10)
    twelfth = httpx.get(order[11].url + "/v1/models", timeout=10)
    for refused in (eleventh, twelfth):
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        error = refused.json()["error"]
        assert error["type"] == "rate_limited" and "10/minute" in error["message"]

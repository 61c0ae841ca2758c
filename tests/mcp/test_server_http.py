"""/mcp on a real `mimiverse serve` (no embedded models), driven by the SDK's HTTP client."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from tests.conftest import free_port
from tests.mcp.test_server_stdio import CALC, MIMIVERSE


@dataclass
class Served:
    url: str
    token: str
    project: Path


def start_serve(log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`mimiverse serve`, once it answers HTTP (its health is 'degraded': no models here)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(MIMIVERSE), "serve"], stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{env['MIMI_PORT']}/api/health", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=30)
    raise RuntimeError("mimiverse serve did not start:\n" + log.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module; the token comes from `mimiverse mcp --print-token`."""
    base = tmp_path_factory.mktemp("mcp-http")
    project, data = base / "proj", base / "data"
    project.mkdir()
    (project / "calc.py").write_text(CALC)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMI_")}
    env.update(
        MIMI_DATA_DIR=str(data),
        MIMI_CONFIG=str(base / "absent.toml"),
        MIMI_LOG_LEVEL="warning",
    )
    printed = subprocess.run(
        [str(MIMIVERSE), "mcp", "--print-token"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    token = printed.stdout.strip()
    assert (data / "api-token").stat().st_mode & 0o777 == 0o600
    env.update(
        MIMI_PORT=str(port),
        MIMI_EMBEDDED="false",
        MIMI_INDEX_ON_START="false",
        MIMI_PROJECT_ROOT=str(project),
    )
    proc = start_serve(base / "serve.log", env)
    try:
        yield Served(f"http://127.0.0.1:{port}/mcp", token, project)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def connect(served: Served, http: httpx2.AsyncClient, mode: str = "auto") -> Client:
    return Client(streamable_http_client(served.url, http_client=http), mode=mode)


def bearer(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
def test_mcp_without_the_token_is_401(served: Served, headers: dict[str, str]) -> None:
    resp = httpx.post(
        served.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
    )
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "mimiverse mcp --print-token" in resp.json()["error"]["message"]


@pytest.mark.parametrize("named", [None, "query", "header"])
async def test_the_project_is_the_servers_own_named_or_not(
    served: Served, named: str | None
) -> None:
    ref = f"local/{served.project.name}"
    url = served.url + (f"?project={ref}" if named == "query" else "")
    headers = {**bearer(served), **({"X-Mimi-Project": ref} if named == "header" else {})}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        listed = {r.name for r in (await client.list_resources()).resources}
        assert "calc.py" in listed
        read = await client.read_resource("mimiverse://files/calc.py")
        assert "return a - b" in read.contents[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["query", "header"])
def test_any_other_project_is_404(served: Served, where: str) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    params = {"project": "local/elsewhere"} if where == "query" else {}
    header = {"X-Mimi-Project": "local/elsewhere"} if where == "header" else {}
    resp = httpx.post(served.url, params=params, json=ping, headers={**bearer(served), **header})
    assert resp.status_code == 404
    assert "no project 'local/elsewhere'" in resp.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_lists_and_calls_tools_over_http(served: Served, mode: str) -> None:
    async with (
        httpx2.AsyncClient(headers=bearer(served)) as http,
        connect(served, http, mode) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"read_file", "edit_file"} <= names
        read = await client.call_tool("read_file", {"path": "calc.py"})
        assert not read.is_error and "return a - b" in read.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("read_file", {})
        assert bad.is_error and "path: Field required" in bad.content[0].text  # type: ignore[union-attr]


async def test_each_session_proposes_its_own_changeset_for_mimiverse_to_apply(
    served: Served,
) -> None:
    shared = served.project / "shared.py"
    shared.write_text(CALC)
    edit = {"path": "shared.py", "search": "a - b"}
    async with (
        httpx2.AsyncClient(headers=bearer(served)) as http,
        connect(served, http, "legacy") as first,
        connect(served, http, "legacy") as second,
    ):
        one = await first.call_tool("edit_file", {**edit, "replace": "a + b"})
        two = await second.call_tool("edit_file", {**edit, "replace": "b + a"})
    assert not one.is_error and not two.is_error
    assert one.structured_content is not None and two.structured_content is not None
    first_id = one.structured_content["changeset"]["id"]
    second_id = two.structured_content["changeset"]["id"]
    assert first_id != second_id
    assert shared.read_text() == CALC  # proposals only

    with httpx.Client(base_url=served.url.removesuffix("/mcp"), headers=bearer(served)) as api:
        got = [api.get(f"/api/agent/changesets/{cid}") for cid in (first_id, second_id)]
        assert [r.status_code for r in got] == [200, 200], got[0].text
        sessions = {r.json()["session_id"] for r in got}
        assert len(sessions) == 2 and all(s.startswith("mcp-") for s in sessions)

        approved = api.post(f"/api/agent/changesets/{first_id}/approve")
        assert approved.status_code == 200, approved.text
        applied = api.post(f"/api/agent/changesets/{first_id}/apply")
        assert applied.status_code == 200, applied.text
    assert shared.read_text() == CALC.replace("a - b", "a + b")

"""WS /api/terminal/ws: a real shell in the sandbox, over the in-process app."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mimiverse.server.app import create_app
from mimiverse.server.routes.terminal import close_reason
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.security.test_traversal_api import REF_CASES
from tests.security.traversal_corpus import Arena
from tests.server.test_projects import accounts_app, add_user
from tests.workspace.test_pty import new_marker, processes_with

pytestmark = pytest.mark.timeout(60)
BASE = "http://127.0.0.1"
WS = "ws://127.0.0.1/api/terminal/ws"
Socket = Any


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    return root


@pytest.fixture
def local(make_settings: Callable[..., Settings], project: Path) -> Callable[..., TestClient]:
    """A TestClient over an auth=local app whose project_root is ``project``."""

    def build(**options: Any) -> TestClient:
        settings = make_settings(
            project_root=project, index_on_start=False, index_watch=False, rate_limits=False,
            **options,
        )  # fmt: skip
        app = create_app(settings, gateway_with(FakeBackend("fake")))
        return TestClient(app, base_url=BASE, client=("127.0.0.1", 50000))

    return build


def output_until(ws: Socket, needle: str) -> str:
    """Output frames until ``needle`` has been printed; everything printed so far."""
    text = ""
    while needle not in text:
        frame = ws.receive_json()
        assert frame["type"] == "output", f"expected output, got {frame} after {text!r}"
        text += frame["data"]
    return text


def send(ws: Socket, **frame: Any) -> None:
    ws.send_text(json.dumps(frame))


def closed_with(ws: Socket, reason: str = "") -> int:
    """The close code of a socket the server is closing; its reason starts with ``reason``."""
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_json()
    assert closed.value.reason.startswith(reason), closed.value.reason
    return int(closed.value.code)


def test_runs_commands_resizes_and_exits(local: Callable[..., TestClient], project: Path) -> None:
    with local() as tc, tc.websocket_connect(f"{WS}?cols=100&rows=30") as ws:
        send(ws, type="input", data="echo hello-$((6*7))\r")
        output_until(ws, "hello-42")
        send(ws, type="input", data="stty size; pwd; echo '€-''ok'\r")
        shown = output_until(ws, "€-ok")
        assert "30 100\r\n" in shown and f"{project}\r\n" in shown
        send(ws, type="resize", cols=120, rows=40)
        send(ws, type="input", data="stty size | tr ' ' x\r")
        output_until(ws, "40x120")
        send(ws, type="input", data="exit 5\r")
        frame = ws.receive_json()
        while frame["type"] == "output":
            frame = ws.receive_json()
        assert frame == {"type": "exit", "code": 5}
        assert closed_with(ws) == 1000


def test_bad_frames_get_an_error_and_change_nothing(local: Callable[..., TestClient]) -> None:
    bad_frames = [
        "not json",
        json.dumps(["input", "ls"]),
        json.dumps({"type": "launch", "data": "ls"}),
        json.dumps({"data": "ls"}),
        json.dumps({"type": "input", "data": 5}),
        json.dumps({"type": "input", "data": "ls", "extra": 1}),
        json.dumps({"type": "input", "data": "x" * 70_000}),
        json.dumps({"type": "resize", "cols": 0, "rows": 24}),
        json.dumps({"type": "resize", "cols": 80, "rows": 1001}),
        json.dumps({"type": "resize", "cols": True, "rows": 24}),
        json.dumps({"type": "resize", "cols": "80", "rows": 24}),
        json.dumps({"type": "resize", "cols": 80.5, "rows": 24}),
        json.dumps({"type": "resize", "cols": 80}),
    ]
    with local() as tc, tc.websocket_connect(f"{WS}?cols=80&rows=24") as ws:
        output_until(ws, "#")  # the prompt
        for text in bad_frames:
            ws.send_text(text)
            frame = ws.receive_json()
            assert frame["type"] == "error", (text, frame)
            assert frame["error"]["code"] == 400 and frame["error"]["message"]
        ws.send_bytes(b'{"type": "input", "data": "ls"}')
        assert "JSON text frames" in ws.receive_json()["error"]["message"]
        send(ws, type="input", data="stty size | tr ' ' x\r")
        output_until(ws, "24x80")  # still the first size: no bad resize went through


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("cols=abc", 400, "cols"),
        ("cols=0", 400, "cols"),
        ("rows=1001", 400, "rows"),
        ("cols=-5", 400, "cols"),
        ("project=nobody/nothing", 404, "project"),
        ("project=" + "x" * 300, 400, "200 characters"),
    ],
)
def test_bad_handshakes_are_refused(
    local: Callable[..., TestClient], query: str, status: int, words: str
) -> None:
    with local() as tc, tc.websocket_connect(f"{WS}?{query}") as ws:
        frame = ws.receive_json()
        assert frame["type"] == "error" and frame["error"]["code"] == status
        assert words in frame["error"]["message"]
        assert closed_with(ws, frame["error"]["message"][:40]) == 4000 + status


def test_cross_site_origin_is_refused(local: Callable[..., TestClient]) -> None:
    with local() as tc:
        evil = {"Origin": "https://evil.example"}
        with pytest.raises(WebSocketDisconnect) as refused, tc.websocket_connect(WS, headers=evil):
            pass
        assert refused.value.code == 4403
        with tc.websocket_connect(WS, headers={"Origin": BASE}) as ws:
            send(ws, type="input", data="echo same-$((1+1))\r")
            output_until(ws, "same-2")


def test_too_many_terminals_are_refused(local: Callable[..., TestClient]) -> None:
    with local(terminal_max_sessions=1) as tc:
        with tc.websocket_connect(WS) as first:
            send(first, type="input", data="echo one-$((0+1))\r")
            output_until(first, "one-1")
            with tc.websocket_connect(WS) as second:
                frame = second.receive_json()
                assert frame["error"]["code"] == 429
                assert "MIMI_TERMINAL_MAX_SESSIONS" in frame["error"]["message"]
                assert closed_with(second) == 4429
        with tc.websocket_connect(WS) as again:  # the first one's slot is free again
            send(again, type="input", data="echo two-$((1+1))\r")
            output_until(again, "two-2")


def test_closing_the_socket_kills_the_tree(local: Callable[..., TestClient]) -> None:
    marker = new_marker()
    with local() as tc:
        with tc.websocket_connect(WS) as ws:
            send(ws, type="input", data=f"sleep {marker} & echo started-$((2+2))\r")
            output_until(ws, "started-4")
            assert wait_until(lambda: len(processes_with(marker)) == 1)
        assert wait_until(lambda: processes_with(marker) == [])


def test_idle_terminal_says_why_it_closed(local: Callable[..., TestClient]) -> None:
    with local(terminal_idle_s=0.5) as tc, tc.websocket_connect(WS) as ws:
        text = ""
        frame = ws.receive_json()
        while frame["type"] == "output":
            text += frame["data"]
            frame = ws.receive_json()
        assert "MIMI_TERMINAL_IDLE_S" in text
        assert frame == {"type": "exit", "code": 137}
        assert closed_with(ws) == 1000


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- auth=accounts --------------------------------------------------------------------------


@contextlib.contextmanager
def accounts_client(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    """An auth=accounts app with alice (project alice/app) and bob (bob/app)."""
    app = accounts_app(make_settings, tmp_path)
    alice, bob = add_user(app, "alice"), add_user(app, "bob")
    with TestClient(app, base_url=BASE, client=("127.0.0.1", 50000)) as tc:
        for who in (alice, bob):
            made = tc.post("/api/projects", json={"name": "app"}, headers=who)
            assert made.status_code == 201, made.text
        yield tc, alice, bob


def test_only_your_own_projects(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    alice_root = tmp_path / "ws" / "users" / "alice" / "app"
    with accounts_client(make_settings, tmp_path) as (tc, alice, bob):
        with tc.websocket_connect(f"{WS}?project=alice/app", headers=alice) as ws:
            send(ws, type="input", data="pwd; echo mine-$((3*3))\r")
            assert f"{alice_root}\r\n" in output_until(ws, "mine-9")
        with tc.websocket_connect(f"{WS}?project=alice/app", headers=bob) as ws:
            frame = ws.receive_json()
            assert frame["type"] == "error" and frame["error"]["type"] == "not_found"
            assert str(tmp_path) not in json.dumps(frame)
            assert closed_with(ws) == 4404
        anonymous = pytest.raises(WebSocketDisconnect)
        with anonymous as refused, tc.websocket_connect(f"{WS}?project=alice/app"):
            pass
        assert refused.value.code == 4401


def test_project_references_never_leave_the_callers_roots(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The traversal corpus's project references (and paths) against the terminal."""
    arena = Arena(tmp_path / "arena")
    problems: list[str] = []
    with accounts_client(make_settings, tmp_path) as (tc, alice, _):
        for case in REF_CASES:
            ref = case.text(arena)
            with tc.websocket_connect(WS, headers=alice, params={"project": ref}) as ws:
                frame = ws.receive_json()
                code = closed_with(ws)
            if frame.get("type") != "error" or code not in (4400, 4404):
                problems.append(f"{case.id}: answered {frame} and closed {code}")
            problems += arena.check(case, json.dumps(frame))
            if str(tmp_path) in json.dumps(frame).replace(json.dumps(ref)[1:-1], ""):
                problems.append(f"{case.id}: the answer shows a server path: {frame}")
    assert not problems, "\n".join(problems)


def test_input_the_shell_does_not_read_is_refused_not_queued(
    local: Callable[..., TestClient],
) -> None:
    marker = new_marker()
    with local() as tc:
        with tc.websocket_connect(WS) as ws:
            send(ws, type="input", data=f"echo busy-$((5+5)); sleep {marker}\r")
            output_until(ws, "busy-10")
            for _ in range(40):  # 2.4 MB that the sleeping shell never reads
                send(ws, type="input", data="y" * 60_000)
            refused = ws.receive_json()
            while refused["type"] == "output":  # what the tty took in, echoed
                refused = ws.receive_json()
            assert refused["type"] == "error" and refused["error"]["code"] == 429
            assert "not reading its input" in refused["error"]["message"]
        # the client left while input was still waiting: the shell goes all the same
        assert wait_until(lambda: processes_with(marker) == [])


def test_close_reasons_fit_a_close_frame() -> None:
    assert close_reason("short") == "short"
    cut = close_reason("é" * 200)
    assert len(cut.encode()) <= 123 and cut.endswith("...") and "\ufffd" not in cut

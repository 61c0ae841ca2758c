"""The files API (issue 7) on real files in a temp project: tree, content, save with
conflict detection, create, rename, delete, upload, the watch WebSocket, and in
auth=accounts, that one user reaches nothing of another's."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from mimiverse.server.app import create_app
from mimiverse.server.routes.files import PATH_PATTERN, check_path
from mimiverse.server.web import WEB_DIR
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from mimiverse.workspace.project_files import language_of, language_table
from tests.server.test_projects import accounts_app, add_user

CALC = "def add(a, b):\n    return a + b\n"


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with code, a nested folder, .git, a binary, and links in and out."""
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "calc.py").write_text(CALC)
    (root / "README.md").write_text("# Project\n")
    (root / "src" / "pkg" / "mod.ts").write_text("export const x = 1;\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    (root / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "calc_link.py").symlink_to("calc.py")
    return root


@pytest.fixture
def make_client(
    project: Path, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., TestClient]]:
    """TestClients of auth=local apps over ``project`` (settings overridable), lifespan on."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        settings = make_settings(
            project_root=project, index_on_start=False, embedded=False, rate_limits=False,
            **overrides,
        )  # fmt: skip
        app = create_app(settings, gateway_with(FakeBackend("fake")))
        client = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def error(resp: Any, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return str(resp.json()["error"]["message"])


# --- tree ---------------------------------------------------------------------------------


def test_tree_lists_one_folder_dirs_first_git_and_links_out_hidden(client: TestClient) -> None:
    resp = client.get("/api/files/tree")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["path"] == "" and body["truncated"] is False
    assert [(e["name"], e["kind"]) for e in body["entries"]] == [
        ("src", "dir"),
        ("calc.py", "file"),
        ("calc_link.py", "file"),  # a link inside the project shows as what it points to
        ("Dockerfile", "file"),
        ("logo.png", "file"),
        ("README.md", "file"),
    ]
    calc = next(e for e in body["entries"] if e["name"] == "calc.py")
    assert calc == {"path": "calc.py", "name": "calc.py", "kind": "file", "size": len(CALC)}
    assert body["entries"][0]["size"] is None

    nested = client.get("/api/files/tree", params={"path": "src/pkg"}).json()
    assert nested["path"] == "src/pkg"
    assert nested["entries"] == [
        {"path": "src/pkg/mod.ts", "name": "mod.ts", "kind": "file", "size": 20}
    ]
    assert client.get("/api/files/tree", params={"path": "./src//pkg/"}).json() == nested


def test_tree_of_a_file_a_missing_folder_git_or_a_way_out(client: TestClient) -> None:
    assert "it is a file" in error(client.get("/api/files/tree", params={"path": "calc.py"}), 404)
    error(client.get("/api/files/tree", params={"path": "nothing"}), 404)
    assert ".git is hidden" in error(client.get("/api/files/tree", params={"path": ".git"}), 404)
    for way_out in ("..", "out", "../outside", "/etc"):
        message = error(client.get("/api/files/tree", params={"path": way_out}), 400)
        assert "relative to the project root" in message


# --- reading -----------------------------------------------------------------------------


def test_content_has_text_hash_language_and_size(client: TestClient, project: Path) -> None:
    resp = client.get("/api/files/content", params={"path": "calc.py"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "path": "calc.py",
        "content": CALC,
        "sha256": sha(CALC),
        "language": "python",
        "size": len(CALC),
    }
    ts = client.get("/api/files/content", params={"path": "src/pkg/mod.ts"}).json()
    assert ts["language"] == "typescript"
    docker = client.get("/api/files/content", params={"path": "Dockerfile"}).json()
    assert docker["language"] == "dockerfile"
    (project / "crlf.txt").write_bytes(b"a\r\nb\r\n\xef\xbb\xbfc")
    crlf = client.get("/api/files/content", params={"path": "crlf.txt"}).json()
    assert crlf["content"] == "a\r\nb\r\n\ufeffc" and crlf["sha256"] == sha(
        b"a\r\nb\r\n\xef\xbb\xbfc"
    )
    assert crlf["language"] == "plaintext"


def test_binary_other_encodings_large_missing_and_folders_are_refused(
    make_client: Callable[..., TestClient], project: Path
) -> None:
    client = make_client(max_file_bytes=1000)

    def get(path: str) -> Any:
        return client.get("/api/files/content", params={"path": path})

    assert "binary" in error(get("logo.png"), 415)
    (project / "latin1.txt").write_bytes("café".encode("latin-1"))
    assert "not UTF-8" in error(get("latin1.txt"), 415)
    (project / "big.txt").write_text("x" * 1001)
    assert "MIMI_MAX_FILE_BYTES" in error(get("big.txt"), 413)
    assert get("big.txt").json()["error"]["limit"] == 1000
    error(get("missing.py"), 404)
    assert "is a folder" in error(get("src"), 404)
    assert ".git is hidden" in error(get(".git/config"), 404)
    assert "relative to the project root" in error(get("out/secret.txt"), 400)
    assert "relative to the project root" in error(get("../outside/secret.txt"), 400)


# --- saving ----------------------------------------------------------------------------


def test_save_over_the_version_read(client: TestClient, project: Path) -> None:
    opened = client.get("/api/files/content", params={"path": "calc.py"}).json()
    new = CALC.replace("+", "-")
    resp = client.put(
        "/api/files/content",
        json={"path": "calc.py", "content": new, "base_sha256": opened["sha256"]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"path": "calc.py", "sha256": sha(new)}
    assert (project / "calc.py").read_text() == new
    assert not [p for p in project.iterdir() if p.name.endswith(".mimi-tmp")]


def test_a_stale_save_is_a_409_and_leaves_the_disk_as_it_was(
    client: TestClient, project: Path
) -> None:
    opened = client.get("/api/files/content", params={"path": "calc.py"}).json()
    elsewhere = CALC + "# edited in another editor\n"
    (project / "calc.py").write_text(elsewhere)
    before = (project / "calc.py").stat()
    resp = client.put(
        "/api/files/content",
        json={"path": "calc.py", "content": "lost?\n", "base_sha256": opened["sha256"]},
    )
    assert "changed on disk" in error(resp, 409)
    assert resp.json()["current_sha256"] == sha(elsewhere)
    assert resp.json()["error"]["current_sha256"] == sha(elsewhere)
    assert (project / "calc.py").read_text() == elsewhere
    assert (project / "calc.py").stat().st_mtime_ns == before.st_mtime_ns
    (project / "calc.py").unlink()
    gone = client.put(
        "/api/files/content",
        json={"path": "calc.py", "content": "x", "base_sha256": opened["sha256"]},
    )
    assert "deleted" in error(gone, 409) and gone.json()["current_sha256"] is None
    assert not (project / "calc.py").exists()


def test_save_without_base_overwrites_or_creates_and_keeps_the_mode(
    client: TestClient, project: Path
) -> None:
    script = project / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    resp = client.put("/api/files/content", json={"path": "run.sh", "content": "#!/bin/sh\nls\n"})
    assert resp.status_code == 200, resp.text
    assert script.read_text() == "#!/bin/sh\nls\n" and script.stat().st_mode & 0o777 == 0o755
    made = client.put("/api/files/content", json={"path": "new/deep/a.txt", "content": "é"})
    assert made.status_code == 200 and (project / "new" / "deep" / "a.txt").read_text() == "é"
    assert "is a folder" in error(
        client.put("/api/files/content", json={"path": "src", "content": "x"}), 409
    )


def test_saves_larger_than_the_limit_or_not_text_write_nothing(
    make_client: Callable[..., TestClient], project: Path
) -> None:
    client = make_client(max_file_bytes=100)
    resp = client.put("/api/files/content", json={"path": "calc.py", "content": "é" * 51})
    assert "MIMI_MAX_FILE_BYTES" in error(resp, 413)
    assert (project / "calc.py").read_text() == CALC
    bad = client.put(
        "/api/files/content",
        content=b'{"path": "calc.py", "content": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and (project / "calc.py").read_text() == CALC


def test_save_follows_a_link_inside_and_refuses_one_out(client: TestClient, project: Path) -> None:
    resp = client.put("/api/files/content", json={"path": "calc_link.py", "content": "x = 1\n"})
    assert resp.status_code == 200, resp.text
    assert (project / "calc.py").read_text() == "x = 1\n" and (
        project / "calc_link.py"
    ).is_symlink()
    out = client.put("/api/files/content", json={"path": "out/secret.txt", "content": "pwned"})
    assert "relative to the project root" in error(out, 400)
    assert (project.parent / "outside" / "secret.txt").read_text() == "secret\n"


# --- create, rename, delete ---------------------------------------------------------------


def test_create_files_and_folders(client: TestClient, project: Path) -> None:
    made = client.post("/api/files", json={"path": "lib/util.py", "content": "u = 1\n"})
    assert made.status_code == 201, made.text
    assert made.json() == {"path": "lib/util.py", "kind": "file", "sha256": sha("u = 1\n")}
    assert (project / "lib" / "util.py").read_text() == "u = 1\n"
    folder = client.post("/api/files", json={"path": "docs/api", "kind": "dir"})
    assert folder.status_code == 201 and folder.json() == {"path": "docs/api", "kind": "dir"}
    assert (project / "docs" / "api").is_dir()
    empty = client.post("/api/files", json={"path": "empty.txt"})
    assert empty.status_code == 201 and (project / "empty.txt").read_bytes() == b""

    assert "exists already" in error(
        client.post("/api/files", json={"path": "calc.py", "content": "overwritten?"}), 409
    )
    assert (project / "calc.py").read_text() == CALC
    error(client.post("/api/files", json={"path": "src", "kind": "dir"}), 409)
    error(client.post("/api/files", json={"path": "calc.py/x", "content": ""}), 409)
    error(client.post("/api/files", json={"path": "d", "kind": "dir", "content": "x"}), 400)
    error(client.post("/api/files", json={"path": ".git/hooks/pre-commit", "content": "x"}), 404)
    assert not (project / ".git" / "hooks").exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"path": "f.txt", "content": "x"}, 201),
        ({"path": "g.txt", "kind": "file", "content": "x"}, 201),
        ({"path": "d1", "kind": "dir"}, 201),
        ({"path": "d2", "kind": "dir", "content": None}, 201),
        ({"path": "d3", "kind": "dir", "content": ""}, 201),
        ({"path": "d4", "kind": "dir", "content": "x"}, 400),
    ],
)
def test_the_document_admits_the_create_bodies_the_route_accepts(
    client: TestClient, project: Path, body: dict[str, Any], status: int
) -> None:
    """A folder with content is a 400, and the schema says so (schemathesis holds us to it)."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CreateBody"]
    assert jsonschema_rs.validator_for(schema).is_valid(body) == (status == 201)
    resp = client.post("/api/files", json=body)
    assert resp.status_code == status, resp.text
    assert (project / body["path"]).exists() == (status == 201)


def test_rename_files_and_folders(client: TestClient, project: Path) -> None:
    moved = client.post("/api/files/rename", json={"path": "calc.py", "to": "lib/calc.py"})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"path": "calc.py", "to": "lib/calc.py"}
    assert (project / "lib" / "calc.py").read_text() == CALC and not (project / "calc.py").exists()
    assert client.post("/api/files/rename", json={"path": "src", "to": "source"}).status_code == 200
    assert (project / "source" / "pkg" / "mod.ts").is_file()

    taken = client.post("/api/files/rename", json={"path": "README.md", "to": "Dockerfile"})
    assert "exists already" in error(taken, 409)
    assert (project / "README.md").read_text() == "# Project\n"
    assert (project / "Dockerfile").read_text() == "FROM scratch\n"
    error(client.post("/api/files/rename", json={"path": "nothing", "to": "x"}), 404)
    error(client.post("/api/files/rename", json={"path": ".", "to": "x"}), 403)
    error(client.post("/api/files/rename", json={"path": "source", "to": "source/in"}), 400)
    link = client.post("/api/files/rename", json={"path": "calc_link.py", "to": "link2.py"})
    assert link.status_code == 200 and (project / "link2.py").is_symlink()
    for field in ("path", "to"):
        body = {"path": "README.md", "to": "moved.md"} | {field: "../outside/moved.md"}
        assert "relative to the project root" in error(
            client.post("/api/files/rename", json=body), 400
        )
    assert (project / "README.md").exists()


def test_delete_files_links_and_folders(client: TestClient, project: Path) -> None:
    resp = client.delete("/api/files", params={"path": "calc_link.py"})
    assert resp.status_code == 200 and resp.json() == {"path": "calc_link.py"}
    assert not (project / "calc_link.py").exists() and (project / "calc.py").read_text() == CALC
    assert client.delete("/api/files", params={"path": "README.md"}).status_code == 200
    assert not (project / "README.md").exists()

    assert "recursive=true" in error(client.delete("/api/files", params={"path": "src"}), 409)
    assert (project / "src" / "pkg" / "mod.ts").exists()
    gone = client.delete("/api/files", params={"path": "src", "recursive": "true"})
    assert gone.status_code == 200 and not (project / "src").exists()
    error(client.delete("/api/files", params={"path": "missing"}), 404)
    error(client.delete("/api/files", params={"path": "."}), 403)
    error(client.delete("/api/files", params={"path": ".git", "recursive": "true"}), 404)
    assert "relative to the project root" in error(
        client.delete("/api/files", params={"path": "out", "recursive": "true"}), 400
    )
    assert (project / ".git" / "config").exists()
    assert (project.parent / "outside" / "secret.txt").exists()


# --- upload ------------------------------------------------------------------------------


def test_upload_files_into_a_folder(client: TestClient, project: Path) -> None:
    png = bytes(range(256))
    resp = client.post(
        "/api/files/upload",
        params={"dir": "assets"},
        files=[("files", ("icon.png", png)), ("files", ("css/site.css", b"body{}"))],
    )
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"paths": ["assets/icon.png", "assets/css/site.css"]}
    assert (project / "assets" / "icon.png").read_bytes() == png
    assert (project / "assets" / "css" / "site.css").read_bytes() == b"body{}"
    root = client.post("/api/files/upload", files=[("files", ("notes.txt", b"n"))])
    assert root.status_code == 201 and root.json() == {"paths": ["notes.txt"]}


def test_an_upload_over_an_existing_file_writes_nothing_unless_asked(
    client: TestClient, project: Path
) -> None:
    parts = [("files", ("fresh.txt", b"new")), ("files", ("calc.py", b"overwritten"))]
    assert "nothing was uploaded" in error(client.post("/api/files/upload", files=parts), 409)
    assert not (project / "fresh.txt").exists() and (project / "calc.py").read_text() == CALC
    again = client.post("/api/files/upload", params={"overwrite": "true"}, files=parts)
    assert again.status_code == 201, again.text
    assert (project / "calc.py").read_bytes() == b"overwritten"
    assert (project / "fresh.txt").read_bytes() == b"new"


def test_uploads_are_size_capped_and_names_checked(
    make_client: Callable[..., TestClient], project: Path
) -> None:
    client = make_client(max_body_bytes=10_000)
    big = client.post("/api/files/upload", files=[("files", ("big.bin", b"x" * 20_000))])
    assert "MIMI_MAX_BODY_BYTES" in error(big, 413) and not (project / "big.bin").exists()
    for name in ("../outside/pwned.txt", "out/pwned.txt"):
        bad = client.post("/api/files/upload", files=[("files", (name, b"x"))])
        assert "relative to the project root" in error(bad, 400)
    twice = [("files", ("a.txt", b"1")), ("files", ("a.txt", b"2"))]
    assert "both named" in error(client.post("/api/files/upload", files=twice), 409)
    assert not (project / "a.txt").exists()
    assert not (project.parent / "outside" / "pwned.txt").exists()


# --- watching --------------------------------------------------------------------------


def next_message(ws: WebSocketTestSession, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next JSON message, or a failure after ``timeout_s``."""

    async def receive() -> Any:
        with anyio.fail_after(timeout_s):
            return await ws._send_rx.receive()

    message = ws.portal.call(receive)
    ws._raise_on_close(message)
    data: dict[str, Any] = json.loads(message["text"])
    return data


def changes_until(
    ws: WebSocketTestSession,
    wanted: Callable[[list[dict[str, str]]], bool],
    act: Callable[[], object],
) -> list[dict[str, str]]:
    """Do ``act`` (again every 0.3 s, until the watch is surely armed) and collect the
    changes the socket reports until ``wanted`` holds."""
    seen: list[dict[str, str]] = []
    done = threading.Event()

    def repeat() -> None:
        while not done.is_set():
            act()
            done.wait(0.3)

    worker = threading.Thread(target=repeat, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not wanted(seen):
            message = next_message(ws, max(0.1, deadline - time.monotonic()))
            assert message["type"] == "changes", message
            seen += message["changes"]
    finally:
        done.set()
        worker.join()
    return seen


def test_watch_reports_files_added_changed_and_deleted(client: TestClient, project: Path) -> None:
    target = project / "src" / "live.py"
    with client.websocket_connect("ws://127.0.0.1/api/files/watch") as ws:
        added = changes_until(
            ws,
            lambda seen: {"change": "added", "path": "src/live.py"} in seen,
            lambda: target.write_text("x = 1\n") if not target.exists() else None,
        )
        assert all(not c["path"].startswith(".git") for c in added)
        changed = changes_until(
            ws,
            lambda seen: {"change": "modified", "path": "src/live.py"} in seen,
            lambda: target.write_text(f"x = {time.time()}\n"),
        )
        assert changed
        deleted = changes_until(
            ws,
            lambda seen: {"change": "deleted", "path": "src/live.py"} in seen,
            lambda: target.unlink(missing_ok=True),
        )
        assert deleted


def test_watch_ignores_git_and_reports_api_saves(client: TestClient, project: Path) -> None:
    with client.websocket_connect("ws://127.0.0.1/api/files/watch") as ws:
        counter = iter(range(1000))

        def act() -> None:
            (project / ".git" / "index").write_text("churn")
            n = next(counter)
            client.put("/api/files/content", json={"path": "saved.txt", "content": str(n)})

        seen = changes_until(ws, lambda s: any(c["path"] == "saved.txt" for c in s), act)
    assert not [c for c in seen if ".git" in c["path"] or c["path"].endswith(".mimi-tmp")]


def test_watch_of_a_project_one_may_not_use_closes_with_4404(client: TestClient) -> None:
    with client.websocket_connect("ws://127.0.0.1/api/files/watch?project=local/other") as ws:
        assert "no project" in next_message(ws)["error"]["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            next_message(ws)
    assert closed.value.code == 4404


# --- auth=accounts: one user's files are nobody else's ---------------------------------------


@pytest.fixture
def accounts(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Any]:
    app = accounts_app(make_settings, tmp_path)
    alice, bob = add_user(app, "alice", "core"), add_user(app, "bob")
    carol = add_user(app, "carol", "core")
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        for who in (alice, bob):
            assert (
                client.post("/api/projects", json={"name": "app"}, headers=who).status_code == 201
            )
        team = client.post("/api/projects", json={"name": "shared", "team": "core"}, headers=alice)
        assert team.status_code == 201
        ws = tmp_path / "ws"
        (ws / "users" / "alice" / "app" / "secret.py").write_text("ALICE = 'zebra'\n")
        (ws / "teams" / "core" / "shared" / "team.py").write_text("TEAM = 1\n")
        yield client, alice, bob, carol, ws


def test_bob_reaches_nothing_of_alices(accounts: Any) -> None:
    client, alice, bob, _, ws = accounts
    own = client.get("/api/files/content", params={"project": "alice/app", "path": "secret.py"},
                     headers=alice)  # fmt: skip
    assert own.status_code == 200 and own.json()["content"] == "ALICE = 'zebra'\n"

    missing = error(
        client.get("/api/files/tree", params={"project": "alice/none"}, headers=bob), 404
    )
    attempts = [
        client.get("/api/files/tree", params={"project": "alice/app"}, headers=bob),
        client.get("/api/files/content", params={"project": "alice/app", "path": "secret.py"},
                   headers=bob),
        client.put("/api/files/content", headers=bob,
                   json={"project": "alice/app", "path": "secret.py", "content": "pwned"}),
        client.post("/api/files", headers=bob, json={"project": "alice/app", "path": "x.py"}),
        client.post("/api/files/rename", headers=bob,
                    json={"project": "alice/app", "path": "secret.py", "to": "y.py"}),
        client.delete("/api/files", params={"project": "alice/app", "path": "secret.py"},
                      headers=bob),
        client.post("/api/files/upload", params={"project": "alice/app"}, headers=bob,
                    files=[("files", ("z.py", b"z"))]),
        client.get("/api/files/tree", params={"project": "team:core/shared"}, headers=bob),
    ]  # fmt: skip
    for resp in attempts:
        assert resp.status_code == 404, resp.text
        assert re.sub(r"'[^']*'", "''", resp.json()["error"]["message"]) == re.sub(
            r"'[^']*'", "''", missing
        )  # the same answer as a project that does not exist
    assert sorted(p.name for p in (ws / "users" / "alice" / "app").iterdir()) == ["secret.py"]
    assert (ws / "users" / "alice" / "app" / "secret.py").read_text() == "ALICE = 'zebra'\n"
    bobs = client.get("/api/files/tree", headers=bob).json()
    assert bobs == {"path": "", "entries": [], "truncated": False}  # bob/default, his own

    url = "ws://127.0.0.1/api/files/watch?project=alice/app"
    with client.websocket_connect(url, headers=bob) as sock:
        assert "no project" in next_message(sock)["error"]["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            next_message(sock)
    assert closed.value.code == 4404


def test_team_members_share_the_team_project(accounts: Any) -> None:
    client, alice, _, carol, _ = accounts
    body = {"project": "team:core/shared", "path": "team.py", "content": "TEAM = 2\n"}
    assert client.put("/api/files/content", json=body, headers=carol).status_code == 200
    read = client.get("/api/files/content", params={"project": "team:core/shared",
                                                    "path": "team.py"}, headers=alice)  # fmt: skip
    assert read.json()["content"] == "TEAM = 2\n"


def test_files_need_credentials_in_accounts_mode(accounts: Any) -> None:
    client = accounts[0]
    assert client.get("/api/files/tree").status_code == 401
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("ws://127.0.0.1/api/files/watch"),
    ):
        pass
    assert refused.value.code == 4401


# --- the language table --------------------------------------------------------------------


def test_language_ids_are_ones_monaco_registers() -> None:
    definitions = WEB_DIR / "node_modules" / "monaco-editor" / "esm" / "vs" / "languages"
    if not definitions.is_dir():
        pytest.skip("Monaco is not installed: run bash scripts/setup")
    known = {"plaintext", "json", "css", "html", "typescript", "javascript"}
    for register in definitions.glob("definitions/*/register.js"):
        known.update(re.findall(r'\bid: "([^"]+)"', register.read_text()))
    names, extensions = language_table()
    assert set(names.values()) | set(extensions.values()) <= known
    assert language_of("a/b/App.TSX") == "typescript"
    assert language_of("Makefile") == "plaintext" and language_of("x.unknown") == "plaintext"


# --- the documented path rule ------------------------------------------------------------


def test_names_up_to_the_file_systems_limit_work_and_longer_ones_are_a_400(
    client: TestClient, project: Path
) -> None:
    longest = "n" * 251 + ".txt"
    made = client.post("/api/files", json={"path": f"deep/{longest}", "content": "a"})
    assert made.status_code == 201, made.text
    saved = client.put("/api/files/content", json={"path": f"deep/{longest}", "content": "b"})
    assert saved.status_code == 200 and (project / "deep" / longest).read_text() == "b"
    for too_long in ("n" * 256, "é" * 64):
        resp = client.post("/api/files", json={"path": too_long, "content": "a"})
        assert "too long" in error(resp, 400)
        resp = client.get("/api/files/content", params={"path": f"src/{too_long}"})
        assert "too long" in error(resp, 400)
    assert client.post("/api/files", json={"path": "é" * 63}).status_code == 201


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.from_regex(PATH_PATTERN, fullmatch=True))
def test_every_path_the_schema_allows_is_accepted(text: str) -> None:
    assert check_path(text) == text
    assert all(len(name.encode()) <= 255 for name in text.split("/"))


def test_names_of_spaces_and_odd_characters_are_names(client: TestClient, project: Path) -> None:
    for name in (" ", " lead", "trail ", "résumé.md", "数据.txt", "a b/c d.txt"):
        made = client.put("/api/files/content", json={"path": name, "content": name})
        assert made.status_code == 200, (name, made.text)
        assert (project / name).read_text() == name
        read = client.get("/api/files/content", params={"path": name}).json()
        assert read["content"] == name and read["path"] == name
    assert "trail" not in [p.name for p in project.iterdir()]  # never stripped

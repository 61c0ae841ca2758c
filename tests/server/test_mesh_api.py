"""/api/mesh against a real mesh node inside the app, and a second device on the wire.

The app runs its node (``mesh`` on) on 127.0.0.1; the second device joins it by an invite
from the API and runs its own ``MeshService`` in the app's event loop (the TestClient's
portal), so notes written through the API travel over the real transport.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mimiverse.accounts.principal import SCOPES
from mimiverse.errors import ConfigError
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import DeviceKey, Invite, fingerprint
from mimiverse.mesh.loopback import sync_pair
from mimiverse.mesh.replica import Replica
from mimiverse.mesh.service import MeshService, create_mesh, join_mesh, open_replica
from mimiverse.mesh.snapshot import read_snapshot_info, restore_snapshot
from mimiverse.server.app import accounts_of, create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with


def make_app(make_settings: Callable[..., Settings], mesh_dir: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "mesh_listen": "127.0.0.1:0", "mesh_sync_interval_s": 1.0, "embedded": False,
        "index_on_start": False,
    }  # fmt: skip
    settings = make_settings(mesh_dir=mesh_dir, **(values | overrides))
    return create_app(settings, gateway_with(FakeBackend("fake")))


def client_of(app: Any, **headers: str) -> TestClient:
    return TestClient(
        app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000), headers=headers
    )


@pytest.fixture
def owner_dir(tmp_path: Path) -> Path:
    create_mesh(tmp_path / "owner").close()
    return tmp_path / "owner"


@pytest.fixture
def running(make_settings: Callable[..., Settings], owner_dir: Path) -> Iterator[TestClient]:
    with client_of(make_app(make_settings, owner_dir, mesh=True)) as client:
        yield client


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def poll(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """``until`` for checks that call the API (they run in the test's thread)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def start_member(directory: Path, invite: str, peer: str) -> MeshService:
    replica = await join_mesh(directory, invite, peer, name="laptop")
    service = await MeshService(replica, listen=None, sync_interval_s=1.0).start()
    assert await service.wait_for_peers(1)
    return service


async def member_put(service: MeshService, kind: str, key: str, value: str) -> None:
    async with service.writing() as replica:
        replica.put(kind, key, value)  # type: ignore[arg-type]


def notes_of(client: TestClient, kind: str = "note") -> dict[str, Any]:
    resp = client.get("/api/mesh/notes", params={"kind": kind})
    assert resp.status_code == 200, resp.text
    return {row["key"]: row for row in resp.json()["notes"]}


# --- the node inside the app, and a second device -------------------------------------------


def test_notes_travel_both_ways_and_concurrent_edits_show_as_conflicts(
    running: TestClient, tmp_path: Path
) -> None:
    client, portal = running, running.portal
    assert portal is not None
    status = client.get("/api/mesh/status").json()
    assert status["running"] is True and status["role"] == "owner"
    assert status["listening"].startswith("ws://127.0.0.1:")
    made = client.post("/api/mesh/invites", json={"role": "member", "ttl_s": 600})
    assert made.status_code == 201, made.text
    invite = made.json()
    assert invite["peer"] == status["listening"] and invite["role"] == "member"
    assert len(invite["code"]) == 19 and invite["text"].startswith("mimi-invite:")

    member = portal.call(start_member, tmp_path / "laptop", invite["text"], invite["peer"])
    try:
        put = client.put(
            "/api/mesh/notes/design/auth",
            params={"kind": "decision"},
            json={"value": "argon2id: memory-hard"},
        )
        assert put.status_code == 200, put.text
        assert put.json()["key"] == "design/auth" and put.json()["seq"] >= 1
        arrived = portal.call(
            until, lambda: member.replica.state.get("decision", "design/auth") is not None
        )
        assert arrived
        assert member.replica.state.get("decision", "design/auth") == "argon2id: memory-hard"

        portal.call(member_put, member, "note", "from-laptop", "hello owner")
        assert poll(lambda: "from-laptop" in notes_of(client))
        assert notes_of(client)["from-laptop"]["value"] == "hello owner"

        # Edits made while the devices are apart are both kept and both shown.
        client.put("/api/mesh/notes/plan", json={"value": "v1"})
        assert portal.call(until, lambda: member.replica.state.get("note", "plan") == "v1")
        portal.call(member.close)
        assert client.put("/api/mesh/notes/plan", json={"value": "owner's"}).status_code == 200
        member.replica.put("note", "plan", "laptop's")
        member = portal.call(MeshService(member.replica, listen=None).start)
        synced = client.post("/api/mesh/sync", params={"timeout_s": 10})
        assert synced.status_code == 200 and synced.json()["running"] is True
        assert portal.call(until, lambda: len(member.replica.state.conflicts("note", "plan")) == 2)
        assert poll(lambda: len(notes_of(client)["plan"]["conflicts"]) == 2)
        plan = notes_of(client)["plan"]
        assert {c["value"] for c in plan["conflicts"]} == {"owner's", "laptop's"}
        assert plan["value"] in ("owner's", "laptop's")

        # The member's log, as the owner holds it.
        device = fingerprint(member.replica.author)
        log = client.get("/api/mesh/log", params={"author": device, "limit": 2}).json()
        assert log["author"] == device and log["name"] == "laptop" and log["size"] == 2
        assert [b["seq"] for b in log["blocks"]] == [2, 1]
        assert log["blocks"][0]["payload"] == {"op": "put", "key": "plan", "value": "laptop's",
                                               "base": 1}  # fmt: skip
        own = client.get("/api/mesh/log").json()
        roster = [b for b in own["blocks"] if b["kind"] == "roster"]
        assert roster and roster[-1]["payload"]["device"] == device
        status = client.get("/api/mesh/status").json()
        assert status["blocks"] == sum(log["blocks"] for log in status["logs"].values())
        assert status["state_hash"] == member.replica.state_hash().hex()
    finally:
        portal.call(member.close)
        member.replica.close()


def test_backup_writes_a_signed_snapshot_without_secrets_that_restores(
    running: TestClient, owner_dir: Path, tmp_path: Path
) -> None:
    client = running
    assert client.put("/api/mesh/notes/a", json={"value": "😀" * 15_000}).status_code == 200
    invite = client.post("/api/mesh/invites", json={}).json()
    made = client.post("/api/mesh/backup")
    assert made.status_code == 201, made.text
    info = made.json()
    path = owner_dir / "backups" / info["name"]
    assert info["folder"] == "backups" and path.name.endswith(".mimisnap")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_snapshot_info(path).sha256 == info["sha256"]
    data = path.read_bytes()
    assert (owner_dir / "device.key").read_bytes() not in data  # the key stays home
    assert Invite.from_text(invite["text"]).secret not in data  # so do open invites
    status = client.get("/api/mesh/status").json()
    key = DeviceKey.load(owner_dir / "device.key")
    summary = restore_snapshot(path, tmp_path / "restored", key)
    assert summary.state_hash.hex() == status["state_hash"] and summary.role == "owner"
    # A long value is summarised in the log, never sent whole.
    [block] = client.get("/api/mesh/log", params={"limit": 1}).json()["blocks"]
    assert block["payload"]["value"]["truncated"] is True
    assert block["payload"]["value"]["chars"] == 15_002


def test_peers_are_added_listed_and_removed(running: TestClient) -> None:
    client = running
    added = client.post("/api/mesh/peers", json={"url": "127.0.0.1:9"})
    assert added.status_code == 200, added.text
    url = "ws://127.0.0.1:9/mesh/v1"
    assert url in [p["address"] for p in added.json()["peers"]]
    assert client.post("/api/mesh/peers", json={"url": "http://x"}).status_code == 400
    gone = client.delete("/api/mesh/peers", params={"url": url})
    assert gone.status_code == 200 and url not in [p["address"] for p in gone.json()["peers"]]
    assert client.delete("/api/mesh/peers", params={"url": url}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/api/mesh/notes", {"params": {"kind": "setting"}}),
        ("get", "/api/mesh/notes", {"params": {"limit": 0}}),
        ("get", "/api/mesh/log", {"params": {"author": "alice"}}),
        ("get", "/api/mesh/log", {"params": {"limit": 501}}),
        ("put", "/api/mesh/notes/k", {"json": {"value": None}}),
        ("put", "/api/mesh/notes/k", {"json": {"value": "1", "extra": 2}}),
        ("put", "/api/mesh/notes/k", {"json": {"value": 2}}),
        ("put", "/api/mesh/notes/k", {"json": {"value": "x" * 15_001}}),
        ("put", "/api/mesh/notes/" + "k" * 257, {"json": {"value": "1"}}),
        ("post", "/api/mesh/invites", {"json": {"role": "owner"}}),
        ("post", "/api/mesh/invites", {"json": {"ttl_s": 10}}),
        ("post", "/api/mesh/peers", {"json": {"url": ""}}),
        ("post", "/api/mesh/sync", {"params": {"timeout_s": 0}}),
    ],
)
def test_bad_input_is_a_400_that_names_the_fix(
    running: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    resp = getattr(running, method)(path, **kwargs)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["message"]


def test_unknown_author_and_missing_note_are_404(running: TestClient) -> None:
    missing = running.get("/api/mesh/log", params={"author": "AAAA-BBBB-CCCC-DDDD"})
    assert missing.status_code == 404 and "status lists" in missing.json()["error"]["message"]
    assert running.delete("/api/mesh/notes/nothing").status_code == 404


# --- without the node: the store on disk -----------------------------------------------------


def test_without_the_node_the_api_reads_and_writes_the_store(
    make_settings: Callable[..., Settings], owner_dir: Path
) -> None:
    with client_of(make_app(make_settings, owner_dir)) as client:
        status = client.get("/api/mesh/status")
        assert status.status_code == 200, status.text
        assert status.json()["running"] is False and status.json()["role"] == "owner"
        assert client.put("/api/mesh/notes/k", json={"value": "π ≈ 3.14"}).status_code == 200
        assert notes_of(client)["k"]["value"] == "π ≈ 3.14"
        assert client.post("/api/mesh/peers", json={"url": "10.0.0.2:7463"}).status_code == 200
        peers = client.get("/api/mesh/peers").json()
        assert peers == {"running": False, "peers": [
            {"device": None, "address": "ws://10.0.0.2:7463/mesh/v1", "direction": "out",
             "connected": False, "rtt_ms": None, "failures": 0, "last_error": None},
        ]}  # fmt: skip
        unsynced = client.post("/api/mesh/sync")
        assert unsynced.status_code == 503 and "MIMI_MESH" in unsynced.json()["error"]["message"]
        assert client.post("/api/mesh/invites", json={}).status_code == 201
        # Another process holding the store (a `mesh run`) is a 409, not a second writer.
        held = open_replica(owner_dir)
        try:
            busy = client.get("/api/mesh/status")
            assert busy.status_code == 409, busy.text
        finally:
            held.close()
        assert client.delete("/api/mesh/notes/k").status_code == 200
        assert notes_of(client) == {}
    reopened = open_replica(owner_dir)
    try:
        assert reopened.state.get("note", "k") is None and reopened.size(reopened.author) == 2
    finally:
        reopened.close()


def test_a_delete_concurrent_with_an_edit_is_listed_and_notes_page(
    make_settings: Callable[..., Settings], owner_dir: Path, tmp_path: Path
) -> None:
    owner = open_replica(owner_dir)
    key = DeviceKey.generate()
    member = Replica.open(tmp_path / "member", key, mesh=owner.mesh)
    try:
        owner.add_device(key.public, "member", "phone")
        for name in ("a", "b", "c", "x"):
            owner.put("snippet", name, f"text {name}")
        sync_pair(owner, member)
        owner.delete("snippet", "x")
        member.put("snippet", "x", "kept on the phone")
        sync_pair(owner, member)
    finally:
        owner.close()
        member.close()
    with client_of(make_app(make_settings, owner_dir)) as client:
        x = notes_of(client, "snippet")["x"]
        assert {(c["deleted"], c["value"]) for c in x["conflicts"]} == {
            (True, None), (False, "kept on the phone"),
        }  # fmt: skip
        assert x["value"] in (None, "kept on the phone")
        first = client.get("/api/mesh/notes", params={"kind": "snippet", "limit": 2}).json()
        assert [n["key"] for n in first["notes"]] == ["a", "b"] and first["next"] == "b"
        rest = client.get(
            "/api/mesh/notes", params={"kind": "snippet", "limit": 2, "after": first["next"]}
        ).json()
        assert [n["key"] for n in rest["notes"]] == ["c", "x"] and rest["next"] is None


def test_only_the_owners_device_invites(
    make_settings: Callable[..., Settings], owner_dir: Path, tmp_path: Path
) -> None:
    mesh = open_replica(owner_dir)
    mesh_id = mesh.mesh
    mesh.close()
    member_dir = tmp_path / "member"
    key = DeviceKey.generate()
    key.save(member_dir / "device.key")
    Replica.open(member_dir, key, mesh=mesh_id).close()
    with client_of(make_app(make_settings, member_dir)) as client:
        refused = client.post("/api/mesh/invites", json={"role": "read-only"})
        assert refused.status_code == 403 and "owner" in refused.json()["error"]["message"]
        assert client.get("/api/mesh/status").json()["role"] == "not on the roster yet"


def test_no_mesh_is_a_404_and_a_node_without_one_does_not_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with client_of(make_app(make_settings, tmp_path / "none")) as client:
        for path in ("/api/mesh/status", "/api/mesh/notes", "/api/mesh/log", "/api/mesh/peers"):
            resp = client.get(path)
            assert resp.status_code == 404 and "mimiverse mesh init" in resp.text
    assert not (tmp_path / "none").exists()
    app = make_app(make_settings, tmp_path / "none", mesh=True)
    with pytest.raises(MeshRejected, match="mimiverse mesh init"), client_of(app):
        pass


def test_a_taken_port_fails_startup_and_names_the_setting(
    make_settings: Callable[..., Settings], owner_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = make_app(make_settings, owner_dir, mesh=True, mesh_listen=f"127.0.0.1:{port}")
        with pytest.raises(ConfigError, match="MIMI_MESH_LISTEN"), client_of(app):
            pass
    open_replica(owner_dir).close()  # the store was let go


# --- who may use it --------------------------------------------------------------------------


def test_only_admins_may_use_the_mesh_api(
    make_settings: Callable[..., Settings], owner_dir: Path
) -> None:
    app = make_app(make_settings, owner_dir, auth="accounts", rate_limits=False)
    accounts = accounts_of(app)
    admin = accounts.create_user("admin", "correct horse battery staple", role="admin")
    member = accounts.create_user("bob", "correct horse battery staple")
    admin_token, _ = accounts.create_token(admin["id"], "t", scopes=sorted(SCOPES))
    api_only, _ = accounts.create_token(admin["id"], "api", scopes=["api"])
    member_token, _ = accounts.create_token(member["id"], "t")
    with client_of(app) as client:

        def call(token: str | None, method: str, path: str, **kwargs: Any) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return int(getattr(client, method)(path, headers=headers, **kwargs).status_code)

        for method, path, kwargs in (
            ("get", "/api/mesh/status", {}),
            ("get", "/api/mesh/notes", {}),
            ("put", "/api/mesh/notes/k", {"json": {"value": "1"}}),
            ("post", "/api/mesh/invites", {"json": {}}),
            ("post", "/api/mesh/backup", {}),
        ):
            assert call(None, method, path, **kwargs) == 401
            assert call(member_token, method, path, **kwargs) == 403
            assert call(api_only, method, path, **kwargs) == 403
        assert call(admin_token, "get", "/api/mesh/status") == 200
        assert call(admin_token, "put", "/api/mesh/notes/k", json={"value": "1"}) == 200
    assert not (owner_dir / "backups").exists()  # nobody but the admin got that far

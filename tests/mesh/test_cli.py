"""`mimiverse mesh …` end to end: real processes, a real node, real WebSockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

MIMI = [sys.executable, "-m", "mimiverse.cli"]


def mesh(tmp: Path, *args: str, check: bool = True, stdin: str | None = None) -> str:
    env = {**os.environ, "MIMI_DATA_DIR": str(tmp / "data"), "COLUMNS": "200"}
    done = subprocess.run(
        [*MIMI, "mesh", *args], env=env, capture_output=True, text=True, timeout=90, input=stdin
    )
    if check and done.returncode != 0:
        raise AssertionError(f"mesh {args} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def test_init_invite_join_put_sync_log(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    out = mesh(tmp_path, "init", "--dir", str(a))
    assert "is its owner" in out
    again = mesh(tmp_path, "init", "--dir", str(a), check=False)
    assert "already holds a mesh" in again
    invite = json.loads(mesh(tmp_path, "invite", "--dir", str(a), "--json"))
    assert invite["text"].startswith("mimi-invite:") and len(invite["code"]) == 19
    mesh(tmp_path, "put", "note", "owner-note", "from the owner", "--dir", str(a))

    port = free_port()
    env = {**os.environ, "MIMI_DATA_DIR": str(tmp_path / "data")}
    node = subprocess.Popen(
        [*MIMI, "mesh", "run", "--dir", str(a), "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        assert "listening at" in node.stdout.readline()
        busy = mesh(tmp_path, "status", "--dir", str(a), check=False)
        assert "in use by another process" in busy

        out = mesh(tmp_path, "join", invite["text"], "--peer", f"127.0.0.1:{port}",
                   "--name", "laptop", "--dir", str(b))  # fmt: skip
        assert "joined mesh" in out
        got = json.loads(mesh(tmp_path, "get", "note", "--dir", str(b), "--json"))
        assert got == {"owner-note": ["from the owner"]}
        reused = mesh(tmp_path, "join", invite["text"], "--peer", f"127.0.0.1:{port}",
                      "--dir", str(tmp_path / "c"), check=False)  # fmt: skip
        assert "owner refused" in reused

        mesh(tmp_path, "put", "decision", "db", "-", "--dir", str(b), stdin="sqlite\n")
        synced = json.loads(mesh(tmp_path, "sync", "--dir", str(b), "--json"))
        assert synced["blocks"] == 3  # roster add + owner note + our decision
        log = json.loads(mesh(tmp_path, "log", "--dir", str(b), "--json"))
        assert [(r["seq"], r["kind"], r["summary"]) for r in log] == [(1, "decision", "put db")]
        status = json.loads(mesh(tmp_path, "status", "--dir", str(b), "--json"))
        assert status["role"] == "member"
        assert {r["name"]: r["role"] for r in status["roster"]} == {
            "owner": "owner",
            "laptop": "member",
        }
    finally:
        node.terminate()
        output, _ = node.communicate(timeout=10)
    assert "admitted" in output
    # The owner got b's decision while running; its store says so once it stopped.
    got = json.loads(mesh(tmp_path, "get", "decision", "db", "--dir", str(a), "--json"))
    assert got == {"db": ["sqlite\n"]}


def test_backup_and_restore(tmp_path: Path) -> None:
    a = tmp_path / "a"
    mesh(tmp_path, "init", "--dir", str(a))
    for i in range(5):
        mesh(tmp_path, "put", "snippet", f"s{i}", f"print({i})", "--dir", str(a))
    snap = tmp_path / "a.snap"
    assert "6 blocks" not in mesh(tmp_path, "backup", str(snap), "--dir", str(a))
    before = json.loads(mesh(tmp_path, "status", "--dir", str(a), "--json"))
    restored = tmp_path / "restored"
    out = mesh(tmp_path, "restore", str(snap), "--key", str(a / "device.key"),
               "--dir", str(restored))  # fmt: skip
    assert "restored into" in out
    after = json.loads(mesh(tmp_path, "status", "--dir", str(restored), "--json"))
    assert after["state_hash"] == before["state_hash"] and after["logs"] == before["logs"]
    refused = mesh(tmp_path, "restore", str(snap), "--key", str(a / "device.key"),
                   "--dir", str(restored), check=False)  # fmt: skip
    assert "error:" in refused


def test_bad_input_is_explained(tmp_path: Path) -> None:
    assert "mimiverse mesh init" in mesh(
        tmp_path, "status", "--dir", str(tmp_path / "x"), check=False
    )
    mesh(tmp_path, "init", "--dir", str(tmp_path / "a"))
    assert "kind is one of" in mesh(
        tmp_path, "put", "memo", "k", "v", "--dir", str(tmp_path / "a"), check=False
    )
    assert "a peer address is" in mesh(
        tmp_path, "peers", "add", "http://x", "--dir", str(tmp_path / "a"), check=False
    )
    damaged = mesh(tmp_path, "join", "mimi-invite:AAAA", "--peer", "127.0.0.1:9",
                   "--dir", str(tmp_path / "b"), check=False)  # fmt: skip
    assert "damaged" in damaged
    started = time.monotonic()
    unreachable = mesh(tmp_path, "sync", "--dir", str(tmp_path / "a"), check=False)
    assert "no peers to sync with" in unreachable and time.monotonic() - started < 30


def test_rotate_accept_role_and_revoke(tmp_path: Path) -> None:
    """A member rotates its key, the owner countersigns, changes its role, revokes it."""
    import asyncio

    from mimiverse.mesh.identity import fingerprint
    from mimiverse.mesh.loopback import sync_pair
    from mimiverse.mesh.service import open_replica

    a, b = tmp_path / "a", tmp_path / "b"
    mesh(tmp_path, "init", "--dir", str(a))
    owner = open_replica(a)
    invite = owner.create_invite()
    owner.close()

    async def join() -> None:
        from mimiverse.mesh.service import MeshService, join_mesh

        service = await MeshService(open_replica(a)).start()
        try:
            (await join_mesh(b, invite.to_text(), service.url())).close()
        finally:
            await service.close()
            service.replica.close()

    asyncio.run(join())
    old_key = (b / "device.key").read_bytes()
    out = mesh(tmp_path, "rotate", "--dir", str(b))
    request = out.split("accept-rotation ", 1)[1].split()[0]
    assert (b / "device.key").read_bytes() != old_key and not (b / "device.key.next").exists()
    damaged = mesh(tmp_path, "accept-rotation", "mimi-rotate:AAAA", "--dir", str(a), check=False)
    assert "damaged" in damaged
    assert "rotated its key" in mesh(tmp_path, "accept-rotation", request, "--dir", str(a))

    owner, member = open_replica(a), open_replica(b)
    try:
        sync_pair(owner, member)
        member.put("note", "signed", "with the new key")
        assert not sync_pair(member, owner).report.counts  # accepted under the new epoch
        who = fingerprint(member.author)
    finally:
        owner.close()
        member.close()
    assert "read-only" in mesh(tmp_path, "role", who, "read-only", "--dir", str(a))
    assert "revoked" in mesh(tmp_path, "revoke", who, "--dir", str(a))
    status = json.loads(mesh(tmp_path, "status", "--dir", str(a), "--json"))
    assert {r["device"]: r["role"] for r in status["roster"]}[who] == "revoked"
    not_owner = mesh(tmp_path, "revoke", who, "--dir", str(b), check=False)
    assert "error:" in not_owner

"""Device keys, key files, invites and join requests; the hybrid logical clock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mimiverse.mesh import hlc
from mimiverse.mesh.errors import MeshRejected
from mimiverse.mesh.identity import (
    DeviceKey,
    Invite,
    JoinRequest,
    check_join,
    fingerprint,
    join_request,
    secret_from_code,
    verify,
)


def test_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "device.key"
    key = DeviceKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = DeviceKey.load_or_create(path)
    assert again.public == key.public
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    DeviceKey.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(MeshRejected, match="chmod 600"):
        DeviceKey.load(path)


def test_signatures_are_bound_to_purpose_and_mesh() -> None:
    key = DeviceKey.generate()
    mesh = b"m" * 32
    signature = key.sign(b"block", mesh, b"hello")
    assert verify(key.public, b"block", mesh, b"hello", signature)
    assert not verify(key.public, b"join", mesh, b"hello", signature)
    assert not verify(key.public, b"block", b"n" * 32, b"hello", signature)
    assert not verify(key.public, b"block", mesh, b"hellO", signature)
    assert not verify(DeviceKey.generate().public, b"block", mesh, b"hello", signature)
    assert not verify(key.public[:31], b"block", mesh, b"hello", signature)
    assert len(fingerprint(key.public)) == 19


def test_invite_text_and_code_round_trip() -> None:
    owner = DeviceKey.generate()
    invite = Invite.create(owner.public, "read-only", expires_ms=10_000)
    assert Invite.from_text(invite.to_text()) == invite
    assert (
        Invite.from_text(invite.to_text().lower().replace("mimi-invite:", "mimi-invite:")) == invite
    )
    code = invite.code()
    assert len(code) == 19 and code.count("-") == 3
    assert secret_from_code(code.lower().replace("-", " ")) == invite.secret
    with pytest.raises(MeshRejected):
        Invite.from_text(invite.to_text()[:-3])
    with pytest.raises(MeshRejected):
        secret_from_code("ABCD-EFGH")
    with pytest.raises(MeshRejected, match="member or read-only"):
        Invite.create(owner.public, "owner", expires_ms=1)


def test_join_request_is_checked() -> None:
    owner, device = DeviceKey.generate(), DeviceKey.generate()
    invite = Invite.create(owner.public, "member", expires_ms=10_000)
    request = join_request(secret_from_code(invite.code()), owner.public, device, "laptop")
    assert JoinRequest.from_bytes(request.to_bytes()) == request
    check_join(invite, request, now_ms=5_000)
    with pytest.raises(MeshRejected, match="expired"):
        check_join(invite, request, now_ms=20_000)
    wrong = join_request(b"0" * 10, owner.public, device, "laptop")
    with pytest.raises(MeshRejected, match="does not match"):
        check_join(invite, wrong, now_ms=5_000)
    renamed = JoinRequest(request.mesh, request.device, "evil", request.proof, request.signature)
    with pytest.raises(MeshRejected, match="does not match"):
        check_join(invite, renamed, now_ms=5_000)
    stolen = JoinRequest(
        request.mesh, DeviceKey.generate().public, request.name, request.proof, request.signature
    )
    with pytest.raises(MeshRejected):
        check_join(invite, stolen, now_ms=5_000)
    unsigned = JoinRequest(request.mesh, request.device, request.name, request.proof, bytes(64))
    with pytest.raises(MeshRejected, match="not signed"):
        check_join(invite, unsigned, now_ms=5_000)


def test_hybrid_clock_is_monotonic_and_follows_peers() -> None:
    now = [1000]
    clock = hlc.HybridClock(clock=lambda: now[0])
    a = clock.now()
    b = clock.now()
    assert b > a and hlc.unpack(a) == (1000, 0) and hlc.unpack(b) == (1000, 1)
    assert clock.observe(hlc.pack(5000, 3))
    c = clock.now()
    assert c > hlc.pack(5000, 3)
    now[0] = 900  # the wall clock went back: we do not
    assert clock.now() > c
    far = hlc.pack(now[0] + hlc.MAX_DRIFT_MS + 10)
    assert not clock.observe(far)  # a runaway peer clock is not adopted
    assert clock.now() < far

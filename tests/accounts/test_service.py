"""Accounts on a real SQLite file: users, sessions, tokens, teams and the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mimiverse.accounts.service import Accounts
from mimiverse.errors import BadRequest, Conflict, Unauthorized
from mimiverse.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(make_settings: Callable[..., Settings]) -> Iterator[Accounts]:
    service = Accounts(make_settings(auth="accounts"))
    yield service
    service.close()


def test_users_are_validated_and_passwords_hashed(accounts: Accounts) -> None:
    alice = accounts.create_user("Alice", PASSWORD, role="admin")
    assert alice["username"] == "alice" and alice["tier"] == "free"
    stored = accounts.db.row("SELECT password_hash FROM users WHERE id = ?", alice["id"])
    assert stored is not None and stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]
    with pytest.raises(Conflict, match="taken"):
        accounts.create_user("ALICE", PASSWORD)
    with pytest.raises(BadRequest, match="at least 10"):
        accounts.create_user("bob", "short")
    for bad in ("../x", "a/b", "", ".", "x" * 40, "bob\x00"):
        with pytest.raises(BadRequest, match="not allowed"):
            accounts.create_user(bad, PASSWORD)


def test_login_rotates_sessions_and_failures_are_audited(accounts: Accounts) -> None:
    accounts.create_user("alice", PASSWORD)
    with pytest.raises(Unauthorized, match="wrong user name or password"):
        accounts.login("alice", "wrong password!", ip="10.0.0.9")
    with pytest.raises(Unauthorized, match="wrong user name or password"):
        accounts.login("nobody", PASSWORD)
    first, principal = accounts.login("alice", PASSWORD)
    assert principal.via == "session" and principal.csrf
    second, _ = accounts.login("alice", PASSWORD, previous=first)
    assert second != first
    assert accounts.authenticate_session(first) is None  # rotated out
    assert accounts.authenticate_session(second) is not None
    # the cookie value is never stored, only its keyed hash
    assert accounts.db.row("SELECT 1 AS x FROM user_sessions WHERE id = ?", second) is None
    logins = accounts.audit.entries(action="login")
    assert [e["ok"] for e in logins] == [True, True, False, False]
    assert logins[-1]["actor"] == "alice" and logins[-1]["ip"] == "10.0.0.9"


def test_sessions_expire_when_idle_and_end_everywhere(
    make_settings: Callable[..., Settings],
) -> None:
    accounts = Accounts(make_settings(auth="accounts", session_idle_s=60))
    user = accounts.create_user("alice", PASSWORD)
    raw, _ = accounts.login("alice", PASSWORD)
    other, _ = accounts.login("alice", PASSWORD)
    accounts.db.execute("UPDATE user_sessions SET last_seen = ?", time.time() - 120)
    assert accounts.authenticate_session(raw) is None
    raw, _ = accounts.login("alice", PASSWORD)
    assert accounts.logout_everywhere(user["id"]) >= 1
    assert (
        accounts.authenticate_session(raw) is None and accounts.authenticate_session(other) is None
    )
    accounts.close()


def test_tokens_are_scoped_expiring_revocable(accounts: Accounts) -> None:
    user = accounts.create_user("alice", PASSWORD)
    raw, info = accounts.create_token(user["id"], "editor", scopes=["v1"], ttl_days=1)
    assert raw.startswith("mimi_") and info["scopes"] == ["v1"]
    stored: Any = accounts.db.row("SELECT hash FROM api_tokens WHERE id = ?", info["id"])
    assert raw not in stored["hash"]
    principal = accounts.authenticate_token(raw)
    assert principal is not None and principal.allows("v1") and not principal.allows("api")
    assert accounts.authenticate_token(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    with pytest.raises(BadRequest, match="admin"):
        accounts.create_token(user["id"], "x", scopes=["admin"])
    with pytest.raises(BadRequest, match="unknown token scopes"):
        accounts.create_token(user["id"], "x", scopes=["root"])
    accounts.db.execute("UPDATE api_tokens SET expires_at = ?", time.time() - 1)
    assert accounts.authenticate_token(raw) is None
    raw2, info2 = accounts.create_token(user["id"], "cli")
    accounts.revoke_token(user["id"], info2["id"], actor="alice")
    assert accounts.authenticate_token(raw2) is None
    actions = [e["action"] for e in accounts.audit.entries()]
    assert actions.count("token_created") == 2 and "token_revoked" in actions


def test_disabled_users_lose_sessions_and_tokens_last_admin_kept(accounts: Accounts) -> None:
    admin = accounts.create_user("root", PASSWORD, role="admin")
    bob = accounts.create_user("bob", PASSWORD)
    raw, _ = accounts.login("bob", PASSWORD)
    token, _ = accounts.create_token(bob["id"], "t")
    accounts.update_user(bob["id"], disabled=True, actor="root")
    assert accounts.authenticate_session(raw) is None and accounts.authenticate_token(token) is None
    with pytest.raises(Unauthorized):
        accounts.login("bob", PASSWORD)
    with pytest.raises(Conflict, match="last admin"):
        accounts.update_user(admin["id"], role="member")
    changed = accounts.update_user(bob["id"], role="admin", disabled=False, actor="root")
    assert changed["role"] == "admin"
    entry = accounts.audit.entries(action="user_updated")[0]
    assert entry["actor"] == "root" and entry["detail"]["role"] == "admin"


def test_teams(accounts: Accounts) -> None:
    alice = accounts.create_user("alice", PASSWORD)
    accounts.create_team("core", "Core team")
    accounts.add_member("core", alice["id"])
    assert accounts.teams_of(alice["id"]) == ("core",)
    raw, _ = accounts.login("alice", PASSWORD)
    principal = accounts.authenticate_session(raw)
    assert principal is not None and principal.teams == ("core",)
    with pytest.raises(Conflict):
        accounts.create_team("core")
    accounts.remove_member("core", alice["id"])
    assert accounts.teams_of(alice["id"]) == ()

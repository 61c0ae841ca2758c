"""Accounts: users, login sessions, API tokens and teams, with every change audited."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from mimiverse.accounts import tokens
from mimiverse.accounts.audit import AuditLog
from mimiverse.accounts.keyfile import kept_secret
from mimiverse.accounts.passwords import (
    check_strength,
    hash_password,
    needs_rehash,
    verify_password,
)
from mimiverse.accounts.principal import SCOPES, Principal, Role
from mimiverse.accounts.store import DB_FILE, AccountDB
from mimiverse.errors import BadRequest, Conflict, NotFound, Unauthorized
from mimiverse.settings import Settings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
"""User names and team slugs: lower-case letters, digits, '_', '.', '-' (they name folders)."""
TOUCH_EVERY_S = 60.0
"""A session's last_seen is written at most this often (reads stay reads)."""
ROLES: tuple[Role, ...] = ("admin", "member")


def session_key(settings: Settings) -> bytes:
    """The key of every keyed hash: the session_secret setting, else a kept random one."""
    secret = settings.session_secret or kept_secret(
        settings.data_dir / "session-secret", "MIMI_SESSION_SECRET"
    )
    return secret.encode()


def check_name(name: str, what: str) -> str:
    """A valid user name or team slug, lower-cased; else a BadRequest saying the rule."""
    value = name.strip().lower()
    if not NAME_RE.match(value) or value in (".", ".."):
        raise BadRequest(
            f"{what} '{name}' is not allowed: use 1-32 lower-case letters, digits, '_', '.' "
            "or '-', starting with a letter or digit"
        )
    return value


def _public_user(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "tier": row["tier"],
        "created_at": row["created_at"],
        "disabled": bool(row["disabled"]),
    }


class Accounts:
    """The accounts service over one SQLite database."""

    def __init__(self, settings: Settings, db: AccountDB | None = None) -> None:
        self.settings = settings
        self.db = db or AccountDB(settings.data_dir / DB_FILE)
        self.audit = AuditLog(self.db)
        self._key = session_key(settings)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # --- users --------------------------------------------------------------------------

    def has_users(self) -> bool:
        """Whether any account exists (the setup page is open until one does)."""
        return self.db.row("SELECT 1 AS x FROM users LIMIT 1") is not None

    def create_user(
        self,
        username: str,
        password: str,
        *,
        role: Role = "member",
        tier: str | None = None,
        actor: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """A new account; the name must be free and the password strong enough."""
        name = check_name(username, "user name")
        if role not in ROLES:
            raise BadRequest(f"role '{role}' does not exist: use admin or member")
        check_strength(password, name)
        user_id = "u_" + secrets.token_hex(8)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (name,)).fetchone():
                raise Conflict(f"the user name '{name}' is taken: choose another")
            conn.execute(
                "INSERT INTO users (id, username, password_hash, role, tier, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, name, hash_password(password), role,
                 tier or self.settings.default_tier, time.time()),
            )  # fmt: skip
        self.audit.record("user_created", actor=actor or name, target=name, ip=ip, role=role)
        return self.user(user_id)

    def user(self, user_id: str) -> dict[str, Any]:
        """One account (no password hash)."""
        row = self.db.row("SELECT * FROM users WHERE id = ?", user_id)
        if row is None:
            raise NotFound(f"no user with id '{user_id}'")
        return _public_user(row)

    def user_by_name(self, username: str) -> dict[str, Any]:
        """One account by name."""
        row = self.db.row("SELECT * FROM users WHERE username = ?", username.strip().lower())
        if row is None:
            raise NotFound(f"no user named '{username}'")
        return _public_user(row)

    def users(self) -> list[dict[str, Any]]:
        """Every account, oldest first."""
        return [_public_user(r) for r in self.db.rows("SELECT * FROM users ORDER BY created_at")]

    def update_user(
        self,
        user_id: str,
        *,
        role: Role | None = None,
        tier: str | None = None,
        disabled: bool | None = None,
        actor: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """Change role, tier or the disabled flag; disabling ends the user's sessions."""
        before = self.user(user_id)
        changes: dict[str, Any] = {}
        if role is not None and role != before["role"]:
            if role not in ROLES:
                raise BadRequest(f"role '{role}' does not exist: use admin or member")
            if before["role"] == "admin" and self._admin_count() <= 1:
                raise Conflict("this is the last admin: make another user admin first")
            changes["role"] = role
        if tier is not None and tier != before["tier"]:
            changes["tier"] = tier
        if disabled is not None and disabled != before["disabled"]:
            if disabled and before["role"] == "admin" and self._admin_count() <= 1:
                raise Conflict("this is the last admin: it cannot be disabled")
            changes["disabled"] = int(disabled)
        if not changes:
            return before
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self.db.execute(f"UPDATE users SET {assignments} WHERE id = ?", *changes.values(), user_id)
        if changes.get("disabled"):
            self.logout_everywhere(user_id, actor=actor, ip=ip, audit=False)
        self.audit.record(
            "user_updated", actor=actor, target=before["username"], ip=ip,
            **{k: (bool(v) if k == "disabled" else v) for k, v in changes.items()},
        )  # fmt: skip
        return self.user(user_id)

    def change_password(
        self, user_id: str, current: str, new: str, *, keep_session: str = "", ip: str = ""
    ) -> None:
        """Set a new password (the current one proves it is the owner); other sessions end."""
        row = self.db.row("SELECT * FROM users WHERE id = ?", user_id)
        if row is None or not verify_password(row["password_hash"], current):
            raise Unauthorized("the current password is wrong")
        check_strength(new, row["username"])
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(new), user_id)
            )
            conn.execute(
                "DELETE FROM user_sessions WHERE user_id = ? AND id != ?", (user_id, keep_session)
            )
        self.audit.record("password_changed", actor=row["username"], target=row["username"], ip=ip)

    def _admin_count(self) -> int:
        row = self.db.row("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0")
        return int(row["n"]) if row else 0

    # --- login sessions -----------------------------------------------------------------

    def login(
        self,
        username: str,
        password: str,
        *,
        ip: str = "",
        user_agent: str = "",
        previous: str = "",
    ) -> tuple[str, Principal]:
        """Check the password and open a new session: ``(cookie value, principal)``.

        The session id is always new (rotation), and ``previous`` — the cookie the
        browser came with, if any — is ended. A wrong name and a wrong password take the
        same time and give the same answer.
        """
        name = username.strip().lower()[:64]
        row = self.db.row("SELECT * FROM users WHERE username = ?", name)
        ok = verify_password(row["password_hash"] if row else None, password)
        if not ok or row is None or row["disabled"]:
            self.audit.record("login", actor=name, ip=ip, ok=False)
            raise Unauthorized("wrong user name or password")
        if needs_rehash(row["password_hash"]):
            self.db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                hash_password(password), row["id"],
            )  # fmt: skip
        raw, csrf, now = tokens.new_session_id(), tokens.new_csrf(), time.time()
        with self.db.transaction() as conn:
            if previous:
                conn.execute(
                    "DELETE FROM user_sessions WHERE id = ?", (tokens.digest(self._key, previous),)
                )
            conn.execute(
                "INSERT INTO user_sessions (id, user_id, csrf, created_at, last_seen, expires_at,"
                " ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tokens.digest(self._key, raw), row["id"], csrf, now, now,
                 now + self.settings.session_ttl_s, ip, user_agent[:300]),
            )  # fmt: skip
        self.audit.record("login", actor=name, target=name, ip=ip)
        principal = self.authenticate_session(raw)
        assert principal is not None
        return raw, principal

    def authenticate_session(self, raw: str) -> Principal | None:
        """The principal of a session cookie, or None when unknown, expired or idle."""
        if not raw or len(raw) > 200:
            return None
        session_id = tokens.digest(self._key, raw)
        row = self.db.row(
            "SELECT s.*, u.username, u.role, u.tier, u.disabled FROM user_sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.id = ?",
            session_id,
        )
        if row is None:
            return None
        now = time.time()
        if (
            row["disabled"]
            or now > row["expires_at"]
            or now - row["last_seen"] > (self.settings.session_idle_s)
        ):
            self.db.execute("DELETE FROM user_sessions WHERE id = ?", session_id)
            return None
        if now - row["last_seen"] > TOUCH_EVERY_S:
            self.db.execute("UPDATE user_sessions SET last_seen = ? WHERE id = ?", now, session_id)
        return Principal(
            user_id=row["user_id"], username=row["username"], role=row["role"],
            tier=row["tier"], via="session", teams=self.teams_of(row["user_id"]),
            session_id=session_id, csrf=row["csrf"],
        )  # fmt: skip

    def logout(self, principal: Principal, *, ip: str = "") -> None:
        """End the session the principal came with."""
        if principal.session_id:
            self.db.execute("DELETE FROM user_sessions WHERE id = ?", principal.session_id)
            self.audit.record("logout", actor=principal.username, ip=ip)

    def logout_everywhere(
        self, user_id: str, *, actor: str = "", ip: str = "", audit: bool = True
    ) -> int:
        """End every session of a user; how many ended."""
        ended = self.db.execute("DELETE FROM user_sessions WHERE user_id = ?", user_id)
        if audit:
            self.audit.record(
                "logout_everywhere", actor=actor, target=self.user(user_id)["username"], ip=ip,
                sessions=ended,
            )  # fmt: skip
        return ended

    def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        """A user's open sessions (no ids: they are credentials)."""
        return self.db.rows(
            "SELECT created_at, last_seen, expires_at, ip, user_agent FROM user_sessions "
            "WHERE user_id = ? ORDER BY last_seen DESC",
            user_id,
        )

    # --- API tokens ---------------------------------------------------------------------

    def create_token(
        self,
        user_id: str,
        name: str,
        *,
        scopes: Iterable[str] = ("api", "v1", "mcp"),
        ttl_days: int | None = None,
        ip: str = "",
    ) -> tuple[str, dict[str, Any]]:
        """A new API token: ``(the token, shown once; its description)``."""
        user = self.user(user_id)
        wanted = sorted(set(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise BadRequest(
                f"unknown token scopes {unknown}: choose from {sorted(SCOPES)}"
                if unknown
                else f"a token needs at least one scope: choose from {sorted(SCOPES)}"
            )
        if "admin" in wanted and user["role"] != "admin":
            raise BadRequest("only admins may create tokens with the admin scope")
        label = name.strip()[:100] or "token"
        days = ttl_days or self.settings.api_token_ttl_days
        if not 1 <= days <= 3650:
            raise BadRequest("a token lives 1 to 3650 days: set ttl_days in that range")
        token_id, raw = tokens.new_api_token()
        now = time.time()
        self.db.execute(
            "INSERT INTO api_tokens (id, user_id, name, hash, scopes, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            token_id, user_id, label, tokens.digest(self._key, raw), " ".join(wanted), now,
            now + days * 86400,
        )  # fmt: skip
        self.audit.record(
            "token_created", actor=user["username"], target=token_id, ip=ip, name=label,
            scopes=wanted,
        )  # fmt: skip
        return raw, self._token_info(token_id)

    def tokens_of(self, user_id: str) -> list[dict[str, Any]]:
        """A user's tokens (never the secret), newest first."""
        rows = self.db.rows(
            "SELECT id FROM api_tokens WHERE user_id = ? ORDER BY created_at DESC", user_id
        )
        return [self._token_info(r["id"]) for r in rows]

    def revoke_token(self, user_id: str, token_id: str, *, actor: str = "", ip: str = "") -> None:
        """Revoke one of the user's tokens."""
        changed = self.db.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? "
            "AND revoked_at IS NULL",
            time.time(), token_id, user_id,
        )  # fmt: skip
        if not changed:
            raise NotFound(
                f"no active token '{token_id}' of yours: GET /api/auth/tokens lists them"
            )
        self.audit.record("token_revoked", actor=actor, target=token_id, ip=ip)

    def authenticate_token(self, raw: str) -> Principal | None:
        """The principal of a bearer token, or None when unknown, expired or revoked."""
        token_id = tokens.token_id_of(raw)
        if not token_id:
            return None
        row = self.db.row(
            "SELECT t.*, u.username, u.role, u.tier, u.disabled FROM api_tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.id = ?",
            token_id,
        )
        if row is None or not tokens.same_secret(tokens.digest(self._key, raw), row["hash"]):
            return None
        now = time.time()
        if row["revoked_at"] is not None or now > row["expires_at"] or row["disabled"]:
            return None
        if row["last_used"] is None or now - row["last_used"] > TOUCH_EVERY_S:
            self.db.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", now, token_id)
        return Principal(
            user_id=row["user_id"], username=row["username"], role=row["role"],
            tier=row["tier"], via="token", scopes=frozenset(row["scopes"].split()),
            teams=self.teams_of(row["user_id"]), token_id=token_id,
        )  # fmt: skip

    def _token_info(self, token_id: str) -> dict[str, Any]:
        row = self.db.row("SELECT * FROM api_tokens WHERE id = ?", token_id)
        assert row is not None
        return {
            "id": row["id"],
            "name": row["name"],
            "scopes": row["scopes"].split(),
            "created_at": row["created_at"],
            "expires_at": row["expires_at"],
            "last_used": row["last_used"],
            "revoked": row["revoked_at"] is not None,
        }

    # --- teams --------------------------------------------------------------------------

    def create_team(
        self, slug: str, name: str = "", *, actor: str = "", ip: str = ""
    ) -> dict[str, Any]:
        """A new team (its shared workspace is made on first use)."""
        value = check_name(slug, "team slug")
        try:
            self.db.execute(
                "INSERT INTO teams (slug, name, created_at) VALUES (?, ?, ?)",
                value, name.strip()[:100] or value, time.time(),
            )  # fmt: skip
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(f"the team '{value}' exists already") from exc
            raise
        self.audit.record("team_created", actor=actor, target=value, ip=ip)
        return self.team(value)

    def team(self, slug: str) -> dict[str, Any]:
        """A team with its members' names."""
        row = self.db.row("SELECT * FROM teams WHERE slug = ?", slug)
        if row is None:
            raise NotFound(f"no team '{slug}'")
        members = self.db.rows(
            "SELECT u.username FROM team_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.team = ? ORDER BY u.username",
            slug,
        )
        return {**row, "members": [m["username"] for m in members]}

    def teams(self) -> list[dict[str, Any]]:
        """Every team."""
        return [self.team(r["slug"]) for r in self.db.rows("SELECT slug FROM teams ORDER BY slug")]

    def add_member(self, slug: str, user_id: str, *, actor: str = "", ip: str = "") -> None:
        """Put a user in a team."""
        self.team(slug)
        user = self.user(user_id)
        self.db.execute(
            "INSERT OR IGNORE INTO team_members (team, user_id) VALUES (?, ?)", slug, user_id
        )
        self.audit.record(
            "team_member_added", actor=actor, target=f"{slug}:{user['username']}", ip=ip
        )

    def remove_member(self, slug: str, user_id: str, *, actor: str = "", ip: str = "") -> None:
        """Take a user out of a team."""
        user = self.user(user_id)
        if not self.db.execute(
            "DELETE FROM team_members WHERE team = ? AND user_id = ?", slug, user_id
        ):
            raise NotFound(f"'{user['username']}' is not in team '{slug}'")
        self.audit.record(
            "team_member_removed", actor=actor, target=f"{slug}:{user['username']}", ip=ip
        )

    def teams_of(self, user_id: str) -> tuple[str, ...]:
        """Slugs of a user's teams."""
        rows = self.db.rows(
            "SELECT team FROM team_members WHERE user_id = ? ORDER BY team", user_id
        )
        return tuple(r["team"] for r in rows)

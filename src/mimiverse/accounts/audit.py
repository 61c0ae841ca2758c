"""The audit log: who did what security-relevant thing, when, from where."""

from __future__ import annotations

import json
import time
from typing import Any

from mimiverse.accounts.store import AccountDB

ACTIONS = frozenset(
    {
        "login",  # ok or failed (failed: actor = the name tried)
        "logout",
        "logout_everywhere",
        "user_created",
        "user_updated",  # role, tier, disabled
        "password_changed",
        "token_created",
        "token_revoked",
        "team_created",
        "team_member_added",
        "team_member_removed",
        "changeset_applied",
        "changeset_undone",
        "settings_changed",
    }
)


class AuditLog:
    """Append-only records in the accounts database."""

    def __init__(self, db: AccountDB) -> None:
        self.db = db

    def record(
        self,
        action: str,
        *,
        actor: str = "",
        target: str = "",
        ip: str = "",
        ok: bool = True,
        **detail: Any,
    ) -> None:
        """Append one record (``action`` is one of ACTIONS)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        self.db.execute(
            "INSERT INTO audit_log (at, action, actor, target, ip, ok, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            time.time(), action, actor, target, ip, int(ok),
            json.dumps(detail, ensure_ascii=False, default=str),
        )  # fmt: skip

    def entries(
        self, *, limit: int = 100, before: int | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` (an id) pages back."""
        sql = "SELECT * FROM audit_log WHERE 1=1"
        args: list[Any] = []
        if before is not None:
            sql += " AND id < ?"
            args.append(before)
        if action:
            sql += " AND action = ?"
            args.append(action)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(limit, 1000)))
        out = self.db.rows(sql, *args)
        for entry in out:
            entry["ok"] = bool(entry["ok"])
            entry["detail"] = json.loads(entry["detail"])
        return out

"""Monthly quotas per account tier: tiers as data, usage metered in memory, kept in SQLite.

Every /api and /v1 request of an account, and every model token spent for it, counts
against its tier's month (UTC calendar month, ``YYYY-MM``). Counts collect in memory and
are added to the ``usage`` table within a second, after ``FLUSH_EVERY`` requests, and at
shutdown, so the hot path (an inline completion per keystroke) never waits on SQLite.
Each write reads back the table's totals, so several server processes on one database
see each other's counts (a second late at most).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import re
import sqlite3
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mimiverse.accounts.principal import LOCAL_USER_ID, Principal
from mimiverse.accounts.store import AccountDB
from mimiverse.errors import BadRequest, ConfigError, RateLimited
from mimiverse.settings import Settings

log = logging.getLogger("mimiverse.accounts.quotas")

FLUSH_AFTER_S = 1.0
"""Longest time a count stays in memory only."""
FLUSH_EVERY = 256
"""Pending requests that trigger a write at once."""
LIMIT_KEYS = ("requests_per_month", "tokens_per_month")
MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_UPSERT = (
    "INSERT INTO usage (user_id, period, requests, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id, period) DO UPDATE SET requests = requests + excluded.requests, "
    "tokens = tokens + excluded.tokens RETURNING requests, tokens"
)


@dataclass(frozen=True)
class Tier:
    """A tier's monthly allowance; 0 means no limit."""

    name: str
    requests_per_month: int = 0
    tokens_per_month: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The limits as JSON (0 = no limit)."""
        return {
            "requests_per_month": self.requests_per_month,
            "tokens_per_month": self.tokens_per_month,
        }


def load_tiers(path: Path | None = None) -> dict[str, Tier]:
    """The tiers in ``path`` (MIMI_TIERS_FILE), else the bundled ``tiers.toml``."""
    where = str(path) if path else "the bundled accounts/tiers.toml"
    try:
        if path is None:
            text = resources.files("mimiverse.accounts").joinpath("tiers.toml").read_text()
        else:
            text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read quota tiers from {where} ({exc}): fix MIMI_TIERS_FILE"
        ) from exc
    tiers: dict[str, Tier] = {}
    for name, table in data.items():
        unknown = set(table) - set(LIMIT_KEYS) if isinstance(table, dict) else {"(not a table)"}
        if unknown:
            raise ConfigError(
                f"tier '{name}' in {where} has {', '.join(sorted(unknown))}: a tier is a "
                f"[table] with only {' and '.join(LIMIT_KEYS)}"
            )
        limits: dict[str, int] = {}
        for key in LIMIT_KEYS:
            value = table.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"tier '{name}' in {where}: {key} = {value!r} must be a whole number "
                    "≥ 0 (0 = no limit)"
                )
            limits[key] = value
        tiers[name] = Tier(name, **limits)
    if not tiers:
        raise ConfigError(f"{where} defines no tier: add [free], [pro] … tables")
    return tiers


def month_of(now: float) -> str:
    """The UTC calendar month of a timestamp, ``YYYY-MM``."""
    return time.strftime("%Y-%m", time.gmtime(now))


def month_end(now: float) -> float:
    """The first second of the UTC month after ``now``'s."""
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)))


def iso(ts: float) -> str:
    """A timestamp as ISO 8601 UTC (``2025-07-01T00:00:00Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Meter:
    """Requests and tokens per (user, month): counted in memory, added to ``usage``."""

    def __init__(
        self,
        db: Callable[[], AccountDB],
        *,
        flush_after_s: float = FLUSH_AFTER_S,
        flush_every: int = FLUSH_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._flush_after_s = flush_after_s
        self._flush_every = flush_every
        self._clock = clock
        self._month, self._month_ends = "", 0.0
        self._stored: dict[tuple[str, str], tuple[int, int]] = {}
        """The table's totals when this process last read or wrote them."""
        self._pending: dict[tuple[str, str], list[int]] = {}
        """Counted here and not written yet: [requests, tokens]."""
        self._pending_requests = 0
        self._timer: asyncio.TimerHandle | None = None

    def month(self) -> tuple[str, float]:
        """The current month and when it ends (recomputed only when it has)."""
        now = self._clock()
        if now >= self._month_ends:
            self._month, self._month_ends = month_of(now), month_end(now)
        return self._month, self._month_ends

    def count_request(self, user_id: str) -> None:
        """One request of ``user_id`` this month."""
        self._add(user_id, 1, 0)

    def add_tokens(self, user_id: str, prompt: int, completion: int) -> None:
        """Model tokens spent for ``user_id`` (the gateway's usage sink calls this)."""
        self._add(user_id, 0, prompt + completion)

    def _add(self, user_id: str, requests: int, tokens: int) -> None:
        key = (user_id, self.month()[0])
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0]
        counts[0] += requests
        counts[1] += tokens
        self._pending_requests += requests
        if self._pending_requests >= self._flush_every:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a script): write now
                self.flush()
                return
            self._timer = loop.call_later(self._flush_after_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def used(self, user_id: str, month: str = "") -> tuple[int, int]:
        """(requests, tokens) of a user in a month (default: this one), unwritten included."""
        key = (user_id, month or self.month()[0])
        stored = self._stored.get(key) or self._read(key)
        pending = self._pending.get(key)
        if pending is None:
            return stored
        return stored[0] + pending[0], stored[1] + pending[1]

    def _read(self, key: tuple[str, str]) -> tuple[int, int]:
        try:
            row = self._db().row(
                "SELECT requests, tokens FROM usage WHERE user_id = ? AND period = ?", *key
            )
        except sqlite3.Error as exc:  # degrade: count from zero, read again next time
            log.warning("cannot read the usage of %s: %s", key[0], exc)
            return 0, 0
        stored = (int(row["requests"]), int(row["tokens"])) if row else (0, 0)
        self._stored[key] = stored
        return stored

    def flush(self) -> None:
        """Add pending counts to the table in one transaction (kept for later if it fails)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending, self._pending_requests = self._pending, {}, 0
        try:
            with self._db().transaction() as conn:
                totals = {
                    key: tuple(conn.execute(_UPSERT, (*key, *counts)).fetchone())
                    for key, counts in pending.items()
                }
        except (sqlite3.Error, OSError) as exc:
            log.warning("usage counts not written yet (%s): keeping them for the next try", exc)
            for key, counts in pending.items():
                mine = self._pending.setdefault(key, [0, 0])
                mine[0] += counts[0]
                mine[1] += counts[1]
                self._pending_requests += counts[0]
            return
        month = self.month()[0]
        self._stored = {k: v for k, v in self._stored.items() if k[1] == month}
        for key, (requests, tokens) in totals.items():
            if key[1] == month:
                self._stored[key] = (requests, tokens)

    def month_totals(self, month: str) -> dict[str, tuple[int, int]]:
        """Every user's (requests, tokens) in ``month``, as written (flushes first)."""
        self.flush()
        rows = self._db().rows(
            "SELECT user_id, requests, tokens FROM usage WHERE period = ?", month
        )
        return {r["user_id"]: (r["requests"], r["tokens"]) for r in rows}

    def close(self) -> None:
        """Write what is pending (at shutdown)."""
        self.flush()


class Quotas:
    """Tier limits and the meter: may this account make one more request this month?"""

    def __init__(
        self, settings: Settings, db: Callable[[], AccountDB], tiers: dict[str, Tier] | None = None
    ) -> None:
        self.settings = settings
        self.tiers = tiers if tiers is not None else load_tiers(settings.tiers_file)
        self.meter = Meter(db)

    @staticmethod
    def applies_to(principal: Principal | None) -> bool:
        """Quotas count accounts: not anonymous callers, not the local admin of auth=local."""
        return (
            principal is not None
            and principal.via != "local"
            and principal.user_id != LOCAL_USER_ID
        )

    def tier(self, name: str) -> Tier:
        """A tier by name; an unknown name gets the default tier (no limit if that is unknown)."""
        return self.tiers.get(name) or self.tiers.get(self.settings.default_tier) or Tier(name)

    def check(self, principal: Principal) -> RateLimited | None:
        """The refusal when the caller's month is used up, else None."""
        tier = self.tier(principal.tier)
        if not tier.requests_per_month and not tier.tokens_per_month:
            return None
        requests, tokens = self.meter.used(principal.user_id)
        if tier.requests_per_month and requests >= tier.requests_per_month:
            spent = f"{tier.requests_per_month:,} requests"
        elif tier.tokens_per_month and tokens >= tier.tokens_per_month:
            spent = f"{tier.tokens_per_month:,} model tokens"
        else:
            return None
        month, ends = self.meter.month()
        others = [name for name in self.tiers if name != tier.name]
        err = RateLimited(
            f"monthly quota used up: the '{tier.name}' tier allows {spent} a month and "
            f"'{principal.username}' has used them in {month}; it resets at {iso(ends)}. "
            "For more, ask an admin to move your account to another tier"
            + (f" ({', '.join(others)})" if others else ""),
            retry_after=math.ceil(ends - time.time()),
        )
        err.code = "quota_exceeded"
        return err

    def report(self, principal: Principal) -> dict[str, Any]:
        """The caller's usage this month, their tier's limits and when the month resets."""
        month, ends = self.meter.month()
        body: dict[str, Any] = {
            "user": {"id": principal.user_id, "username": principal.username},
            "period": month,
            "resets_at": iso(ends),
            "resets_in_s": max(0, math.ceil(ends - time.time())),
        }
        if not self.applies_to(principal):
            return {**body, "metered": False, "tier": None, "requests": 0, "tokens": 0,
                    "limits": None, "remaining": None}  # fmt: skip
        tier = self.tier(principal.tier)
        requests, tokens = self.meter.used(principal.user_id)
        return {
            **body,
            "metered": True,
            "tier": tier.name,
            "requests": requests,
            "tokens": tokens,
            "limits": tier.as_dict(),
            "remaining": _remaining(tier, requests, tokens),
        }

    def everyone(self, users: list[dict[str, Any]], month: str = "") -> dict[str, Any]:
        """Every account's usage in ``month`` (default: this one) beside its tier's limits."""
        if month and not MONTH_RE.match(month):
            raise BadRequest(f"period '{month}' is not a month: write it as YYYY-MM (2025-06)")
        month = month or self.meter.month()[0]
        totals = self.meter.month_totals(month)
        rows = []
        for user in users:
            tier = self.tier(user["tier"])
            requests, tokens = totals.get(user["id"], (0, 0))
            rows.append(
                {
                    "id": user["id"],
                    "username": user["username"],
                    "tier": tier.name,
                    "requests": requests,
                    "tokens": tokens,
                    "limits": tier.as_dict(),
                    "remaining": _remaining(tier, requests, tokens),
                }
            )
        return {"period": month, "users": rows}

    def close(self) -> None:
        """Write pending counts."""
        self.meter.close()


def _remaining(tier: Tier, requests: int, tokens: int) -> dict[str, int | None]:
    """What is left this month (None = no limit)."""
    return {
        "requests": max(0, tier.requests_per_month - requests) if tier.requests_per_month else None,
        "tokens": max(0, tier.tokens_per_month - tokens) if tier.tokens_per_month else None,
    }

"""The browser IDE's preferences per user: mode, theme and panel sizes.

auth=accounts keeps them in the accounts database (table ``ui_prefs``), auth=local (one
user) in ``<data_dir>/ui-prefs.json``, written atomically. Stored preferences that no
longer validate (a mode that was renamed, a hand-edited file) give way to the defaults
rather than failing the IDE.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mimiverse.accounts.store import AccountDB
from mimiverse.workspace.files import atomic_write

log = logging.getLogger("mimiverse.server.ui_prefs")

Mode = Literal["simple", "advanced", "expert"]
Theme = Literal["dark", "light"]
LAYOUT_KEYS = 64
"""Panel sizes kept per user; the oldest go first when a new one would pass this."""
FILE_NAME = "ui-prefs.json"

LayoutKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
LayoutValue = Annotated[float, Field(ge=-1_000_000, le=1_000_000, allow_inf_nan=False)]
ONLY_LAYOUT_KEYS = Field(json_schema_extra={"additionalProperties": False})
"""A layout's schema admits no key beyond LayoutKey's pattern (as validation refuses them)."""


class UiPrefs(BaseModel):
    """What GET /api/ui/prefs answers."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = Field(default="advanced", description="Which panels the IDE shows.")
    theme: Theme = "dark"
    layout: Annotated[dict[LayoutKey, LayoutValue], ONLY_LAYOUT_KEYS] = Field(
        default_factory=dict, description="Panel sizes by name (pixels or fractions)."
    )


class PrefsUpdate(BaseModel):
    """PUT /api/ui/prefs: only what is sent changes; a layout key set to null is dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)
    mode: Mode | None = None
    theme: Theme | None = None
    layout: Annotated[dict[LayoutKey, LayoutValue | None], ONLY_LAYOUT_KEYS] | None = Field(
        default=None, max_length=LAYOUT_KEYS, description="Panel sizes to set (null: forget)."
    )

    def apply(self, prefs: UiPrefs) -> UiPrefs:
        """``prefs`` with this update."""
        layout = dict(prefs.layout)
        for key, value in (self.layout or {}).items():
            layout.pop(key, None)  # re-inserted last: the newest stay when trimming
            if value is not None:
                layout[key] = value
        kept = list(layout.items())[-LAYOUT_KEYS:]
        return UiPrefs(
            mode=self.mode or prefs.mode, theme=self.theme or prefs.theme, layout=dict(kept)
        )


class PrefsStore(Protocol):
    """Where preferences live."""

    def get(self, user_id: str) -> UiPrefs:
        """The user's preferences (the defaults when none are stored)."""
        ...

    def update(self, user_id: str, change: Callable[[UiPrefs], UiPrefs]) -> UiPrefs:
        """Apply ``change`` to the stored preferences, atomically; the result."""
        ...


def _parsed(raw: str, where: str) -> UiPrefs:
    try:
        return UiPrefs.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("ignoring stored UI preferences in %s (%s); using defaults", where, exc)
        return UiPrefs()


class DatabasePrefs:
    """Preferences in the accounts database, one row per user."""

    def __init__(self, db: AccountDB) -> None:
        self.db = db

    def get(self, user_id: str) -> UiPrefs:
        row = self.db.row("SELECT json FROM ui_prefs WHERE user_id = ?", user_id)
        return _parsed(row["json"], "the accounts database") if row else UiPrefs()

    def update(self, user_id: str, change: Callable[[UiPrefs], UiPrefs]) -> UiPrefs:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT json FROM ui_prefs WHERE user_id = ?", (user_id,)).fetchone()
            prefs = change(_parsed(row[0], "the accounts database") if row else UiPrefs())
            conn.execute(
                "INSERT INTO ui_prefs (user_id, json, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET json = excluded.json, "
                "updated_at = excluded.updated_at",
                (user_id, prefs.model_dump_json(), time.time()),
            )
        return prefs


class FilePrefs:
    """auth=local: the one user's preferences in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self, user_id: str) -> UiPrefs:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return UiPrefs()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s (%s); using default UI preferences", self.path, exc)
            return UiPrefs()
        return _parsed(raw, str(self.path))

    def update(self, user_id: str, change: Callable[[UiPrefs], UiPrefs]) -> UiPrefs:
        with self._lock:
            prefs = change(self.get(user_id))
            data = json.dumps(prefs.model_dump(), indent=2).encode() + b"\n"
            atomic_write(self.path, data, mode=0o600)
        return prefs

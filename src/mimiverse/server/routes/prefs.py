"""The browser IDE's preferences of the caller: GET and PUT /api/ui/prefs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from mimiverse.server.auth import principal_of
from mimiverse.server.ui_prefs import (
    FILE_NAME,
    DatabasePrefs,
    FilePrefs,
    PrefsStore,
    PrefsUpdate,
    UiPrefs,
)

router = APIRouter(prefix="/api/ui", tags=["ui"])


def prefs_store_of(app: Any) -> PrefsStore:
    """The app's store: the accounts database in auth=accounts, else a file in the data dir."""
    settings = app.state.settings
    if settings.auth == "accounts":
        from mimiverse.server.app import accounts_of

        return DatabasePrefs(accounts_of(app).db)  # the database of the app's current run
    store: FilePrefs | None = getattr(app.state, "ui_prefs", None)
    if store is None:
        store = FilePrefs(settings.data_dir / FILE_NAME)
        app.state.ui_prefs = store  # one lock for every request's read-change-write
    return store


@router.get("/prefs")
async def get_prefs(request: Request) -> UiPrefs:
    """Mode, theme and panel sizes (defaults: advanced, dark)."""
    user = principal_of(request).user_id
    return await asyncio.to_thread(prefs_store_of(request.app).get, user)


@router.put("/prefs")
async def put_prefs(body: PrefsUpdate, request: Request) -> UiPrefs:
    """Change some preferences; the answer is all of them."""
    user = principal_of(request).user_id
    return await asyncio.to_thread(prefs_store_of(request.app).update, user, body.apply)

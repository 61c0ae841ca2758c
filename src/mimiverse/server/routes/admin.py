"""Admin-only: accounts, teams and the audit log (the guard requires the admin scope)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import Field

from mimiverse.accounts.audit import ACTIONS
from mimiverse.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from mimiverse.server.app import accounts_of
from mimiverse.server.auth import principal_of
from mimiverse.server.clientinfo import client_ip
from mimiverse.server.openapi import errors
from mimiverse.server.schemas import Body

router = APIRouter(prefix="/api/admin", tags=["admin"])
UserId = Annotated[str, PathParam(min_length=1, max_length=64)]
Slug = Annotated[str, PathParam(min_length=1, max_length=32)]
NAME = r"^\s*[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\s*$"
"""User names and team slugs, as ``accounts.service.check_name`` reads them."""


class NewUser(Body):
    """POST /api/admin/users."""

    username: str = Field(min_length=1, max_length=32, pattern=NAME)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    role: Literal["admin", "member"] = "member"
    tier: str | None = Field(default=None, min_length=1, max_length=32)


class UserChange(Body):
    """PATCH /api/admin/users/{id}: any of role, tier, disabled."""

    role: Literal["admin", "member"] | None = None
    tier: str | None = Field(default=None, min_length=1, max_length=32)
    disabled: bool | None = None


class NewTeam(Body):
    """POST /api/admin/teams."""

    slug: str = Field(min_length=1, max_length=32, pattern=NAME)
    name: str = Field(default="", max_length=100)


def _who(request: Request) -> dict[str, str]:
    return {
        "actor": principal_of(request).username,
        "ip": client_ip(request.scope, request.app.state.settings),
    }


@router.get("/users")
async def list_users(request: Request) -> dict[str, Any]:
    """Every account."""
    return {"users": accounts_of(request.app).users()}


@router.post("/users", status_code=201, responses=errors(409))
async def create_user(body: NewUser, request: Request) -> dict[str, Any]:
    """A new account."""
    return accounts_of(request.app).create_user(
        body.username, body.password, role=body.role, tier=body.tier, **_who(request)
    )


@router.patch("/users/{user_id}")
async def update_user(user_id: UserId, body: UserChange, request: Request) -> dict[str, Any]:
    """Change a user's role, tier or disabled flag (disabling ends their sessions)."""
    return accounts_of(request.app).update_user(
        user_id, role=body.role, tier=body.tier, disabled=body.disabled, **_who(request)
    )


@router.post("/users/{user_id}/logout")
async def logout_user(user_id: UserId, request: Request) -> dict[str, Any]:
    """End every session of a user."""
    accounts = accounts_of(request.app)
    accounts.user(user_id)
    who = _who(request)
    ended = accounts.logout_everywhere(user_id, actor=who["actor"], ip=who["ip"])
    return {"sessions_ended": ended}


@router.get("/teams")
async def list_teams(request: Request) -> dict[str, Any]:
    """Every team with its members."""
    return {"teams": accounts_of(request.app).teams()}


@router.post("/teams", status_code=201, responses=errors(409))
async def create_team(body: NewTeam, request: Request) -> dict[str, Any]:
    """A new team; its shared workspace appears on first use."""
    return accounts_of(request.app).create_team(body.slug, body.name, **_who(request))


@router.put("/teams/{slug}/members/{user_id}")
async def add_member(slug: Slug, user_id: UserId, request: Request) -> dict[str, Any]:
    """Put a user in a team."""
    accounts = accounts_of(request.app)
    accounts.add_member(slug, user_id, **_who(request))
    return accounts.team(slug)


@router.delete("/teams/{slug}/members/{user_id}")
async def remove_member(slug: Slug, user_id: UserId, request: Request) -> dict[str, Any]:
    """Take a user out of a team."""
    accounts = accounts_of(request.app)
    accounts.remove_member(slug, user_id, **_who(request))
    return accounts.team(slug)


@router.get("/audit")
async def audit(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    before: int | None = Query(default=None, ge=1, le=2**63 - 1),
    action: str | None = Query(default=None, json_schema_extra={"enum": [*sorted(ACTIONS)]}),
) -> dict[str, Any]:
    """Audit records, newest first; ``before`` (an id) pages back."""
    if action is not None and action not in ACTIONS:
        from mimiverse.errors import BadRequest

        raise BadRequest(f"unknown action '{action}': choose from {sorted(ACTIONS)}")
    return {
        "entries": accounts_of(request.app).audit.entries(limit=limit, before=before, action=action)
    }

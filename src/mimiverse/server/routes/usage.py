"""Usage against monthly quotas: the caller's (GET /api/usage) and everyone's (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from mimiverse.server.auth import principal_of
from mimiverse.server.limiting import quotas_of

router = APIRouter(tags=["usage"])
MONTH_OR_EMPTY = r"^(\d{4}-(0[1-9]|1[0-2]))?$"


@router.get("/api/usage")
async def usage(request: Request) -> dict[str, Any]:
    """This month's requests and tokens, the tier's limits, what is left and when it resets."""
    return quotas_of(request.app).report(principal_of(request))


@router.get("/api/admin/usage")
async def usage_of_everyone(
    request: Request,
    period: Annotated[
        str, Query(pattern=MONTH_OR_EMPTY, description="YYYY-MM; empty = this month (UTC).")
    ] = "",
) -> dict[str, Any]:
    """Every account's usage in a month beside its tier's limits (admins only)."""
    from mimiverse.server.app import accounts_of

    return quotas_of(request.app).everyone(accounts_of(request.app).users(), period)

"""Login, logout, first-admin setup, the caller's own account and API tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BeforeValidator, Field

from mimiverse.accounts.keyfile import kept_secret
from mimiverse.accounts.passwords import MAX_LENGTH
from mimiverse.accounts.principal import SCOPES, Principal
from mimiverse.accounts.service import Accounts
from mimiverse.accounts.tokens import same_secret
from mimiverse.errors import BadRequest, Forbidden, NotFound, RateLimited
from mimiverse.server.app import accounts_of
from mimiverse.server.auth import SESSION_COOKIE, principal_of
from mimiverse.server.clientinfo import client_ip, header, is_https
from mimiverse.server.openapi import errors
from mimiverse.server.schemas import Body, whole_number
from mimiverse.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])
SETUP_CODE_FILE = "setup-code"


class LoginBody(Body):
    """POST /api/auth/login."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class SetupBody(LoginBody):
    """POST /api/auth/setup: the first admin, with the code `mimiverse serve` printed."""

    setup_code: str = Field(min_length=1, max_length=200)


class PasswordBody(Body):
    """POST /api/auth/password."""

    current: str = Field(min_length=1, max_length=MAX_LENGTH)
    new: str = Field(min_length=1, max_length=MAX_LENGTH)


class TokenBody(Body):
    """POST /api/auth/tokens."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(
        default_factory=lambda: ["api", "v1", "mcp"],
        min_length=1,
        max_length=len(SCOPES),
        description=f"Any of {sorted(SCOPES)}; admin only for admins.",
        json_schema_extra={"items": {"type": "string", "enum": [*sorted(SCOPES)]}},
    )
    ttl_days: Annotated[int, Field(ge=1, le=3650), BeforeValidator(whole_number)] | None = None


def setup_code(settings: Settings) -> str:
    """The one-time code the setup page asks for (printed by `mimiverse serve`)."""
    return kept_secret(settings.data_dir / SETUP_CODE_FILE, "the setup code file")


def describe(principal: Principal) -> dict[str, Any]:
    """The caller as the API shows it (with the CSRF token browsers must echo)."""
    return {
        "id": principal.user_id,
        "username": principal.username,
        "role": principal.role,
        "tier": principal.tier,
        "teams": list(principal.teams),
        "via": principal.via,
        "scopes": sorted(principal.scopes),
        "csrf": principal.csrf,
    }


def _accounts(request: Request) -> Accounts:
    settings: Settings = request.app.state.settings
    if settings.auth != "accounts":
        raise BadRequest(
            "accounts are off (auth=local: this machine's user is the admin); run the "
            "server with MIMI_AUTH=accounts to log in"
        )
    return accounts_of(request.app)


def _set_session_cookie(request: Request, response: Response, raw: str) -> None:
    settings: Settings = request.app.state.settings
    secure = settings.cookie_secure == "always" or (
        settings.cookie_secure == "auto" and is_https(request.scope, settings)
    )
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=settings.session_ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def _clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Whether accounts are on, whether the first admin is still to be made, who is calling."""
    settings: Settings = request.app.state.settings
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    setup = settings.auth == "accounts" and not accounts_of(request.app).has_users()
    return {
        "auth": settings.auth,
        "setup_required": setup,
        "user": describe(principal) if principal is not None else None,
    }


@router.post("/setup", status_code=201)
async def setup(body: SetupBody, request: Request, response: Response) -> dict[str, Any]:
    """Create the first admin (only while no account exists) and log in as them."""
    accounts = _accounts(request)
    ip = client_ip(request.scope, request.app.state.settings)
    await _throttle_login(request, "setup", ip)
    if accounts.has_users():
        raise Forbidden("setup is done: an account exists already; log in instead")
    if not same_secret(body.setup_code.strip(), setup_code(request.app.state.settings)):
        raise Forbidden(
            "wrong setup code: use the code `mimiverse serve` printed at start "
            "(also in <data_dir>/setup-code)"
        )
    accounts.create_user(body.username, body.password, role="admin", ip=ip)
    return await login(LoginBody(username=body.username, password=body.password), request, response)


@router.post("/login", responses=errors(401))
async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Check the password, start a new session (the old one, if any, ends) and set its cookie.

    Failed attempts per account and address are limited (``rate_limit_login``), and all
    attempts per address (``rate_limit_login_ip``): past either, 429 with Retry-After.
    """
    accounts = _accounts(request)
    settings: Settings = request.app.state.settings
    ip = client_ip(request.scope, settings)
    name = body.username.strip().lower()
    await _throttle_login(request, name, ip)
    previous = request.cookies.get(SESSION_COOKIE, "")
    try:
        raw, principal = accounts.login(
            name, body.password, ip=ip, user_agent=header(request.scope, "user-agent"),
            previous=previous,
        )  # fmt: skip
    except BadRequest:
        if settings.rate_limits:
            await request.app.state.limiter.hit(settings.rate_limit_login, "login-fail", name, ip)
        raise
    if settings.rate_limits:
        await request.app.state.limiter.clear(settings.rate_limit_login, "login-fail", name, ip)
    _set_session_cookie(request, response, raw)
    return {"user": describe(principal), "csrf": principal.csrf}


async def _throttle_login(request: Request, name: str, ip: str) -> None:
    settings: Settings = request.app.state.settings
    if not settings.rate_limits:
        return
    limiter = request.app.state.limiter
    wait = await limiter.hit(settings.rate_limit_login_ip, "login-ip", ip)
    if not wait:
        wait = await limiter.test(settings.rate_limit_login, "login-fail", name, ip)
    if wait:
        raise RateLimited(f"too many login attempts: wait {wait} s and try again", retry_after=wait)


@router.post("/logout")
async def logout(request: Request, response: Response) -> dict[str, Any]:
    """End this session and clear its cookie."""
    principal = principal_of(request)
    if principal.via == "session":
        accounts_of(request.app).logout(
            principal, ip=client_ip(request.scope, request.app.state.settings)
        )
    _clear_session_cookie(response)
    return {"logged_out": True}


@router.post("/logout-everywhere")
async def logout_everywhere(request: Request, response: Response) -> dict[str, Any]:
    """End every session of the caller, on every device."""
    principal = principal_of(request)
    ended = _accounts(request).logout_everywhere(
        principal.user_id, actor=principal.username,
        ip=client_ip(request.scope, request.app.state.settings),
    )  # fmt: skip
    _clear_session_cookie(response)
    return {"sessions_ended": ended}


@router.get("/me")
async def me(request: Request) -> dict[str, Any]:
    """The caller: name, role, tier, teams, scopes and the session's CSRF token."""
    principal = principal_of(request)
    data = describe(principal)
    if principal.via == "session":
        data["sessions"] = accounts_of(request.app).sessions_of(principal.user_id)
    return data


@router.post("/password")
async def change_password(body: PasswordBody, request: Request) -> dict[str, Any]:
    """Set a new password; every other session of the caller ends."""
    principal = principal_of(request)
    _accounts(request).change_password(
        principal.user_id, body.current, body.new, keep_session=principal.session_id,
        ip=client_ip(request.scope, request.app.state.settings),
    )  # fmt: skip
    return {"changed": True}


@router.get("/tokens")
async def list_tokens(request: Request) -> dict[str, Any]:
    """The caller's API tokens (never their secrets)."""
    principal = principal_of(request)
    return {"tokens": _accounts(request).tokens_of(principal.user_id)}


@router.post("/tokens", status_code=201)
async def create_token(body: TokenBody, request: Request) -> dict[str, Any]:
    """A new API token for the CLI, an editor or an MCP client: shown once, keep it."""
    principal = principal_of(request)
    if principal.via == "token" and "admin" in body.scopes and not principal.allows("admin"):
        raise Forbidden("a token without the admin scope cannot make one that has it")
    raw, info = _accounts(request).create_token(
        principal.user_id, body.name, scopes=body.scopes, ttl_days=body.ttl_days,
        ip=client_ip(request.scope, request.app.state.settings),
    )  # fmt: skip
    return {**info, "token": raw}


@router.delete("/tokens/{token_id}")
async def revoke_token(
    token_id: Annotated[str, PathParam(max_length=64)], request: Request
) -> dict[str, Any]:
    """Revoke one of the caller's tokens."""
    principal = principal_of(request)
    if len(token_id) > 64:
        raise NotFound("no such token")
    _accounts(request).revoke_token(
        principal.user_id, token_id, actor=principal.username,
        ip=client_ip(request.scope, request.app.state.settings),
    )  # fmt: skip
    return {"revoked": token_id}

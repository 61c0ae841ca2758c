"""`mimiverse admin …` and `mimiverse token …`: accounts from the terminal of the server."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mimiverse.accounts.service import Accounts
from mimiverse.errors import MimiError
from mimiverse.settings import Settings

admin_app = typer.Typer(
    help="Manage accounts (works on the server's data dir).", no_args_is_help=True
)
token_app = typer.Typer(
    help="API tokens for the CLI, editors and MCP clients.", no_args_is_help=True
)
console = Console()


def _accounts() -> Accounts:
    return Accounts(Settings())


def _fail(exc: MimiError) -> typer.Exit:
    console.print(f"[red]error:[/] {exc.message}")
    return typer.Exit(1)


def _ask_password(username: str) -> str:
    password: str = typer.prompt(f"Password for {username}", hide_input=True)
    again: str = typer.prompt("Again", hide_input=True)
    if password != again:
        console.print("[red]error:[/] the passwords differ")
        raise typer.Exit(1)
    return password


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Argument(help="Lower-case name, 1-32 characters.")],
    password: Annotated[
        str | None,
        typer.Option(
            envvar="MIMI_ADMIN_PASSWORD", help="Password (prompted when absent; env for scripts)."
        ),
    ] = None,
    member: Annotated[bool, typer.Option(help="Create a member instead of an admin.")] = False,
) -> None:
    """Create an account: the first admin, or more users."""
    accounts = _accounts()
    try:
        user = accounts.create_user(
            username, password or _ask_password(username), role="member" if member else "admin",
            actor="cli",
        )  # fmt: skip
    except MimiError as exc:
        raise _fail(exc) from exc
    finally:
        accounts.close()
    console.print(f"created {user['role']} [bold]{user['username']}[/] ({user['id']})")


@admin_app.command("users")
def admin_users() -> None:
    """List accounts."""
    accounts = _accounts()
    table = Table("id", "user", "role", "tier", "disabled")
    for user in accounts.users():
        table.add_row(
            user["id"], user["username"], user["role"], user["tier"], str(user["disabled"])
        )
    accounts.close()
    console.print(table)


@token_app.command("create")
def token_create(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option(help="api, v1, mcp, admin (repeat); default api v1 mcp.")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Lifetime in days.")] = None,
) -> None:
    """Create an API token and print it (it is shown once)."""
    accounts = _accounts()
    try:
        user = accounts.user_by_name(username)
        raw, info = accounts.create_token(
            user["id"], name, scopes=scope or ("api", "v1", "mcp"), ttl_days=days
        )
    except MimiError as exc:
        raise _fail(exc) from exc
    finally:
        accounts.close()
    expires = dt.datetime.fromtimestamp(info["expires_at"], dt.UTC).date()
    console.print(f"token {info['id']} ({' '.join(info['scopes'])}), expires {expires}:")
    print(raw)


@token_app.command("revoke")
def token_revoke(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    token_id: Annotated[str, typer.Argument(help="The token's id (see `token list`).")],
) -> None:
    """Revoke an API token."""
    accounts = _accounts()
    try:
        accounts.revoke_token(accounts.user_by_name(username)["id"], token_id, actor="cli")
    except MimiError as exc:
        raise _fail(exc) from exc
    finally:
        accounts.close()
    console.print(f"revoked {token_id}")


@token_app.command("list")
def token_list(username: Annotated[str, typer.Argument(help="Whose tokens.")]) -> None:
    """List a user's tokens."""
    accounts = _accounts()
    try:
        tokens = accounts.tokens_of(accounts.user_by_name(username)["id"])
    except MimiError as exc:
        raise _fail(exc) from exc
    finally:
        accounts.close()
    table = Table("id", "name", "scopes", "expires", "revoked")
    for info in tokens:
        expires = dt.datetime.fromtimestamp(info["expires_at"], dt.UTC).date()
        table.add_row(info["id"], info["name"], " ".join(info["scopes"]), str(expires),
                      str(info["revoked"]))  # fmt: skip
    console.print(table)

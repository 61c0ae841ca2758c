"""`mimiverse admin …` and `mimiverse token …`: accounts from the terminal of the server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _accounts() -> Iterator[Accounts]:
    """The server's accounts, closed after; a MimiError ends the command with its message."""
    accounts = Accounts(Settings())
    try:
        yield accounts
    except MimiError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        accounts.close()


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
    with _accounts() as accounts:
        user = accounts.create_user(
            username, password or _ask_password(username), role="member" if member else "admin",
            actor="cli",
        )  # fmt: skip
    console.print(f"created {user['role']} [bold]{user['username']}[/] ({user['id']})")


@admin_app.command("users")
def admin_users() -> None:
    """List accounts."""
    table = Table("id", "user", "role", "tier", "disabled")
    with _accounts() as accounts:
        for user in accounts.users():
            table.add_row(
                user["id"], user["username"], user["role"], user["tier"], str(user["disabled"])
            )
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
    with _accounts() as accounts:
        user = accounts.user_by_name(username)
        raw, info = accounts.create_token(
            user["id"], name, scopes=scope or ("api", "v1", "mcp"), ttl_days=days
        )
    expires = dt.datetime.fromtimestamp(info["expires_at"], dt.UTC).date()
    console.print(f"token {info['id']} ({' '.join(info['scopes'])}), expires {expires}:")
    print(raw)


@token_app.command("revoke")
def token_revoke(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    token_id: Annotated[str, typer.Argument(help="The token's id (see `token list`).")],
) -> None:
    """Revoke an API token."""
    with _accounts() as accounts:
        accounts.revoke_token(accounts.user_by_name(username)["id"], token_id, actor="cli")
    console.print(f"revoked {token_id}")


@token_app.command("list")
def token_list(username: Annotated[str, typer.Argument(help="Whose tokens.")]) -> None:
    """List a user's tokens."""
    with _accounts() as accounts:
        tokens = accounts.tokens_of(accounts.user_by_name(username)["id"])
    table = Table("id", "name", "scopes", "expires", "revoked")
    for info in tokens:
        expires = dt.datetime.fromtimestamp(info["expires_at"], dt.UTC).date()
        table.add_row(info["id"], info["name"], " ".join(info["scopes"]), str(expires),
                      str(info["revoked"]))  # fmt: skip
    console.print(table)

"""`mimiverse admin` and `mimiverse token` against a real accounts database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mimiverse.accounts.service import Accounts
from mimiverse.cli import app
from mimiverse.settings import Settings


def test_admin_and_token_commands(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    env = {"MIMI_ADMIN_PASSWORD": "correct horse battery"}
    made = runner.invoke(app, ["admin", "create", "alice"], env=env)
    assert made.exit_code == 0, made.output
    again = runner.invoke(app, ["admin", "create", "alice"], env=env)
    assert again.exit_code == 1 and "taken" in again.output
    created = runner.invoke(app, ["token", "create", "alice", "--name", "editor"])
    assert created.exit_code == 0, created.output
    raw = created.output.strip().splitlines()[-1]
    accounts = Accounts(make_settings(data_dir=tmp_path / "data"))
    principal = accounts.authenticate_token(raw)
    assert principal is not None and principal.role == "admin"
    token_id = principal.token_id
    listed = runner.invoke(app, ["token", "list", "alice"])
    assert token_id in listed.output
    assert runner.invoke(app, ["token", "revoke", "alice", token_id]).exit_code == 0
    assert accounts.authenticate_token(raw) is None
    unknown = runner.invoke(app, ["token", "list", "nobody"])
    assert unknown.exit_code == 1 and "no user named" in unknown.output
    accounts.close()

"""The /mcp bearer token: from settings, or generated once into the data dir (0600)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mimiverse.mcp.auth import api_token, token_matches, token_path
from mimiverse.settings import Settings


def test_a_token_is_generated_once_and_kept_private(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    token = api_token(settings)
    assert len(token) >= 40
    path = token_path(settings)
    assert path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert api_token(settings) == token


def test_racing_processes_agree_on_one_token(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: api_token(settings), range(32)))
    assert len(tokens) == 1
    assert [p.name for p in token_path(settings).parent.iterdir()] == ["api-token"]


def test_the_setting_wins_and_writes_nothing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_token="from-settings")
    assert api_token(settings) == "from-settings"
    assert not token_path(settings).exists()


def test_a_readable_token_file_is_made_private(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    path = token_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("kept\n")
    os.chmod(path, 0o644)
    assert api_token(settings) == "kept"
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_empty_token_file_is_replaced(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    path = token_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("")
    token = api_token(settings)
    assert token and path.read_text().strip() == token


def test_token_matches() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("", "abc")

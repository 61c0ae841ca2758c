"""GET/PUT /api/ui/prefs: defaults, partial updates, strict bodies, per user, and kept
across restarts (a JSON file in auth=local, the accounts database in auth=accounts)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from mimiverse.server.app import create_app
from mimiverse.server.ui_prefs import LAYOUT_KEYS
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.server.test_projects import accounts_app, add_user

DEFAULTS = {"mode": "advanced", "theme": "dark", "layout": {}}


@pytest.fixture
def local(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[[], Any]:
    """A fresh auth=local app (same data dir each time: a restart) as a running client."""

    @contextmanager
    def running() -> Iterator[TestClient]:
        settings = make_settings(project_root=tmp_path, index_on_start=False, embedded=False)
        app = create_app(settings, gateway_with(FakeBackend("fake")))
        with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as c:
            yield c

    return running


def test_defaults_then_partial_updates_kept_across_restarts(
    local: Callable[[], Any], make_settings: Callable[..., Settings]
) -> None:
    with local() as client:
        assert client.get("/api/ui/prefs").json() == DEFAULTS
        resp = client.put("/api/ui/prefs", json={"mode": "expert"})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"mode": "expert", "theme": "dark", "layout": {}}
        both = client.put("/api/ui/prefs", json={"theme": "light", "layout": {"sidebar": 260}})
        assert both.json() == {"mode": "expert", "theme": "light", "layout": {"sidebar": 260}}
        more = client.put("/api/ui/prefs", json={"layout": {"panel": 0.35, "sidebar": 300.5}})
        assert more.json()["layout"] == {"panel": 0.35, "sidebar": 300.5}
        dropped = client.put("/api/ui/prefs", json={"layout": {"panel": None}})
        assert dropped.json()["layout"] == {"sidebar": 300.5}
    stored = make_settings().data_dir / "ui-prefs.json"
    assert json.loads(stored.read_text())["mode"] == "expert"
    assert stored.stat().st_mode & 0o777 == 0o600
    with local() as client:
        assert client.get("/api/ui/prefs").json() == {
            "mode": "expert",
            "theme": "light",
            "layout": {"sidebar": 300.5},
        }


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "wizard"},
        {"theme": "blue"},
        {"mode": 1},
        {"colour": "red"},
        {"layout": {"sidebar": "wide"}},
        {"layout": {"sidebar": True}},
        {"layout": {"bad key!": 1}},
        {"layout": {"x": 1e12}},
        {"layout": {f"k{i}": i for i in range(LAYOUT_KEYS + 1)}},
        ["mode", "simple"],
    ],
)
def test_bad_bodies_are_refused_and_change_nothing(local: Callable[[], Any], body: Any) -> None:
    with local() as client:
        resp = client.put("/api/ui/prefs", json=body)
        assert resp.status_code == 400, resp.text
        assert client.get("/api/ui/prefs").json() == DEFAULTS


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"theme": "dark", "layout": {"sidebar": -128456.4, "a.b:c-d_1": null}}', 200),
        (b'{"layout": {"sidebar": {"width": 1}}}', 400),
        (b'{"layout": {"\\ud83d": 1}}', 400),
        (b'{"layout": {"\xc3\xa9": 1}}', 400),
        (b'{"layout": {"": 1}}', 400),
        (b'{"layout": {"' + b"k" * 65 + b'": 1}}', 400),
        (b'{"layout": {"x": -1000000.5}}', 400),
    ],
)
def test_the_document_admits_the_layouts_the_route_accepts(
    local: Callable[[], Any], raw: bytes, status: int
) -> None:
    """Keys beyond the pattern (lone surrogates, non-ASCII) and non-numbers are refused, and
    the schema says so (schemathesis holds us to it)."""
    with local() as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["PrefsUpdate"]
        valid = Draft202012Validator(schema).is_valid(json.loads(raw))  # lone surrogates too
        assert valid == (status == 200)
        resp = client.put(
            "/api/ui/prefs", content=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == status, resp.text
        if status != 200:
            assert client.get("/api/ui/prefs").json() == DEFAULTS


def test_nan_is_not_a_size(local: Callable[[], Any]) -> None:
    with local() as client:
        resp = client.put(
            "/api/ui/prefs",
            content=b'{"layout": {"x": NaN}}',
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400
        assert client.get("/api/ui/prefs").json() == DEFAULTS


def test_the_oldest_sizes_give_way_to_new_ones(local: Callable[[], Any]) -> None:
    with local() as client:
        client.put("/api/ui/prefs", json={"layout": {f"a{i}": i for i in range(LAYOUT_KEYS)}})
        layout = client.put("/api/ui/prefs", json={"layout": {"new": 1}}).json()["layout"]
        assert len(layout) == LAYOUT_KEYS and "new" in layout and "a0" not in layout


def test_a_broken_file_gives_the_defaults_until_the_next_save(
    local: Callable[[], Any], make_settings: Callable[..., Settings]
) -> None:
    stored = make_settings().data_dir / "ui-prefs.json"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text("{not json")
    with local() as client:
        assert client.get("/api/ui/prefs").json() == DEFAULTS
        assert client.put("/api/ui/prefs", json={"mode": "simple"}).json()["mode"] == "simple"
    assert json.loads(stored.read_text())["mode"] == "simple"


def test_prefs_are_per_user_and_kept_in_the_accounts_database(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    app = accounts_app(make_settings, tmp_path)
    alice, bob = add_user(app, "alice"), add_user(app, "bob")
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        assert client.get("/api/ui/prefs").status_code == 401
        set_alice = client.put("/api/ui/prefs", json={"mode": "simple"}, headers=alice)
        assert set_alice.status_code == 200, set_alice.text
        client.put("/api/ui/prefs", json={"theme": "light", "layout": {"x": 1}}, headers=bob)
        assert client.get("/api/ui/prefs", headers=alice).json() == {
            "mode": "simple",
            "theme": "dark",
            "layout": {},
        }
        assert client.get("/api/ui/prefs", headers=bob).json() == {
            "mode": "advanced",
            "theme": "light",
            "layout": {"x": 1},
        }
    assert not (make_settings().data_dir / "ui-prefs.json").exists()
    again = accounts_app(make_settings, tmp_path)  # a restart: same data dir, new app
    with TestClient(again, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        assert client.get("/api/ui/prefs", headers=alice).json()["mode"] == "simple"
        assert client.get("/api/ui/prefs", headers=bob).json()["theme"] == "light"

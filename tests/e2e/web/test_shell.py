"""The IDE shell in a real Chromium against a real `mimiverse serve`: modes (with screenshots of
each), persisted prefs, the command palette and quick open, VS Code shortcuts, resizable
panels, theme, the metrics page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import MimiServe
from tests.e2e.web.conftest import PROMPT, IdeServer, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.model]


REGIONS = ("#region-files", "#region-search", "#region-terminal", "#region-agent", "#region-editor")


def shown(page: Page) -> set[str]:
    """The regions the current mode shows (#region-search and #region-files share the side bar)."""
    found = page.evaluate(
        """(ids) => ids.filter((sel) => {
            const el = document.querySelector(sel);
            return el && !el.hidden && el.offsetParent !== null;
        })""",
        list(REGIONS),
    )
    return set(found)


def record_opens(page: Page) -> None:
    """Keep every file:open event in window.__opened."""
    page.evaluate(
        "() => { window.__opened = []; mimi.bus.on('file:open', (d) => window.__opened.push(d)); }"
    )


def opened(page: Page) -> list[dict[str, object]]:
    result: list[dict[str, object]] = page.evaluate("window.__opened")
    return result


def open_in_editor(page: Page, path: str) -> None:
    """Open ``path`` the way a user does (quick open) and wait for its tab."""
    page.keyboard.press("Control+P")
    page.locator("#palette-input").fill(path)
    expect(page.locator("#palette-list [role=option]").first).to_have_attribute(
        "aria-label", re.compile("^" + re.escape(path))
    )
    page.keyboard.press("Enter")
    expect(page.locator(f'[role=tab][data-path="{path}"]')).to_be_visible(timeout=30_000)


def dress(page: Page) -> None:
    """A realistic screen for screenshots: a file open, its folder expanded."""
    open_in_editor(page, "src/inventory/pricing.py")
    page.locator("#agent-input").fill("Why does bulk_total discount only from 100 units?")


def test_modes_show_their_panels_and_persist(
    open_ide: Callable[..., Page], page: Page, ide_server: IdeServer, shots: Path
) -> None:
    open_ide(mode="simple")
    dress(page)
    assert page.locator("body").get_attribute("data-mode") == "simple"
    assert shown(page) == {"#region-editor", "#region-agent"}
    expect(page.locator("#activitybar")).to_be_hidden()
    expect(page.locator('[data-status="index"]')).to_be_hidden()
    page.screenshot(path=shots / "ide-simple.png")

    page.select_option("#mode-select", "advanced")
    expect(page.locator("body")).to_have_attribute("data-mode", "advanced")
    assert shown(page) == {"#region-editor", "#region-agent", "#region-files", "#region-terminal"}
    expect(page.locator('[data-status="index"]')).to_be_visible()
    expect(page.locator('[data-status="cache"]')).to_be_visible()
    expect(page.locator('[data-status="latency"]')).to_be_hidden()
    expect(page.locator('[role=treeitem][data-path="src/inventory/pricing.py"]')).to_be_visible()
    expect(page.locator("#terminal-host .xterm-rows")).to_contain_text(PROMPT, timeout=30_000)
    page.screenshot(path=shots / "ide-advanced.png")

    page.select_option("#mode-select", "expert")
    expect(page.locator("body")).to_have_attribute("data-mode", "expert")
    expect(page.locator('[data-status="latency"]')).to_be_visible()
    expect(page.locator('[data-status="index"]')).to_contain_text("chunks", timeout=20_000)
    page.screenshot(path=shots / "ide-expert.png")

    # Persisted per user on the server, and the reloaded page opens in it.
    eventually(lambda: prefs(ide_server)["mode"] == "expert", what="mode saved")
    page.reload()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    assert page.locator("body").get_attribute("data-mode") == "expert"
    assert page.locator("#mode-select").input_value() == "expert"


def test_palette_runs_commands_and_switches_mode(open_ide: Callable[..., Page], page: Page) -> None:
    open_ide()
    page.keyboard.press("Control+Shift+P")
    palette = page.get_by_role("dialog", name="Command palette")
    expect(palette).to_be_visible()
    assert page.locator("#palette-input").input_value() == ">"
    page.keyboard.type("mode simp")  # fuzzy: "Mode: Simple"
    first = page.locator("#palette-list [role=option]").first
    expect(first).to_have_attribute("aria-label", "Mode: Simple")
    expect(first).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    expect(palette).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-mode", "simple")

    # Escape closes and gives focus back.
    page.locator("#palette-button").focus()
    page.keyboard.press("Control+Shift+P")
    expect(palette).to_be_visible()
    page.keyboard.press("Escape")
    expect(palette).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "palette-button"


def test_quick_open_lists_files_through_the_files_api(
    open_ide: Callable[..., Page], page: Page
) -> None:
    open_ide()
    record_opens(page)
    page.keyboard.press("Control+P")
    options = page.locator("#palette-list [role=option]")
    expect(options.first).to_be_visible()
    page.keyboard.type("stck")  # fuzzy for stock.py
    expect(options.first).to_have_attribute("aria-label", "src/inventory/stock.py")
    expect(options.first.locator("mark").first).to_have_text("st")
    page.keyboard.press("Enter")
    eventually(lambda: opened(page), equals=[{"path": "src/inventory/stock.py"}], what="file:open")
    expect(page.locator('[role=tab][data-path="src/inventory/stock.py"]')).to_be_visible(
        timeout=30_000
    )

    # ":" goes to a line of the open file; recently opened files come first.
    page.keyboard.press("Control+G")
    page.keyboard.type("12")
    page.keyboard.press("Enter")
    eventually(lambda: opened(page)[-1], equals={"path": "src/inventory/stock.py", "line": 12})
    page.keyboard.press("Control+P")
    expect(options.first).to_have_attribute("aria-label", "src/inventory/stock.py, recently opened")
    page.keyboard.press("Escape")


def test_vs_code_shortcuts(open_ide: Callable[..., Page], page: Page) -> None:
    open_ide()
    sidebar, panel = page.locator("#sidebar"), page.locator("#panel")
    page.locator("body").click(position={"x": 700, "y": 300})

    page.keyboard.press("Control+B")
    expect(sidebar).to_be_hidden()
    page.keyboard.press("Control+B")
    expect(sidebar).to_be_visible()

    page.keyboard.press("Control+Shift+F")
    expect(page.locator("#region-search")).to_be_visible()
    expect(page.locator("#region-files")).to_be_hidden()
    expect(page.locator("#search-input")).to_be_focused()

    page.keyboard.press("Control+Shift+E")
    expect(page.locator("#region-files")).to_be_visible()
    expect(page.locator("#region-files [role=treeitem]").first).to_be_focused()

    page.keyboard.press("Control+Backquote")
    expect(panel).to_be_hidden()
    page.keyboard.press("Control+Backquote")
    expect(panel).to_be_visible()

    page.keyboard.press("Control+L")
    expect(page.locator("#agent-input")).to_be_focused()

    # From Simple mode a shortcut for a hidden panel switches to Advanced and shows it.
    page.select_option("#mode-select", "simple")
    page.locator("#agent-input").focus()
    page.keyboard.press("Control+Shift+E")
    expect(page.locator("body")).to_have_attribute("data-mode", "advanced")
    expect(page.locator("#region-files")).to_be_visible()
    expect(page.locator(".toast")).to_contain_text("Advanced mode")

    # F6 moves between the parts of the window.
    page.locator("#palette-button").focus()
    page.keyboard.press("F6")
    expect(page.locator("#activitybar :focus")).to_have_count(1)
    page.keyboard.press("F6")
    expect(page.locator("#sidebar :focus")).to_have_count(1)
    page.keyboard.press("Shift+F6")
    expect(page.locator("#activitybar :focus")).to_have_count(1)


def prefs(server: IdeServer) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(server.url + "/api/ui/prefs").json()
    return body


def width(page: Page, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box is not None
    return float(box["width"])


def test_panels_resize_by_drag_and_keyboard_and_persist(
    open_ide: Callable[..., Page], page: Page, ide_server: IdeServer
) -> None:
    open_ide()
    splitter = page.locator("#split-sidebar")
    expect(splitter).to_have_attribute("role", "separator")
    expect(splitter).to_have_attribute("aria-orientation", "vertical")
    start = width(page, "#sidebar")

    splitter.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert width(page, "#sidebar") == pytest.approx(start + 40, abs=1)
    assert int(splitter.get_attribute("aria-valuenow") or 0) == pytest.approx(start + 40, abs=1)
    page.keyboard.press("Shift+ArrowLeft")
    assert width(page, "#sidebar") == pytest.approx(start - 20, abs=1)

    box = splitter.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + 200
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=6)
    page.mouse.up()
    dragged = width(page, "#sidebar")
    assert dragged == pytest.approx(start + 40, abs=2)

    # The terminal's splitter moves up and down; the agent's grows leftwards.
    panel = page.locator("#panel").bounding_box()
    assert panel is not None
    page.locator("#split-panel").focus()
    page.keyboard.press("ArrowUp")
    grown = page.locator("#panel").bounding_box()
    assert grown is not None and grown["height"] == pytest.approx(panel["height"] + 10, abs=1)
    agent = width(page, "#region-agent")
    page.locator("#split-agent").focus()
    page.keyboard.press("ArrowLeft")
    assert width(page, "#region-agent") == pytest.approx(agent + 10, abs=1)

    eventually(
        lambda: abs(prefs(ide_server)["layout"].get("sidebar", 0) - dragged) <= 2,
        what="sidebar width saved",
    )
    page.reload()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    assert width(page, "#sidebar") == pytest.approx(dragged, abs=2)


def test_theme_switches_and_persists(
    open_ide: Callable[..., Page], page: Page, ide_server: IdeServer, shots: Path
) -> None:
    open_ide(theme="dark")
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    toggle = page.locator("#theme-toggle")
    expect(toggle).to_have_attribute("aria-label", "Switch to light theme")
    toggle.click()
    expect(page.locator("body")).to_have_attribute("data-theme", "light")
    expect(toggle).to_have_attribute("aria-label", "Switch to dark theme")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != dark_bg
    dress(page)
    page.screenshot(path=shots / "ide-light.png")
    eventually(lambda: prefs(ide_server)["theme"] == "light", what="theme saved")
    page.reload()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    expect(page.locator("body")).to_have_attribute("data-theme", "light")


def test_prefs_fall_back_to_this_browser_when_the_api_fails(
    open_ide: Callable[..., Page], page: Page, ide_server: IdeServer
) -> None:
    open_ide(mode="advanced")
    page.select_option("#mode-select", "expert")
    eventually(lambda: prefs(ide_server)["mode"] == "expert", what="mode saved")
    httpx.put(ide_server.url + "/api/ui/prefs", json={"mode": "simple"}).raise_for_status()
    page.route(
        "**/api/ui/prefs",
        lambda route: route.fulfill(
            status=503, json={"error": {"message": "prefs store down", "type": "x", "code": 503}}
        ),
    )
    page.reload()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    # The server could not be asked: this browser's last copy wins over the defaults.
    assert page.locator("body").get_attribute("data-mode") == "expert"
    page.select_option("#mode-select", "advanced")
    expect(page.locator(".toast-error")).to_contain_text("prefs store down")


def test_metrics_page_draws_charts_from_the_servers_figures(
    open_ide: Callable[..., Page], page: Page, ide_server: IdeServer, shots: Path
) -> None:
    # Some traffic of each kind, so every chart has figures.
    for _ in range(2):
        httpx.post(
            ide_server.url + "/api/ai/fim",
            json={"prefix": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 4},
            timeout=120,
        )
    httpx.post(ide_server.url + "/api/codebase/search", json={"query": "stock"}, timeout=60)
    open_ide(mode="expert", hash="#/metrics")
    view = page.locator("#metrics-view")
    expect(view).to_be_visible()
    expect(page.locator("#workbench")).to_be_hidden()
    expect(page.get_by_role("heading", name="Metrics")).to_be_visible()
    for chart in ("latency", "cache", "traffic"):
        expect(view.locator(f'[data-chart="{chart}"] canvas')).to_have_count(1, timeout=30_000)
    expect(
        view.locator(".metric-card", has_text="HTTP requests").locator(".metric-value")
    ).to_have_text(re.compile(r"^\d+$"))
    expect(view.locator(".stage-table")).to_contain_text("model")
    page.wait_for_timeout(300)
    page.screenshot(path=shots / "ide-metrics.png", full_page=True)

    page.get_by_role("link", name="Back to the editor").click()
    expect(page.locator("#workbench")).to_be_visible()
    expect(view).to_be_hidden()


PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def accounts_server(
    tmp_path_factory: pytest.TempPathFactory, ide_server: IdeServer
) -> Iterator[MimiServe]:
    """A `mimiverse serve` with accounts on and no models of its own (it asks ide_server's)."""
    data = tmp_path_factory.mktemp("accounts")
    upstream = [
        {"name": "upstream", "kind": "openai", "url": ide_server.url + "/v1", "model": "default",
         "tasks": ["chat", "fim"], "fim_template": "native"},
    ]  # fmt: skip
    server = MimiServe(
        data / "serve.log", data, auth="accounts", embedded="false", endpoints=json.dumps(upstream)
    )
    server.data = data  # type: ignore[attr-defined]
    yield server
    server.kill()


def test_login_setup_projects_and_logout_with_accounts_on(
    accounts_server: MimiServe, page: Page, shots: Path
) -> None:
    data: Path = accounts_server.data  # type: ignore[attr-defined]
    page.goto(accounts_server.url + "/")
    login = page.get_by_role("region", name="Log in")
    expect(login.get_by_role("heading", name="Create the first admin")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.screenshot(path=shots / "ide-login.png")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Setup code").fill((data / "setup-code").read_text().strip())
    page.get_by_role("button", name="Create admin and sign in").click()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    expect(page.get_by_role("button", name="Log out alice")).to_be_visible()

    # A new project from the picker; files made there land in alice's own root.
    page.locator("#project-button").click()
    page.get_by_role("menu", name="Projects").get_by_role("menuitem", name="New project…").click()
    dialog = page.get_by_role("dialog", name="New project")
    dialog.get_by_label("Project name").fill("demo")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator(".toast-success")).to_contain_text("Created project alice/demo")
    expect(page.locator("#project-button")).to_contain_text("demo")
    expect(page.locator(".tree-empty")).to_contain_text("no files yet")
    page.get_by_role("button", name="New File…").first.click()
    page.get_by_role("textbox", name="New file name in the project root").fill("hello.py")
    page.keyboard.press("Enter")
    expect(page.locator('[role=treeitem][data-path="hello.py"]')).to_be_visible()
    root = data / "workspaces" / "users" / "alice" / "demo"
    eventually(lambda: (root / "hello.py").is_file(), what="file in alice/demo")
    # A bad name: the server's own words.
    page.locator("#project-button").click()
    page.get_by_role("menuitem", name="New project…").click()
    page.get_by_role("dialog", name="New project").get_by_label("Project name").fill("demo")
    page.get_by_role("dialog", name="New project").get_by_role("button", name="Create").click()
    expect(page.get_by_role("dialog", name="New project").get_by_role("alert")).to_contain_text(
        "exists already"
    )
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Log out alice").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".login-error")).to_be_visible()
    assert page.locator(".login-error").inner_text().strip()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    expect(page.locator("#project-button")).to_contain_text("demo")  # the last one used
    expect(page.locator('[role=treeitem][data-path="hello.py"]')).to_be_visible()

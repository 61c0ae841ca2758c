"""The IDE works offline and by keyboard: it asks nothing of any other host, every control
has an accessible name (as Chromium's own accessibility tree computes it), and Tab reaches
every main control (Ctrl+M lets Tab leave the editor and the terminal, as in VS Code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import PROMPT, IdeServer, PageLog

pytestmark = [pytest.mark.e2e, pytest.mark.model]


INTERACTIVE = {
    "button",
    "checkbox",
    "combobox",
    "link",
    "listbox",
    "menuitem",
    "menuitemradio",
    "option",
    "radio",
    "searchbox",
    "slider",
    "spinbutton",
    "switch",
    "tab",
    "textbox",
    "tree",
    "treeitem",
    "separator",
}


def test_the_page_asks_nothing_of_other_hosts(
    open_ide: Callable[..., Page], page: Page, page_log: PageLog, ide_server: IdeServer
) -> None:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.on("websocket", lambda ws: seen.append(ws.url))
    open_ide(mode="expert")
    page.keyboard.press("Control+P")
    expect(page.locator("#palette-list [role=option]").first).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+F")
    page.locator("#search-input").fill("stock")
    page.locator("#search-input").press("Enter")
    expect(page.locator(".search-hit").first).to_be_visible(timeout=30_000)
    page.locator(".search-hit").first.click()
    expect(page.locator("[role=tab][data-path]").first).to_be_visible(timeout=30_000)
    page.goto(ide_server.url + "/#/metrics")
    expect(page.locator("#metrics-view canvas").first).to_be_visible(timeout=30_000)
    page.locator("#theme-toggle").click()

    origin = urlsplit(ide_server.url).netloc
    foreign = [
        u
        for u in seen
        if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != origin
    ]
    assert not foreign, foreign
    assert not page_log.external

    # The page's own CSP refuses other hosts before any request is made ...
    outcome = page.evaluate(
        "() => fetch('https://example.com/probe.js').then(() => 'fetched', () => 'refused')"
    )
    assert outcome == "refused"
    assert not page_log.external
    # ... and the test's guard records and aborts whatever gets past it (a navigation).
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        page.goto("https://example.com/probe")
    assert page_log.external == ["https://example.com/probe"]
    page_log.external.clear()


def unnamed_controls(page: Page) -> list[str]:
    """Interactive nodes of Chromium's accessibility tree that have no name."""
    cdp = page.context.new_cdp_session(page)
    try:
        tree: dict[str, Any] = cdp.send("Accessibility.getFullAXTree")
        missing = []
        for node in tree["nodes"]:
            if node.get("ignored"):
                continue
            role = (node.get("role") or {}).get("value", "")
            name = str((node.get("name") or {}).get("value", "")).strip()
            if role not in INTERACTIVE or name:
                continue
            props = {p["name"]: p.get("value", {}).get("value") for p in node.get("properties", [])}
            if role == "separator" and not props.get("focusable"):
                continue  # a plain divider, not a control
            if props.get("hidden"):
                continue
            described = cdp.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})
            el = described["node"]
            attrs = el.get("attributes", [])
            pairs = dict(zip(attrs[::2], attrs[1::2], strict=False))
            missing.append(f"{role} <{el['localName']} {pairs}>")
        return missing
    finally:
        cdp.detach()


def test_every_control_has_an_accessible_name(open_ide: Callable[..., Page], page: Page) -> None:
    open_ide(mode="simple")
    # The check sees what it should: an unlabelled button put on the page is caught.
    page.evaluate(
        "() => document.getElementById('statusbar').append(document.createElement('button'))"
    )
    assert unnamed_controls(page) == ["button <button {}>"]
    page.evaluate("() => document.querySelector('#statusbar > button:last-child').remove()")
    assert unnamed_controls(page) == [], "simple mode"
    page.select_option("#mode-select", "advanced")
    page.locator('#region-files [role=treeitem][data-path="src"] > .tree-row').click()
    expect(page.locator('[role=treeitem][data-path="src/inventory"]')).to_be_visible()
    page.keyboard.press("Control+P")
    page.keyboard.type("pricing")
    expect(page.locator("#palette-list [role=option]").first).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("[role=tab][data-path]").first).to_be_visible(timeout=30_000)
    expect(page.locator("#terminal-host .xterm-rows")).to_contain_text(PROMPT, timeout=30_000)
    assert unnamed_controls(page) == [], "advanced mode"

    page.select_option("#mode-select", "expert")
    page.keyboard.press("Control+Shift+F")
    page.locator("#search-input").fill("discount")
    page.locator("#search-input").press("Enter")
    expect(page.locator(".search-hit").first).to_be_visible(timeout=30_000)
    assert unnamed_controls(page) == [], "expert mode with search results"

    # Overlays: the palette, the context menu, a dialog, the project picker.
    page.keyboard.press("Control+Shift+P")
    expect(page.locator("#palette-list [role=option]").first).to_be_visible()
    assert unnamed_controls(page) == [], "command palette"
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+E")
    page.locator('[role=treeitem][data-path="README.md"]').focus()
    page.keyboard.press("Shift+F10")
    expect(page.get_by_role("menu")).to_be_visible()
    assert unnamed_controls(page) == [], "context menu"
    page.keyboard.press("Escape")
    page.keyboard.press("Delete")
    expect(page.get_by_role("alertdialog")).to_be_visible()
    assert unnamed_controls(page) == [], "delete dialog"
    page.keyboard.press("Escape")
    page.locator("#project-button").click()
    expect(page.get_by_role("menu", name="Projects")).to_be_visible()
    assert unnamed_controls(page) == [], "project picker"
    page.keyboard.press("Escape")

    page.goto(page.url.split("#")[0] + "#/metrics")
    expect(page.locator("#metrics-view canvas").first).to_be_visible(timeout=30_000)
    assert unnamed_controls(page) == [], "metrics page"


def describe_focus(page: Page) -> str:
    """What has the focus, as a short label: #id, [data-status=…], treeitem, region:…"""
    label: str = page.evaluate(
        """() => {
            const el = document.activeElement;
            if (!el || el === document.body) return "body";
            for (const id of ["region-editor", "region-terminal"]) {
                if (document.getElementById(id).contains(el)) return `region:${id}`;
            }
            if (el.id) return `#${el.id}`;
            if (el.dataset.status) return `status:${el.dataset.status}`;
            if (el.getAttribute("role") === "treeitem") return "treeitem";
            return `${el.tagName.toLowerCase()}:${el.getAttribute("aria-label") || el.textContent.trim()}`;
        }"""
    )
    return label


def test_tab_reaches_every_main_control(open_ide: Callable[..., Page], page: Page) -> None:
    open_ide(mode="expert")
    page.keyboard.press("Control+P")
    page.keyboard.type("stock")
    expect(page.locator("#palette-list [role=option]").first).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("[role=tab][data-path]").first).to_be_visible(timeout=30_000)
    expect(page.locator("#terminal-host .xterm-rows")).to_contain_text(PROMPT, timeout=30_000)

    page.keyboard.press("Control+M")  # Tab leaves the editor and the terminal
    expect(page.locator('[data-status="tab-focus"]')).to_have_text("Tab Moves Focus")
    page.evaluate("() => document.activeElement.blur()")
    reached: list[str] = []
    for _ in range(150):
        page.keyboard.press("Tab")
        where = describe_focus(page)
        if reached and where == reached[0]:
            break  # round the whole page once
        reached.append(where)

    main = [
        "a:Skip to the editor",
        "#project-button",
        "#palette-button",
        "#mode-select",
        "#metrics-link",
        "#theme-toggle",
        "button:Explorer (Ctrl+Shift+E)",
        "button:Search (Ctrl+Shift+F)",
        "button:Terminal (Ctrl+`)",
        "a:Metrics",
        "button:New File…",
        "button:New Folder…",
        "button:Upload Files…",
        "button:Refresh Explorer",
        "button:Collapse Folders",
        "treeitem",
        "#split-sidebar",
        "region:region-editor",
        "#split-panel",
        "#panel-close",
        "region:region-terminal",
        "#split-agent",
        "#agent-kind",
        "#agent-input",
        "#agent-send",
        "status:mode",
        "status:index",
        "status:latency",
        "status:cache",
        "status:model",
    ]
    missing = [m for m in main if m not in reached]
    if "a:Skip to the editor" in reached:  # a cycle: read it from the page's first control
        start = reached.index("a:Skip to the editor")
        reached = reached[start:] + reached[:start]
    assert not missing, f"Tab never reached {missing}; it went {reached}"
    # In document order: title bar, views, side bar, editor, terminal, agent, status bar.
    order = [reached.index(m) for m in main]
    assert order == sorted(order), reached

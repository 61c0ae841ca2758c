"""The Search view in a real Chromium against a real `mimiverse serve` (real index, real
embedding model): hybrid, lexical and semantic search with highlighted snippets; a hit opens
its file at the line, by mouse and by keyboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import IdeServer, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.model]

PRICING = "src/inventory/pricing.py"


@pytest.fixture(scope="module")
def indexed(ide_server: IdeServer) -> IdeServer:
    """The server once its index holds every fixture file, embeddings included."""

    def ready() -> bool:
        status: dict[str, Any] = httpx.get(
            ide_server.url + "/api/codebase/status", timeout=30
        ).json()
        return (
            bool(status.get("ready"))
            and status.get("vectors_complete") == 1
            and status["files"] >= 5
        )

    eventually(ready, timeout_s=120, what="index ready")
    return ide_server


def line_of(server: IdeServer, path: str, text: str) -> int:
    lines = (server.root / path).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def record_opens(page: Page) -> None:
    page.evaluate(
        "() => { window.__opened = []; mimi.bus.on('file:open', (d) => window.__opened.push(d)); }"
    )


def opened(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__opened")
    return found


def search(page: Page, query: str, mode: str = "hybrid") -> None:
    page.keyboard.press("Control+Shift+F")
    expect(page.locator("#search-input")).to_be_focused()
    page.select_option("#search-mode", mode)
    page.locator("#search-input").fill(query)
    page.locator("#search-input").press("Enter")
    expect(page.locator(".search-status")).to_contain_text("result", timeout=30_000)


def test_hybrid_search_shows_snippets_and_a_click_opens_the_line(
    indexed: IdeServer, open_ide: Callable[..., Page], page: Page, shots: Path
) -> None:
    open_ide()
    record_opens(page)
    search(page, "discounted_price")
    hit = page.locator(f'.search-hit[data-path="{PRICING}"]').first
    expect(hit).to_be_visible()
    expect(hit.locator("mark").first).to_have_text("discounted_price", ignore_case=True)
    expect(page.locator(".hit-file", has_text="pricing.py").first).to_contain_text("src/inventory")
    page.screenshot(path=shots / "ide-search.png")
    line = int(hit.get_attribute("data-line") or 0)
    # The hit points at a line that holds the words, not just its chunk's first line.
    text = (indexed.root / PRICING).read_text().splitlines()[line - 1]
    assert "discounted_price" in text

    hit.click()
    eventually(lambda: opened(page), equals=[{"path": PRICING, "line": line}])
    expect(page.locator(f'[role=tab][data-path="{PRICING}"]')).to_be_visible(timeout=30_000)
    eventually(
        lambda: page.evaluate("mimi.editor.instance.getPosition().lineNumber"),
        equals=line,
        what="the editor's cursor on the hit's line",
    )


def test_keyboard_moves_through_hits_and_enter_opens(
    indexed: IdeServer, open_ide: Callable[..., Page], page: Page
) -> None:
    open_ide()
    record_opens(page)
    search(page, "reorder stock threshold", mode="lexical")
    hits = page.locator(".search-hit")
    expect(hits.first).to_be_visible()
    page.locator("#search-input").press("ArrowDown")
    expect(hits.first).to_be_focused()
    first = (hits.first.get_attribute("data-path"), hits.first.get_attribute("data-line"))
    assert first[0] == "src/inventory/stock.py"
    assert int(first[1] or 0) == line_of(indexed, "src/inventory/stock.py", "def reorder_needed")
    if hits.count() > 1:
        page.keyboard.press("ArrowDown")
        expect(hits.nth(1)).to_be_focused()
        page.keyboard.press("ArrowUp")
    expect(hits.first).to_be_focused()
    page.keyboard.press("Enter")
    eventually(lambda: opened(page), equals=[{"path": first[0], "line": int(first[1] or 0)}])


def test_semantic_search_finds_by_meaning(
    indexed: IdeServer, open_ide: Callable[..., Page], page: Page
) -> None:
    open_ide()
    search(page, "how much does a large order cost after the reduction", mode="semantic")
    expect(page.locator(".search-status")).not_to_contain_text("ran as")  # really semantic
    paths = page.locator(".search-hit").evaluate_all("(els) => els.map((e) => e.dataset.path)")
    assert PRICING in paths[:3], paths
    # The mode is kept for the next visit.
    page.reload()
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    assert page.locator("#search-mode").input_value() == "semantic"


def test_a_query_without_hits_says_so_and_errors_show_the_servers_message(
    indexed: IdeServer, open_ide: Callable[..., Page], page: Page
) -> None:
    open_ide()
    page.keyboard.press("Control+Shift+F")
    page.select_option("#search-mode", "lexical")
    page.locator("#search-input").fill("zzqxjv")
    page.locator("#search-input").press("Enter")
    expect(page.locator(".search-status")).to_contain_text("No results for “zzqxjv”")
    page.locator("#search-input").fill("x" * 2100)
    page.locator("#search-input").press("Enter")
    expect(page.locator(".search-status")).to_contain_text("the limit is 2000")
    expect(page.locator(".search-status")).to_have_class("search-status error")

"""The terminal panel in a real Chromium: xterm.js over the WebSocket to a real PTY in the
sandbox. A command's output comes back, and resizing the page resizes the PTY."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.model]

ROWS = "#terminal-host .term-view:not([hidden]) .xterm-rows"


def screen(page: Page) -> str:
    """The visible terminal's rows as text."""
    return page.locator(ROWS).inner_text()


def run(page: Page, command: str) -> None:
    page.locator("#terminal-host .term-view:not([hidden]) .xterm").click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def size_after(page: Page, marker: str) -> tuple[int, int]:
    """Run ``stty size`` and read back (rows, cols)."""
    run(page, f"echo {marker}=$(stty size | tr ' ' x)")
    pattern = re.compile(rf"{marker}=(\d+)x(\d+)")
    page.wait_for_function(
        "([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.innerText || '')",
        arg=[ROWS, pattern.pattern],
    )
    found = pattern.findall(screen(page))
    rows, cols = found[-1]
    return int(rows), int(cols)


def test_echo_comes_back_and_resize_reaches_the_pty(ide: Page, shots: Path) -> None:
    ide.wait_for_selector(ROWS)
    ide.wait_for_function(
        "(sel) => (document.querySelector(sel)?.innerText || '').trim().length > 0", arg=ROWS
    )  # the shell's prompt
    run(ide, "echo mimi-$((6*7))")
    ide.wait_for_function(
        "(sel) => (document.querySelector(sel)?.innerText || '').includes('mimi-42')", arg=ROWS
    )
    assert "mimi-42" in screen(ide)

    rows, cols = size_after(ide, "before")
    assert rows > 2 and cols > 20
    width, height = ide.viewport_size["width"], ide.viewport_size["height"]  # type: ignore[index]
    ide.set_viewport_size({"width": width - 400, "height": height})
    ide.wait_for_timeout(300)
    _, narrower = size_after(ide, "after")
    assert narrower < cols, (cols, narrower)
    ide.screenshot(path=str(shots / "terminal.png"))

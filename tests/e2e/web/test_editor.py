"""The editor panel in a real Chromium against a real `mimiverse serve`: open a file, type,
get a real inline completion from the embedded 0.5B FIM model, accept it with Tab, save
with Ctrl+S, and find the accepted text on disk; a conflicting save keeps the user's text."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.web.conftest import IdeServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.model]

GHOST = ".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text"
FIRST_COMPLETION_MS = 120_000  # the first FIM request warms the model on 2 shared cores


def open_in_editor(page: Page, path: str) -> None:
    """Open ``path`` through the contract's editor hook and wait for its tab."""
    page.wait_for_function("() => window.mimi && window.mimi.editor && window.mimi.editor.openFile")
    page.evaluate("(p) => window.mimi.editor.openFile(p)", path)
    page.wait_for_selector(f'[role=tab][data-path="{path}"][aria-selected="true"]')
    page.wait_for_function("(p) => window.mimi.editor.activePath() === p", arg=path)


def fim_accepted(server: IdeServer) -> int:
    """Accepted suggestions the server recorded over all models and languages."""
    rows: list[dict[str, Any]] = httpx.get(server.url + "/api/ai/fim/stats", timeout=10).json()[
        "stats"
    ]
    return sum(int(row["accepted"]) for row in rows)


def test_inline_completion_accepted_with_tab_and_saved(
    ide: Page, ide_server: IdeServer, shots: Path
) -> None:
    rel = "src/inventory/editor_e2e.py"
    original = (
        '"""Arithmetic the editor test completes."""\n\n\n'
        "def add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def multiply(a: int, b: int) -> int:\n"
    )
    disk = ide_server.root / rel
    disk.write_text(original)
    accepted_before = fim_accepted(ide_server)

    open_in_editor(ide, rel)
    ide.locator(".monaco-editor .view-lines").first.click()
    ide.keyboard.press("Control+End")
    ide.keyboard.type("    return ", delay=40)
    tab = ide.locator(f'[role=tab][data-path="{rel}"]')
    assert "dirty" in (tab.get_attribute("class") or "")

    ghost = ide.locator(GHOST).first
    ghost.wait_for(state="visible", timeout=FIRST_COMPLETION_MS)
    shown = ide.locator(GHOST).all_text_contents()
    assert "".join(shown).strip(), "the ghost text is empty"
    ide.screenshot(path=str(shots / "editor-inline-completion.png"))

    ide.keyboard.press("Tab")
    value = ide.evaluate("() => window.mimi.editor.getValue()")
    typed = original + "    return "
    assert value.startswith(typed) and len(value.rstrip()) > len(typed.rstrip()), value
    completion = value[len(typed) :]
    assert re.search(r"\w", completion), f"no completion accepted: {completion!r}"

    ide.keyboard.press("Control+s")
    ide.wait_for_function(
        "(p) => !document.querySelector(`[role=tab][data-path=\"${p}\"]`).classList.contains('dirty')",
        arg=rel,
    )
    assert disk.read_text() == value
    assert disk.read_text().startswith(typed)

    deadline = time.monotonic() + 10
    while fim_accepted(ide_server) <= accepted_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fim_accepted(ide_server) > accepted_before, "Tab did not report the acceptance"


def test_save_conflict_keeps_the_users_text(ide: Page, ide_server: IdeServer) -> None:
    rel = "src/inventory/conflict_e2e.py"
    disk = ide_server.root / rel
    disk.write_text("VALUE = 1\n")
    open_in_editor(ide, rel)
    ide.evaluate(
        "() => window.mimi.editor.instance.updateOptions({inlineSuggest: {enabled: false}})"
    )
    ide.locator(".monaco-editor .view-lines").first.click()
    ide.keyboard.press("Control+End")
    ide.keyboard.type("MINE = 2\n")
    disk.write_text("VALUE = 1\nTHEIRS = 3\n")  # someone else writes the file meanwhile

    ide.keyboard.press("Control+s")
    notice = ide.locator(".editor-notice")
    notice.wait_for(state="visible")
    assert "changed on disk" in notice.inner_text()
    assert disk.read_text() == "VALUE = 1\nTHEIRS = 3\n"  # nothing overwritten
    assert "MINE = 2" in ide.evaluate("() => window.mimi.editor.getValue()")

    notice.get_by_role("button", name="Overwrite the file with mine").click()
    ide.wait_for_function(
        "(p) => !document.querySelector(`[role=tab][data-path=\"${p}\"]`).classList.contains('dirty')",
        arg=rel,
    )
    assert disk.read_text() == "VALUE = 1\nMINE = 2\n"

"""The Explorer in a real Chromium against a real `mimiverse serve`: a lazy tree driven by
keyboard (WAI-ARIA tree), create / rename / delete, upload by button and by drop, the context
menu, server errors as toasts, and live updates when files change on disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.e2e.web.conftest import IdeServer, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.model]


def item(page: Page, path: str) -> Locator:
    return page.locator(f'#region-files [role=treeitem][data-path="{path}"]')


def row(page: Page, path: str) -> Locator:
    """The item's own row (an open folder's box holds its children's rows too)."""
    return item(page, path).locator(":scope > .tree-row")


def record(page: Page, *events: str) -> None:
    """Keep the bus events named in window.__events as [name, detail] pairs."""
    page.evaluate(
        """(names) => {
            window.__events = [];
            for (const n of names) mimi.bus.on(n, (d) => window.__events.push([n, d]));
        }""",
        list(events),
    )


def events(page: Page) -> list[list[Any]]:
    found: list[list[Any]] = page.evaluate("window.__events")
    return found


@pytest.fixture
def scratch(ide_server: IdeServer) -> Iterator[list[Path]]:
    """Paths a test makes in the shared project; removed afterwards."""
    made: list[Path] = []
    yield made
    for path in made:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def test_tree_is_lazy_and_follows_the_wai_aria_keys(ide: Page) -> None:
    page = ide
    record(page, "file:open")
    tree = page.get_by_role("tree", name="Files")
    expect(tree).to_be_visible()
    expect(item(page, "src")).to_have_attribute("aria-expanded", "false")
    expect(item(page, "src/inventory")).to_have_count(0)  # not loaded until opened
    expect(item(page, "README.md")).to_have_attribute("aria-level", "1")

    page.keyboard.press("Control+Shift+E")
    expect(item(page, "src")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(item(page, "src")).to_have_attribute("aria-expanded", "true")
    expect(item(page, "src/inventory")).to_have_attribute("aria-level", "2")
    page.keyboard.press("ArrowRight")  # an open folder: to its first child
    expect(item(page, "src/inventory")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(item(page, "src/inventory/__init__.py")).to_be_visible()  # loaded
    page.keyboard.press("ArrowRight")
    expect(item(page, "src/inventory/__init__.py")).to_be_focused()
    second = page.locator('[data-path="src/inventory"] [role=treeitem]').nth(1)
    page.keyboard.press("ArrowDown")
    expect(second).to_be_focused()
    page.keyboard.type("pri")  # type-ahead (other tests may have added files here)
    expect(item(page, "src/inventory/pricing.py")).to_be_focused()
    expect(item(page, "src/inventory/pricing.py")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    eventually(lambda: events(page), equals=[["file:open", {"path": "src/inventory/pricing.py"}]])
    expect(page.locator('[role=tab][data-path="src/inventory/pricing.py"]')).to_be_visible()
    item(page, "src/inventory/pricing.py").focus()  # the opened file took the focus

    page.keyboard.press("ArrowLeft")  # a file: to its folder
    expect(item(page, "src/inventory")).to_be_focused()
    page.keyboard.press("ArrowLeft")  # an open folder: closes it
    expect(item(page, "src/inventory")).to_have_attribute("aria-expanded", "false")
    expect(item(page, "src/inventory/pricing.py")).to_have_count(0)
    page.keyboard.press("End")
    expect(item(page, "README.md")).to_be_focused()
    page.keyboard.press("Home")
    expect(item(page, "src")).to_be_focused()
    page.wait_for_timeout(800)  # a new type-ahead word
    page.keyboard.press("t")
    expect(item(page, "tests")).to_be_focused()
    # Only one item is in the Tab order (roving tabindex).
    assert page.locator("#region-files [role=treeitem][tabindex='0']").count() == 1


def test_create_rename_and_delete_from_the_tree(
    ide: Page, ide_server: IdeServer, scratch: list[Path]
) -> None:
    page, root = ide, ide_server.root
    scratch += [root / "e2e_tree"]
    record(page, "file:open", "file:renamed", "file:deleted")

    page.get_by_role("button", name="New Folder…").click()
    name = page.get_by_role("textbox", name="New folder name in the project root")
    expect(name).to_be_focused()
    name.fill("e2e_tree")
    page.keyboard.press("Enter")
    expect(item(page, "e2e_tree")).to_be_focused()
    assert (root / "e2e_tree").is_dir()

    page.get_by_role("button", name="New File…").click()  # in the selected folder
    page.get_by_role("textbox", name="New file name in e2e_tree/").fill("notes.md")
    page.keyboard.press("Enter")
    expect(item(page, "e2e_tree/notes.md")).to_be_visible()
    eventually(lambda: (root / "e2e_tree" / "notes.md").is_file(), what="file on disk")
    eventually(lambda: ["file:open", {"path": "e2e_tree/notes.md"}] in events(page))

    row(page, "e2e_tree/notes.md").click()
    item(page, "e2e_tree/notes.md").focus()
    page.keyboard.press("F2")
    rename = page.get_by_role("textbox", name="Rename e2e_tree/notes.md")
    expect(rename).to_be_focused()
    assert page.evaluate(
        "[document.activeElement.selectionStart, document.activeElement.selectionEnd]"
    ) == [0, 5]
    page.keyboard.type("todo")  # replaces the selected stem, keeps ".md"
    page.keyboard.press("Enter")
    expect(item(page, "e2e_tree/todo.md")).to_be_focused()
    assert (root / "e2e_tree" / "todo.md").is_file()
    assert not (root / "e2e_tree" / "notes.md").exists()
    assert ["file:renamed", {"path": "e2e_tree/notes.md", "to": "e2e_tree/todo.md"}] in events(page)

    page.keyboard.press("Delete")
    dialog = page.get_by_role("alertdialog", name="Delete todo.md?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe default
    dialog.get_by_role("button", name="Delete").click()
    expect(item(page, "e2e_tree/todo.md")).to_have_count(0)
    assert not (root / "e2e_tree" / "todo.md").exists()
    assert ["file:deleted", {"path": "e2e_tree/todo.md"}] in events(page)

    # A folder with contents, from the context menu; Escape in the dialog changes nothing.
    (root / "e2e_tree" / "keep.txt").write_text("x")
    row(page, "e2e_tree").click(button="right")
    menu = page.get_by_role("menu", name="Actions for e2e_tree")
    menu.get_by_role("menuitem", name="Delete").click()
    dialog = page.get_by_role("alertdialog", name="Delete the folder e2e_tree?")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert (root / "e2e_tree" / "keep.txt").exists()
    row(page, "e2e_tree").click(button="right")
    menu.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    expect(item(page, "e2e_tree")).to_have_count(0)
    assert not (root / "e2e_tree").exists()


def test_server_errors_show_as_toasts_and_keep_the_input(ide: Page, ide_server: IdeServer) -> None:
    page = ide
    item(page, "README.md").focus()
    page.get_by_role("button", name="New File…").click()
    page.get_by_role("textbox", name="New file name in the project root").fill("README.md")
    page.keyboard.press("Enter")
    toast = page.locator(".toast-error")
    expect(toast).to_contain_text("Cannot create README.md")
    expect(toast).to_have_attribute("role", "alert")
    # The name stays for a second try; Escape gives up.
    expect(page.get_by_role("textbox", name="New file name in the project root")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#region-files input.tree-input")).to_have_count(0)
    assert (ide_server.root / "README.md").read_text().startswith("# inventory")


def test_upload_by_button_and_by_drop(
    ide: Page, ide_server: IdeServer, scratch: list[Path]
) -> None:
    page, root = ide, ide_server.root
    scratch += [root / "upload_a.txt", root / "tests" / "dropped.txt"]
    page.locator("#region-files input[type=file]").set_input_files(
        files=[FilePayload(name="upload_a.txt", mimeType="text/plain", buffer=b"first\n")]
    )
    expect(page.locator(".toast-success")).to_contain_text("Uploaded 1 file to the project root")
    expect(item(page, "upload_a.txt")).to_be_visible()
    assert (root / "upload_a.txt").read_bytes() == b"first\n"

    # The same name again: asked before replacing.
    page.locator("#region-files input[type=file]").set_input_files(
        files=[FilePayload(name="upload_a.txt", mimeType="text/plain", buffer=b"second\n")]
    )
    page.get_by_role("alertdialog", name="Replace existing files?").get_by_role(
        "button", name="Replace"
    ).click()
    eventually(lambda: (root / "upload_a.txt").read_bytes() == b"second\n", what="replaced")
    expect(page.locator(".toast-success")).to_have_count(2)  # and the tree reloaded

    # Dropped from the desktop onto the "tests" folder.
    page.evaluate(
        """() => {
            const el = document.querySelector('#region-files [role=treeitem][data-path="tests"]');
            const data = new DataTransfer();
            data.items.add(new File(["dropped\\n"], "dropped.txt", { type: "text/plain" }));
            for (const type of ["dragenter", "dragover", "drop"]) {
                el.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
            }
        }"""
    )
    expect(page.locator(".toast-success").last).to_contain_text("Uploaded 1 file to tests")
    eventually(lambda: (root / "tests" / "dropped.txt").is_file(), what="dropped file on disk")
    assert (root / "tests" / "dropped.txt").read_text() == "dropped\n"
    expect(item(page, "tests/dropped.txt")).to_be_visible()


def test_tree_follows_changes_on_disk(
    ide: Page, ide_server: IdeServer, scratch: list[Path]
) -> None:
    page, root = ide, ide_server.root
    scratch += [root / "live_added.py", root / "src" / "live_module.py"]
    record(page, "file:changed")
    row(page, "src").click()
    expect(item(page, "src/inventory")).to_be_visible()

    (root / "live_added.py").write_text("print('hi')\n")
    (root / "src" / "live_module.py").write_text("X = 1\n")
    expect(item(page, "live_added.py")).to_be_visible(timeout=15_000)
    expect(item(page, "src/live_module.py")).to_be_visible(timeout=15_000)
    changed = {c["path"] for _, d in events(page) for c in d["changes"]}
    assert {"live_added.py", "src/live_module.py"} <= changed

    (root / "live_added.py").unlink()
    expect(item(page, "live_added.py")).to_have_count(0, timeout=15_000)


def test_context_menu_by_keyboard(ide: Page) -> None:
    page = ide
    item(page, "README.md").focus()  # selects it (a click would open it, and the editor take focus)
    page.keyboard.press("Shift+F10")
    menu = page.get_by_role("menu", name="Actions for README.md")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Open")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="New File…")).to_be_focused()
    page.keyboard.press("End")
    expect(menu.get_by_role("menuitem", name="Copy Path")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_have_count(0)
    expect(item(page, "README.md")).to_be_focused()

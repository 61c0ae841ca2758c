"""The terminal panel in a real Chromium: xterm.js over the WebSocket to a real PTY in the
sandbox. A command's output comes back, resizing the page resizes the PTY, and keys typed
while the socket connects are not lost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.web.conftest import PROMPT, IdeServer, load_ide

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.model]

ROWS = "#terminal-host .term-view:not([hidden]) .xterm-rows"


def screen(page: Page) -> str:
    """The visible terminal's rows as text."""
    return page.locator(ROWS).inner_text()


def wait_for_screen(page: Page, pattern: str, what: str, timeout_ms: int = 30_000) -> None:
    """Wait until the visible rows match the regular expression ``pattern``; on timeout, fail
    with what the terminal shows (an error frame, a lost prompt) rather than a bare timeout."""
    try:
        page.wait_for_function(
            "([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.innerText || '')",
            arg=[ROWS, pattern],
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        pytest.fail(f"no {what} in the terminal after {timeout_ms} ms; it shows:\n{screen(page)}")


def run(page: Page, command: str) -> None:
    """Type ``command`` and Enter into the visible terminal, once it has the keyboard."""
    page.locator("#terminal-host .term-view:not([hidden]) .xterm").click()
    page.wait_for_function(
        "() => document.activeElement?.classList.contains('xterm-helper-textarea')"
    )
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def size_after(page: Page, marker: str) -> tuple[int, int]:
    """Run ``stty size`` and read back (rows, cols)."""
    run(page, f"echo {marker}=$(stty size | tr ' ' x)")
    pattern = re.compile(rf"{marker}=(\d+)x(\d+)")
    wait_for_screen(page, pattern.pattern, f"{marker}=ROWSxCOLS")
    found = pattern.findall(screen(page))
    rows, cols = found[-1]
    return int(rows), int(cols)


def test_echo_comes_back_and_resize_reaches_the_pty(ide: Page, shots: Path) -> None:
    ide.wait_for_selector(ROWS)
    wait_for_screen(ide, PROMPT.pattern, "shell prompt")
    run(ide, "echo mimi-$((6*7))")
    wait_for_screen(ide, "mimi-42", "output of echo mimi-$((6*7))")

    rows, cols = size_after(ide, "before")
    assert rows > 2 and cols > 20
    width, height = ide.viewport_size["width"], ide.viewport_size["height"]  # type: ignore[index]
    ide.set_viewport_size({"width": width - 400, "height": height})
    ide.wait_for_timeout(300)
    _, narrower = size_after(ide, "after")
    assert narrower < cols, (cols, narrower)
    ide.screenshot(path=str(shots / "terminal.png"))


SLOW_TERMINAL_SOCKET = """
(() => {
  // A slow network for the terminal's socket only: it stays CONNECTING until the test calls
  // window.openTerminalSockets(); other sockets are untouched.
  const Native = window.WebSocket;
  const held = [];
  window.terminalSocketsMade = 0;
  window.openTerminalSockets = () => held.splice(0).forEach((release) => release());
  class HeldSocket {
    constructor(url) {
      window.terminalSocketsMade += 1;
      this.readyState = Native.CONNECTING;
      this.closed = false;
      held.push(() => {
        if (this.closed) return;
        const ws = new Native(url);
        this.ws = ws;
        ws.onopen = (e) => { this.readyState = ws.readyState; this.onopen?.(e); };
        ws.onmessage = (e) => this.onmessage?.(e);
        ws.onclose = (e) => { this.readyState = ws.readyState; this.onclose?.(e); };
      });
    }
    send(data) { this.ws.send(data); }
    close() {
      this.closed = true;
      this.readyState = Native.CLOSED;
      this.ws?.close();
    }
  }
  window.WebSocket = new Proxy(Native, {
    construct: (target, args) =>
      String(args[0]).includes("/api/terminal/ws") ? new HeldSocket(args[0]) : new target(...args),
  });
})();
"""


def test_keys_typed_while_the_socket_connects_reach_the_shell(
    page: Page, ide_server: IdeServer
) -> None:
    """On a slow link, what the user types before the socket opens is sent once it does,
    and Enter does not restart the connection it is waiting for."""
    page.add_init_script(SLOW_TERMINAL_SOCKET)
    load_ide(page, ide_server)
    page.wait_for_selector("#terminal-host .term-view:not([hidden]) .xterm")
    assert page.evaluate("window.terminalSocketsMade") == 1
    run(page, "echo early-$((6*7))")
    assert page.evaluate("window.terminalSocketsMade") == 1, "Enter restarted the connection"
    page.evaluate("window.openTerminalSockets()")
    wait_for_screen(page, "early-42", "output of the command typed while connecting")

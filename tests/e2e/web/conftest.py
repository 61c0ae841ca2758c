"""Fixtures for the browser IDE's end-to-end suite: a real `mimiverse serve` and a real Chromium.

- ``ide_server`` (session): `mimiverse serve` on the embedded models, auth=local, indexing a
  small git project (``.root``) that tests may change (use names of your own: the server is
  shared by the whole session). ``.url`` is ``http://127.0.0.1:<port>``.
- ``browser`` (session): Debian's /usr/bin/chromium through Playwright's sync API, headless,
  with no network chatter of its own (never `playwright install`).
- ``page`` (function): a fresh context and page. Every request to a host other than
  127.0.0.1/localhost is recorded and aborted, and the test fails at teardown if there was one;
  uncaught page errors fail it too. ``page_log`` holds what was recorded (console errors too).
- ``open_ide(mode="advanced", theme="dark", hash="")`` (a fixture returning a function): sets
  the prefs through the API, loads the IDE in ``page`` and waits until it has booted
  (``body[data-ready="true"]``); ``ide`` is ``open_ide()`` done. ``load_ide(page, server, ...)``
  is the same for any page and server.
- ``eventually(check, timeout_s)``: poll ``check`` until it holds (Python Playwright has no
  ``expect.poll``).
- ``shots``: where screenshots go (``$MIMI_SCREENSHOTS`` or ``<repo>/.mimiverse/screenshots``).
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import pytest

from tests.conftest import MimiServe

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright, Request, Route

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[3]
WEB = REPO / "src" / "mimiverse" / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",  # the suite runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
NOT_LOCAL = re.compile(
    r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:[/?#]|$))"
    r"(?!(?:data|blob|about|chrome-error):)"
)
"""URLs of other hosts. The route matches in Playwright's driver (a JS regex), so local
requests never wait on Python: a test may sleep while the page works."""
PROMPT = re.compile(r"[#$]\s")
"""The shell's prompt in the terminal (root's or a user's)."""
VIEWPORT_SIZE = (1440, 900)
BOOT_TIMEOUT_MS = 30_000

FIXTURE_FILES = {
    "README.md": "# inventory\n\nA tiny inventory service the IDE tests open, search and edit.\n",
    "src/inventory/__init__.py": '"""Inventory: items, stock and prices."""\n',
    "src/inventory/stock.py": textwrap.dedent(
        '''\
        """Stock levels per item."""

        from __future__ import annotations


        class StockLedger:
            """Counts of each item on hand."""

            def __init__(self) -> None:
                self.levels: dict[str, int] = {}

            def receive(self, sku: str, count: int) -> int:
                """Add ``count`` units of ``sku``; the new level."""
                self.levels[sku] = self.levels.get(sku, 0) + count
                return self.levels[sku]

            def reorder_needed(self, sku: str, threshold: int = 5) -> bool:
                """Whether the level of ``sku`` fell below ``threshold``."""
                return self.levels.get(sku, 0) < threshold
        '''
    ),
    "src/inventory/pricing.py": textwrap.dedent(
        '''\
        """Prices with discounts."""

        from __future__ import annotations


        def discounted_price(price: float, percent: float) -> float:
            """``price`` less ``percent`` per cent, rounded to cents."""
            if not 0 <= percent <= 100:
                raise ValueError("percent must be between 0 and 100")
            return round(price * (100 - percent) / 100, 2)


        def bulk_total(unit_price: float, quantity: int) -> float:
            """Total for ``quantity`` units, ten per cent off from 100 units."""
            total = unit_price * quantity
            return discounted_price(total, 10) if quantity >= 100 else total
        '''
    ),
    "tests/test_pricing.py": textwrap.dedent(
        """\
        from inventory.pricing import bulk_total, discounted_price


        def test_discount() -> None:
            assert discounted_price(80.0, 25) == 60.0


        def test_bulk_total() -> None:
            assert bulk_total(2.0, 100) == 180.0
        """
    ),
}


def _missing() -> str | None:
    """Why the e2e suite cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            "/usr/bin/chromium missing: run bash scripts/setup --dev (installs Debian's chromium)"
        )
    if not (WEB / "node_modules" / "monaco-editor").is_dir():
        return "web/node_modules missing: run bash scripts/setup (npm ci in src/mimiverse/web)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright missing: pip install -e '.[dev]' (or bash scripts/setup --dev)"
    return None


def make_project(root: Path) -> Path:
    """Write the fixture project under ``root`` and commit it to a fresh git repository."""
    for rel, text in FIXTURE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Mimi Test",
        "GIT_AUTHOR_EMAIL": "test@mimiverse.invalid",
        "GIT_COMMITTER_NAME": "Mimi Test",
        "GIT_COMMITTER_EMAIL": "test@mimiverse.invalid",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


@dataclass
class IdeServer:
    """A running `mimiverse serve` and the project it serves."""

    serve: MimiServe
    root: Path
    data: Path

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.serve.url

    @property
    def log(self) -> Path:
        """The server's stderr."""
        return self.serve.log


def start_ide_server(base: Path, models_dir: Path, fim_gguf: Path, **settings: str) -> IdeServer:
    """A `mimiverse serve` on embedded defaults (the 0.5B also chats, to stay light)."""
    root = make_project(base / "project")
    data = base / "data"
    data.mkdir()
    options = {
        "models_dir": str(models_dir),
        "chat_model_file": str(fim_gguf),
        "embedded_chat_ctx": "4096",
        "embedded_fim_ctx": "1024",
        "project_root": str(root),
        "index_on_start": "true",
        "auth": "local",
        **settings,
    }
    serve = MimiServe(data / "serve.log", data, **options)
    return IdeServer(serve=serve, root=root, data=data)


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which every asyncio test after this package would trip over
# ("Runner.run() cannot be called from a running event loop"); and the IDE's server (a
# model in memory) should not outlive the tests that use it.
@pytest.fixture(scope="package")
def ide_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, fim_gguf: Path
) -> Iterator[IdeServer]:
    """One real `mimiverse serve` for these tests (2 shared cores: never more than one)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    server = start_ide_server(tmp_path_factory.mktemp("ide"), models_dir, fim_gguf)
    try:
        yield server
    finally:
        server.serve.kill()


@pytest.fixture(scope="package")
def playwright_api() -> Iterator[Playwright]:
    """Playwright's sync API while this package's tests run."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright_api: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, quiet on the network."""
    launched = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
    )
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class PageLog:
    """What a page did that a test may want to check."""

    external: list[str] = field(default_factory=list)
    """Requests to non-local hosts (each was aborted)."""
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    """Uncaught exceptions in the page."""
    http_errors: list[str] = field(default_factory=list)
    """``"<status> <method> <url>"`` of each error answer the page got (4xx and 5xx)."""


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


@pytest.fixture
def page_log() -> PageLog:
    """The current test's page log (filled by ``page``)."""
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog) -> Iterator[Page]:
    """A fresh context and page that may only talk to this machine."""
    width, height = VIEWPORT_SIZE
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=False
    )
    context.set_default_timeout(15_000)

    def note(url: str) -> None:
        if not _is_local(url) and url not in page_log.external:
            page_log.external.append(url)

    def guard(route: Route, request: Request) -> None:
        if _is_local(request.url):
            route.continue_()
        else:
            note(request.url)
            route.abort("blockedbyclient")

    context.route(NOT_LOCAL, guard)
    new = context.new_page()
    new.on("request", lambda r: note(r.url))
    new.on(
        "console", lambda m: page_log.console_errors.append(m.text) if m.type == "error" else None
    )
    new.on("pageerror", lambda e: page_log.page_errors.append(str(e)))
    new.on(
        "response",
        lambda r: (
            page_log.http_errors.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400
            else None
        ),
    )
    new.on("websocket", lambda ws: note(ws.url))
    try:
        yield new
    finally:
        context.close()
    assert not page_log.external, f"the page asked for non-local URLs: {page_log.external}"
    assert not page_log.page_errors, f"uncaught errors in the page: {page_log.page_errors}"


def load_ide(
    page: Page,
    server: IdeServer,
    *,
    mode: str = "advanced",
    theme: str = "dark",
    hash: str = "",
) -> Page:
    """Set the prefs (mode, theme, default layout), load the IDE and wait until it booted."""
    before = page.request.get(server.url + "/api/ui/prefs")
    assert before.ok, f"GET /api/ui/prefs: {before.status} {before.text()}"
    forget = dict.fromkeys(before.json().get("layout", {}))  # null drops a key
    resp = page.request.put(
        server.url + "/api/ui/prefs", data={"mode": mode, "theme": theme, "layout": forget}
    )
    assert resp.ok, f"PUT /api/ui/prefs: {resp.status} {resp.text()}"
    page.goto(server.url + "/" + hash)
    page.wait_for_selector('body[data-ready="true"]', state="attached", timeout=BOOT_TIMEOUT_MS)
    return page


@pytest.fixture
def open_ide(page: Page, ide_server: IdeServer) -> Callable[..., Page]:
    """``open_ide(mode="advanced", theme="dark", hash="")``: load the IDE in ``page``."""

    def opener(**options: str) -> Page:
        return load_ide(page, ide_server, **options)

    return opener


@pytest.fixture
def ide(open_ide: Callable[..., Page]) -> Page:
    """The IDE loaded in Advanced mode, dark theme."""
    return open_ide()


_UNSET: Any = object()


def eventually(
    check: Callable[[], T], timeout_s: float = 15.0, what: str = "", equals: Any = _UNSET
) -> T:
    """Call ``check`` until its value is truthy (or equals ``equals``); the error shows the last."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = check()
            if (value == equals) if equals is not _UNSET else bool(value):
                return value
            last = value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            wanted = f", wanted {equals!r}" if equals is not _UNSET else ""
            raise AssertionError(
                f"{what or 'condition'} not met in {timeout_s} s (last: {last!r}{wanted})"
            )
        time.sleep(0.1)


@pytest.fixture(scope="session")
def shots() -> Path:
    """The screenshot folder (gitignored under .mimiverse/)."""
    path = Path(os.environ.get("MIMI_SCREENSHOTS") or REPO / ".mimiverse" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path

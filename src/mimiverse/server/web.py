"""The browser IDE's files: ``/`` (index.html), ``/static/…`` and ``/vendor/…``.

Everything is served from this machine: the app's own files from ``mimiverse/web``, and
the front-end packages ``scripts/setup`` installs there with ``npm ci`` (Monaco, xterm,
its fit add-on, uPlot) under ``/vendor``. Nothing here needs credentials; the APIs the
page calls are guarded (``server/auth.py``). Lookups are Starlette's ``StaticFiles``
(normalised, symlinks out of the folder refused); on top of it this module sets content
types (``.js`` and ``.mjs`` as text/javascript, which module scripts require), caching
(every file revalidated by ETag: URLs carry no version) and, on the page, a
Content-Security-Policy that allows only this origin (plus what Monaco needs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The IDE's folder (``index.html``, ``static/``, ``node_modules/`` after npm ci)."""
VENDOR: dict[str, str] = {
    "monaco": "monaco-editor/min",
    "xterm": "@xterm/xterm",
    "xterm-addon-fit": "@xterm/addon-fit",
    "uplot": "uplot/dist",
}
"""``/vendor/<name>/…`` → ``web/node_modules/<folder>/…``."""
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".ttf": "font/ttf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}
"""Served types by extension (the platform's mimetypes table varies; others: its guess)."""
VENDOR_CACHE = "public, no-cache"
"""Vendor files keep unversioned URLs (/vendor/monaco/…), so they are revalidated too: a
304 on loopback costs little, and an `npm ci` that upgrades Monaco shows at once."""
APP_CACHE = "no-cache"
"""The app's own files: always revalidated (ETag), so an upgrade shows at once."""
SETUP_HINT = "run bash scripts/setup (npm ci in src/mimiverse/web)"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def content_security_policy(host: str) -> str:
    """The page's CSP: this origin only; Monaco needs inline styles, eval and blob: workers.

    ``connect-src`` names this host's ws:/wss: too, for browsers whose 'self' leaves
    WebSockets out.
    """
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'unsafe-eval' blob:",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "worker-src 'self' blob:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class Folder(StaticFiles):
    """Files of one folder under the app's ``web_dir`` (``app.state``, read per request),
    with this module's types and caching; 503 when the folder is missing (``missing``:
    what to tell the user)."""

    def __init__(self, sub: str, *, cache: str, missing: str) -> None:
        super().__init__(directory=sub, check_dir=False)
        self.sub = sub
        self.cache = cache
        self.missing = missing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        folder = Path(scope["app"].state.web_dir) / self.sub
        self.directory, self.all_directories = folder, [folder]
        if scope["type"] == "http" and not folder.is_dir():
            await unavailable(self.missing)(scope, receive, send)
            return
        self.config_checked = True
        await super().__call__(scope, receive, send)

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        kind = CONTENT_TYPES.get(Path(str(full_path)).suffix.lower())
        if kind is not None and response.status_code != 304:
            response.headers["content-type"] = kind
        response.headers["cache-control"] = self.cache
        response.headers.update(SECURITY_HEADERS)
        return response


def unavailable(reason: str) -> HTMLResponse:
    """A 503 page that says what to run."""
    page = (
        "<!doctype html><meta charset=utf-8><title>Mimiverse: setup needed</title>"
        f"<h1>The IDE's files are missing</h1><p>{reason}, then reload this page.</p>"
    )
    return HTMLResponse(page, status_code=503, headers={"Cache-Control": "no-store"})


def mount_web(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Serve the IDE from ``web_dir`` (mount it after every API route: it never shadows one)."""
    app.state.web_dir = web_dir
    app.add_api_route("/", _index, methods=["GET", "HEAD"], include_in_schema=False)
    static = Folder("static", cache=APP_CACHE, missing="reinstall Mimiverse")
    app.mount("/static", static, name="static")
    for name, folder in VENDOR.items():
        vendor = Folder(f"node_modules/{folder}", cache=VENDOR_CACHE, missing=SETUP_HINT)
        app.mount(f"/vendor/{name}", vendor, name=f"vendor-{name}")


async def _index(request: Request) -> Response:
    """The IDE's page (503 with the fix while its packages are not installed)."""
    web_dir: Path = request.app.state.web_dir
    page = web_dir / "index.html"
    if not (web_dir / "node_modules").is_dir():
        return unavailable(SETUP_HINT.capitalize())
    try:
        info = page.stat()
    except FileNotFoundError:
        return unavailable("index.html is not there: reinstall Mimiverse")
    response: Response = FileResponse(page, stat_result=info, media_type=CONTENT_TYPES[".html"])
    etag = response.headers["etag"]
    if etag in _etags(request.headers.get("if-none-match", "")):
        response = Response(status_code=304, headers={"etag": etag})
    response.headers["cache-control"] = APP_CACHE
    response.headers["content-security-policy"] = content_security_policy(
        request.headers.get("host", "")
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]

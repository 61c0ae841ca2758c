"""The IDE's files: the page with its CSP, /static and /vendor with their types and
caching, no way out of their folders, a 503 that says to run setup, no credentials for
them while the APIs stay guarded, and no API route shadowed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mimiverse.server.app import create_app
from mimiverse.server.web import WEB_DIR
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.server.test_projects import accounts_app, add_user

PAGE = "<!doctype html><title>IDE</title><script type=module src=/static/js/main.js></script>"
FILES = {
    "index.html": PAGE,
    "static/js/main.js": "import './api.js';\n",
    "static/css/app.css": "body { margin: 0 }\n",
    "static/img/logo.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "node_modules/monaco-editor/min/vs/loader.js": "var require;\n",
    "node_modules/monaco-editor/min/vs/assets/codicon.ttf": "\x00\x01ttf",
    "node_modules/monaco-editor/min/vs/onig.wasm": "\x00asm",
    "node_modules/monaco-editor/package.json": '{"version": "0.57.0"}',
    "node_modules/@xterm/xterm/lib/xterm.mjs": "export class Terminal {}\n",
    "node_modules/@xterm/xterm/css/xterm.css": ".xterm {}\n",
    "node_modules/@xterm/addon-fit/lib/addon-fit.js": "var FitAddon;\n",
    "node_modules/uplot/dist/uPlot.iife.min.js": "var uPlot;\n",
    "node_modules/dompurify/dist/purify.js": "not served\n",
}
VENDOR = "public, no-cache"


@pytest.fixture
def web(tmp_path: Path) -> Path:
    """A small IDE folder, laid out like src/mimiverse/web after npm ci."""
    root = tmp_path / "web"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "secret.txt").write_text("SECRET\n")
    (root / "static" / "js" / "leak.js").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
def serve(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[Callable[..., TestClient]]:
    """A running auth=local app serving the IDE from ``web_dir``."""
    clients: list[TestClient] = []

    def build(web_dir: Path) -> TestClient:
        settings = make_settings(project_root=tmp_path, index_on_start=False, embedded=False)
        app = create_app(settings, gateway_with(FakeBackend("fake")))
        app.state.web_dir = web_dir
        client = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def test_the_page_has_a_same_origin_csp_and_is_revalidated(
    serve: Callable[..., TestClient], web: Path
) -> None:
    client = serve(web)
    page = client.get("/", headers={"Host": "127.0.0.1:8484"})
    assert page.status_code == 200 and page.text == PAGE
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
    csp = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self' 'unsafe-eval' blob:"
    assert csp["worker-src"] == "'self' blob:"
    assert csp["style-src"] == "'self' 'unsafe-inline'"
    assert csp["connect-src"] == "'self' ws://127.0.0.1:8484 wss://127.0.0.1:8484"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert page.headers["x-content-type-options"] == "nosniff"
    again = client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert client.head("/").status_code == 200
    assert client.post("/").status_code == 405


def test_a_host_header_cannot_write_into_the_csp(
    serve: Callable[..., TestClient], web: Path
) -> None:
    client = serve(web)
    client.app.state.settings.allowed_hosts.append("evil; script-src *")  # type: ignore[attr-defined]
    page = client.get("/", headers={"Host": "evil; script-src *"})
    assert page.status_code == 200
    assert page.headers["content-security-policy"].count("script-src") == 1
    assert "connect-src 'self';" in page.headers["content-security-policy"]


def test_static_and_vendor_files_have_types_and_caching(
    serve: Callable[..., TestClient], web: Path
) -> None:
    client = serve(web)
    expected = {
        "/static/js/main.js": ("text/javascript; charset=utf-8", "no-cache"),
        "/static/css/app.css": ("text/css; charset=utf-8", "no-cache"),
        "/static/img/logo.svg": ("image/svg+xml", "no-cache"),
        "/vendor/monaco/vs/loader.js": ("text/javascript; charset=utf-8", VENDOR),
        "/vendor/monaco/vs/assets/codicon.ttf": ("font/ttf", VENDOR),
        "/vendor/monaco/vs/onig.wasm": ("application/wasm", VENDOR),
        "/vendor/xterm/lib/xterm.mjs": ("text/javascript; charset=utf-8", VENDOR),
        "/vendor/xterm/css/xterm.css": ("text/css; charset=utf-8", VENDOR),
        "/vendor/xterm-addon-fit/lib/addon-fit.js": ("text/javascript; charset=utf-8", VENDOR),
        "/vendor/uplot/uPlot.iife.min.js": ("text/javascript; charset=utf-8", VENDOR),
    }
    for url, (kind, cache) in expected.items():
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        assert (resp.headers["content-type"], resp.headers["cache-control"]) == (kind, cache), url
        assert resp.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/js/main.js")
    revalidated = client.get("/static/js/main.js", headers={"If-None-Match": js.headers["etag"]})
    assert revalidated.status_code == 304
    assert revalidated.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "url",
    [
        "/static/js/leak.js",  # a symlink out of the folder
        "/static/..%2f..%2fsecret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/js/..%2f..%2f..%2fsecret.txt",
        "/vendor/monaco/..%2f..%2f..%2f..%2fsecret.txt",
        "/vendor/monaco/%2e%2e/package.json",
        "/vendor/dompurify/dist/purify.js",  # only the four named packages are served
        "/vendor/xterm/../../dompurify/dist/purify.js",
        "/static/%00.js",
        "/static/",
    ],
)
def test_nothing_outside_the_served_folders(
    serve: Callable[..., TestClient], web: Path, url: str
) -> None:
    resp = serve(web).get(url)
    assert resp.status_code == 404, (url, resp.status_code, resp.text)
    assert "SECRET" not in resp.text and "not served" not in resp.text
    assert "0.57.0" not in resp.text


def test_missing_packages_are_a_503_that_says_to_run_setup(
    serve: Callable[..., TestClient], web: Path
) -> None:
    shutil.rmtree(web / "node_modules")
    client = serve(web)
    for url in ("/", "/vendor/monaco/vs/loader.js", "/vendor/uplot/uPlot.min.css"):
        resp = client.get(url)
        assert resp.status_code == 503, url
        assert "bash scripts/setup" in resp.text and "npm ci in src/mimiverse/web" in resp.text
        assert resp.headers["cache-control"] == "no-store"
    assert client.get("/static/js/main.js").status_code == 200


def test_the_real_ide_folder_serves_monaco_xterm_and_uplot(
    serve: Callable[..., TestClient],
) -> None:
    if not (WEB_DIR / "node_modules").is_dir():
        pytest.skip("the IDE's packages are not installed: run bash scripts/setup")
    client = serve(WEB_DIR)
    for url in (
        "/vendor/monaco/vs/loader.js",
        "/vendor/xterm/lib/xterm.js",
        "/vendor/xterm/css/xterm.css",
        "/vendor/xterm-addon-fit/lib/addon-fit.js",
        "/vendor/uplot/uPlot.iife.min.js",
        "/vendor/uplot/uPlot.min.css",
    ):
        resp = client.get(url)
        assert resp.status_code == 200 and len(resp.content) > 100, url
    if (WEB_DIR / "index.html").is_file():
        assert client.get("/").status_code == 200


def test_the_ide_needs_no_credentials_but_the_apis_do(
    make_settings: Callable[..., Settings], tmp_path: Path, web: Path
) -> None:
    app = accounts_app(make_settings, tmp_path)
    app.state.web_dir = web
    alice = add_user(app, "alice")
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        for url in ("/", "/static/js/main.js", "/vendor/monaco/vs/loader.js"):
            assert client.get(url).status_code == 200, url
        for url in ("/api/files/tree", "/api/ui/prefs", "/api/metrics/summary", "/metrics"):
            assert client.get(url).status_code == 401, url
        assert client.get("/api/files/tree", headers=alice).status_code == 200
        assert client.get("/api/health").headers["content-type"] == "application/json"


def test_no_api_route_is_shadowed(serve: Callable[..., TestClient], web: Path) -> None:
    client = serve(web)
    assert client.get("/openapi.json").json()["info"]["title"] == "Mimiverse"
    assert client.get("/api/health").headers["content-type"] == "application/json"
    assert client.get("/metrics").text.startswith("# HELP")
    assert client.get("/api/nothing").json()["error"]["code"] == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith(("/static", "/vendor"))]


def test_a_foreign_host_gets_no_page_in_local_mode(
    serve: Callable[..., TestClient], web: Path
) -> None:
    resp = serve(web).get("/", headers={"Host": "attacker.example"})
    assert resp.status_code == 403 and "MIMI_ALLOWED_HOSTS" in resp.text

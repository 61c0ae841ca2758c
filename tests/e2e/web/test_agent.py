"""The agent panel in a real Chromium: ask for an edit, review the proposed changeset in the
diff editor, accept one hunk and reject the other, apply, and find exactly the accepted
change on disk; then undo it.

The model is scripted so the two-hunk edit is deterministic: a small OpenAI-compatible
HTTP server on 127.0.0.1 (in this module) answers the agent's steps, and a second
`mimiverse serve`, started for this module only, routes chat to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import MimiServe
from tests.e2e.web.conftest import IdeServer, load_ide, make_project

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e  # no `model` mark: the scripted server stands in for the weights

TARGET = "src/greetings.py"
BEFORE = "".join(
    [
        '"""Greetings the agent test edits in two places."""\n',
        "\n",
        "\n",
        "def hello(name: str) -> str:\n",
        '    return f"hello {name}"\n',
        "\n",
        "\n",
        "def farewell(name: str) -> str:\n",
        '    return f"goodbye {name}"\n',
        "\n",
        "\n",
        "def shout(text: str) -> str:\n",
        "    return text.upper()\n",
        "\n",
        "\n",
        "def whisper(text: str) -> str:\n",
        "    return text.lower()\n",
        "\n",
        "\n",
        "def thanks(name: str) -> str:\n",
        '    return f"thank you {name}"\n',
    ]
)
FIRST = ('    return f"hello {name}"\n', '    return f"Hello, {name}!"\n')
SECOND = ('    return f"thank you {name}"\n', '    return f"Thank you, {name}!"\n')
ONLY_FIRST = BEFORE.replace(FIRST[0], FIRST[1])


def step(tool: str, thought: str, plan: list[str] | None = None, **args: Any) -> str:
    """One reply in the agent's JSON format."""
    body: dict[str, Any] = {"plan": plan} if plan else {}
    body["thought"] = thought
    body["action"] = {"tool": tool, "args": args}
    return json.dumps(body)


SCRIPT = [
    step(
        "edit_file",
        "Capitalise the greeting in hello().",
        plan=["Edit hello()", "Edit thanks()", "Finish"],
        path=TARGET,
        search=FIRST[0],
        replace=FIRST[1],
    ),
    step("edit_file", "Now thanks().", path=TARGET, search=SECOND[0], replace=SECOND[1]),
    step(
        "finish",
        "Both are proposed.",
        answer="I capitalised the greetings in hello() and thanks().",
    ),
]


class ScriptedModel:
    """An OpenAI-compatible chat server on 127.0.0.1 that replies with ``SCRIPT[n]``, where
    n is the number of assistant turns in the request (so retries get the same reply)."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, body: dict[str, Any]) -> str:
        self.requests.append(body)
        turns = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        return self.script[min(turns, len(self.script) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    entry = {"id": "scripted", "object": "model", "context_length": 8192}
                    self._json(200, {"object": "list", "data": [entry]})
                elif self.path == "/health":
                    self._json(200, {"status": "ok"})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                text = model.reply(body)
                usage = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
                if not body.get("stream"):
                    message = {"role": "assistant", "content": text}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    self._json(200, {"id": "c1", "object": "chat.completion",
                                     "model": "scripted", "choices": [choice], "usage": usage})  # fmt: skip
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                half = len(text) // 2
                chunks: list[dict[str, Any]] = [
                    {"delta": {"role": "assistant", "content": text[:half]}, "finish_reason": None},
                    {"delta": {"content": text[half:]}, "finish_reason": None},
                    {"delta": {}, "finish_reason": "stop"},
                ]
                for n, choice in enumerate(chunks):
                    event: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk",
                                             "model": "scripted", "choices": [{"index": 0, **choice}]}  # fmt: skip
                    if n == len(chunks) - 1:
                        event["usage"] = usage
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedModel]:
    model = ScriptedModel(SCRIPT)
    yield model
    model.close()


@pytest.fixture(scope="module")
def agent_server(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedModel, browser: Browser
) -> Iterator[IdeServer]:
    """A second `mimiverse serve` whose chat model is the scripted server (no local models);
    ``browser`` first, so a machine without Chromium skips before a server starts."""
    base = tmp_path_factory.mktemp("agent-ide")
    root = make_project(base / "project")
    (root / TARGET).write_text(BEFORE)
    data = base / "data"
    data.mkdir()
    endpoints = [
        {"name": "scripted", "kind": "openai", "url": scripted.url + "/v1", "model": "scripted",
         "tasks": ["chat"], "context_length": 8192},
    ]  # fmt: skip
    serve = MimiServe(
        data / "serve.log", data, embedded="false", endpoints=json.dumps(endpoints),
        project_root=str(root), auth="local", agent_fix_rounds="0", agent_tool_mode="json",
    )  # fmt: skip
    try:
        yield IdeServer(serve=serve, root=root, data=data)
    finally:
        serve.kill()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_accept_one_hunk_reject_the_other_then_undo(
    page: Page, agent_server: IdeServer, scripted: ScriptedModel, shots: Path
) -> None:
    target = agent_server.root / TARGET
    load_ide(page, agent_server, mode="expert")
    page.select_option("#agent-kind", "agent")
    page.fill("#agent-input", f"Capitalise the greetings in hello() and thanks() in {TARGET}.")
    page.click("#agent-send")

    review = page.locator("#changeset")
    review.locator('button.hunk-accept[data-hunk="1"]').wait_for(timeout=30_000)
    assert review.locator("li.hunk").count() == 2
    timeline = page.locator("#agent-timeline")
    assert timeline.locator('.tl-item[data-kind="plan"]').count() == 1
    assert timeline.locator('.tl-item[data-kind="tool_call"]').count() == 2
    assert timeline.locator('.tl-item[data-kind="proposed_diff"]').count() == 1
    page.locator("#changeset .cs-diff .monaco-diff-editor").wait_for()
    assert target.read_text() == BEFORE  # nothing is written before the review

    review.locator('button.hunk-accept[data-hunk="0"]').click()
    review.locator('button.hunk-reject[data-hunk="1"]').click()
    assert (
        review.locator('button.hunk-accept[data-hunk="0"]').get_attribute("aria-pressed") == "true"
    )
    assert (
        review.locator('button.hunk-reject[data-hunk="1"]').get_attribute("aria-pressed") == "true"
    )
    page.wait_for_timeout(500)  # the diff editor recomputes the preview
    review.screenshot(path=str(shots / "agent-diff-review.png"))
    page.screenshot(path=str(shots / "agent-panel.png"))
    review.locator("button.cs-expand").click()  # the larger review, side by side
    page.wait_for_selector("#changeset.expanded .monaco-diff-editor.side-by-side")
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "agent-diff-review-expanded.png"))
    review.locator("button.cs-expand").click()

    page.click("#changeset-apply")
    page.wait_for_selector('#changeset[data-status="partially_applied"]', timeout=30_000)
    wait_for(lambda: target.read_text() == ONLY_FIRST, "the accepted hunk on disk")
    assert target.read_text() == ONLY_FIRST
    timeline.locator('.tl-item[data-kind="session_finished"]').wait_for(timeout=30_000)
    assert timeline.locator('.tl-item[data-kind="answer"]').count() == 1

    page.click("#changeset-undo")
    page.wait_for_selector('#changeset[data-status="undone"]')
    assert target.read_text() == BEFORE
    assert len(scripted.requests) == 3

    page.reload()  # the session's timeline comes back from its stored events
    page.wait_for_selector('body[data-ready="true"]', state="attached")
    page.locator('#agent-timeline .tl-item[data-kind="session_finished"]').wait_for()
    assert page.locator('#agent-timeline .tl-item[data-kind="user"]').count() == 1
    assert page.locator('#agent-timeline .tl-item[data-kind="changeset_undone"]').count() == 1

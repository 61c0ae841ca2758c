"""Completions through the Ollama API shape (``/api/generate``), on a scripted transport.

No Ollama server runs here; the request shapes are what Ollama documents: ``suffix`` for
its own FIM template, or a rendered template with ``raw``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from mimiverse.complete.engine import Completer, CompletionRequest
from mimiverse.gateway.backends.ollama import OllamaBackend
from mimiverse.gateway.base import FimFile
from mimiverse.settings import EndpointSettings
from mimiverse.testing import gateway_with

SHOW = {"model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}}


def ollama(fim_template: str = "") -> tuple[OllamaBackend, list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/show":
            return httpx.Response(200, json=SHOW)
        bodies.append(json.loads(request.content))
        lines = [
            {"response": "a + b", "done": False},
            {"response": "\nprint()", "done": False},
            {"response": "", "done": True, "done_reason": "stop", "eval_count": 3},
        ]
        return httpx.Response(200, content="".join(json.dumps(x) + "\n" for x in lines))

    settings = EndpointSettings(
        name="ollama", kind="ollama", url="http://ollama:11434", model="qwen2.5-coder:0.5b",
        tasks=["fim"], fim_template=fim_template,
    )  # fmt: skip
    return OllamaBackend(settings, transport=httpx.MockTransport(handle)), bodies


REQUEST = CompletionRequest(
    prefix="def add(a, b):\n    return ",
    suffix="\n\nprint(add(1, 2))\n",
    path="calc.py",
    language="python",
    files=[FimFile("util.py", "def helper():\n    pass")],
)


async def test_native_suffix_goes_to_ollama_with_context_in_the_prompt() -> None:
    backend, bodies = ollama()
    try:
        result = await Completer(gateway_with(backend)).complete(REQUEST)
    finally:
        await backend.close()
    assert result.text == "a + b"  # stopped at the line end
    (body,) = bodies
    assert body["raw"] is False and body["suffix"].startswith("\n\nprint(add(1, 2))")
    assert body["prompt"] == "# util.py\ndef helper():\n    pass\n\ndef add(a, b):\n    return "
    assert "\n" in body["options"]["stop"]


async def test_configured_template_goes_raw() -> None:
    backend, bodies = ollama("qwen")
    try:
        await Completer(gateway_with(backend), repo="demo").complete(REQUEST)
    finally:
        await backend.close()
    (body,) = bodies
    assert body["raw"] is True and "suffix" not in body
    assert body["prompt"].startswith("<|repo_name|>demo\n<|file_sep|>util.py\n")
    assert body["prompt"].endswith("<|fim_middle|>")

"""The engine's logic on a scripted backend: reuse, cancellation, stop rules, context."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mimiverse.complete.engine import Completer, CompletionRequest
from mimiverse.complete.related import Related
from mimiverse.errors import UpstreamError
from mimiverse.gateway.base import FimRequest
from mimiverse.index.symbols import Tag
from mimiverse.testing import FakeBackend, gateway_with

BEFORE = "def add(a, b):\n    "
AFTER = "\n\nprint(add(1, 2))\n"


def req(prefix: str = BEFORE, suffix: str = AFTER, **fields: object) -> CompletionRequest:
    fields.setdefault("session", "editor-1")
    fields.setdefault("path", "calc.py")
    fields.setdefault("language", "python")
    return CompletionRequest(prefix=prefix, suffix=suffix, **fields)  # type: ignore[arg-type]


def fim_calls(fake: FakeBackend) -> list[FimRequest]:
    return [c for c in fake.calls if isinstance(c, FimRequest)]


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend("fake-fim")


@pytest.fixture
async def completer(fake: FakeBackend) -> Completer:
    return Completer(gateway_with(fake))


async def test_typing_what_was_suggested_needs_no_model(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue("return", " a + b")
    first = await completer.complete(req())
    assert first.text == "return a + b" and first.source == "model"
    second = await completer.complete(req(BEFORE + "ret"))
    assert second.text == "urn a + b" and second.source == "typed"
    third = await completer.complete(req(BEFORE + "return a "))
    assert third.text == "+ b" and third.source == "typed"
    assert len(fim_calls(fake)) == 1


async def test_a_running_generation_serves_the_next_keystroke(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue("return", " a", " + b", delay_s=0.05)
    first = asyncio.create_task(completer.complete(req()))
    while not fake.calls:
        await asyncio.sleep(0.01)
    second = await completer.complete(req(BEFORE + "re"))
    assert second.text == "turn a + b" and second.source == "inflight"
    assert (await first).text == "return a + b"
    assert len(fim_calls(fake)) == 1


async def test_a_new_cursor_cancels_the_running_generation(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue(*["x = 1\n"] * 50, delay_s=0.05)
    fake.enqueue("total")
    first = asyncio.create_task(completer.complete(req()))
    while not fake.calls:
        await asyncio.sleep(0.01)
    second = await completer.complete(req("y = ", "\n"))  # the cursor moved elsewhere
    assert second.text == "total"
    old = await first
    assert old.cancelled and old.text == ""
    assert len(fim_calls(fake)) == 2


async def test_typing_against_the_suggestion_starts_a_new_generation(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue("return", " a + b", delay_s=0.05)
    fake.enqueue(" a - b")
    first = asyncio.create_task(completer.complete(req()))
    while not fake.calls:
        await asyncio.sleep(0.01)
    second = await completer.complete(req(BEFORE + "yield"))
    assert second.text == " a - b" and second.source == "model"
    await first
    assert len(fim_calls(fake)) == 2


async def test_runaway_block_is_cut_and_the_cut_is_cached(fake: FakeBackend) -> None:
    completer = Completer(gateway_with(fake))
    before = "class Calc:\n    def add(self, a, b):\n        "
    after = "\n\n    def sub(self, a, b):\n        return a - b\n"
    fake.enqueue(
        "total = a + b\n", "        return total\n", "\n", "    def mul(self, a, b):\n",
        "        return a * b\n", *["# more\n"] * 20,
    )  # fmt: skip
    first = await completer.complete(req(before, after, session=None))
    assert first.text == "total = a + b\n        return total"
    assert first.multiline
    request = fim_calls(fake)[0]
    assert request.n_indent == 8 and request.max_tokens == completer.budget.block_tokens
    again = await completer.complete(req(before, after, session=None))
    assert again.text == first.text and again.source == "cache"
    assert len(fim_calls(fake)) == 1


async def test_single_line_mid_line_asks_for_a_line_and_trims_the_suffix(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue("a, b)")
    result = await completer.complete(req("x = add(", ")\nprint(x)\n"))
    assert result.text == "a, b"  # the ")" is already after the cursor
    call = fim_calls(fake)[0]
    assert "\n" in call.stop and call.max_tokens == completer.budget.line_tokens


async def test_keystrokes_only_extend_the_prompt_after_the_anchor(
    completer: Completer, fake: FakeBackend
) -> None:
    head = "import os\n\ndef main():\n"
    fake.enqueue("x")
    fake.enqueue("y")
    await completer.complete(req(head + "    pa", "\n\nmain()\n"))
    await completer.complete(req(head + "    path = os.", "\n\nmain()\n"))
    one, two = fim_calls(fake)
    assert one.prefix == two.prefix == head + "    pa" and one.suffix == two.suffix
    assert (one.middle, two.middle) == ("", "th = os.")  # the first is plain PSM


async def test_recent_files_and_editor_files_become_context(
    completer: Completer, fake: FakeBackend
) -> None:
    fake.enqueue("1")
    fake.enqueue("2")
    await completer.complete(req("RATE = 0.2\n", "", path="config.py"))
    from mimiverse.gateway.base import FimFile

    await completer.complete(req("total = ", "\n", path="main.py", files=[FimFile("ui.py", "X=1")]))
    files = fim_calls(fake)[1].files
    assert [f.path for f in files] == ["config.py", "ui.py"]
    assert "RATE = 0.2" in files[0].text and files[0].header == "# config.py"


async def test_definitions_of_names_near_the_cursor(tmp_path: Path, fake: FakeBackend) -> None:
    (tmp_path / "shapes.py").write_text(
        "import math\n\n\ndef area(radius):\n    return math.pi * radius**2\n\n\nX = 1\n"
    )

    class Symbols:
        def definitions(self, name: str) -> list[Tag]:
            if name == "area":
                return [Tag("shapes.py", "area", 4, "def", "function", "def area(radius):")]
            return []

    completer = Completer(gateway_with(fake), related=Related(tmp_path, lambda: Symbols()))
    fake.enqueue("area(2)")
    await completer.complete(req("from shapes import area\n\nprint(", ")\n", path="main.py"))
    files = fim_calls(fake)[0].files
    assert [(f.path, f.text) for f in files] == [
        ("shapes.py", "def area(radius):\n    return math.pi * radius**2")
    ]


async def test_failures_reach_the_caller(completer: Completer, fake: FakeBackend) -> None:
    fake.enqueue(fail_before=UpstreamError("boom", retryable=False))
    with pytest.raises(UpstreamError, match="boom"):
        await completer.complete(req())

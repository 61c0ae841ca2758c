"""Feedback round trip through the HTTP API, and the store on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimiverse.complete.feedback import FeedbackStore, Record
from mimiverse.server.app import create_app
from mimiverse.testing import FakeBackend, gateway_with


@pytest.fixture
async def fake() -> FakeBackend:
    return FakeBackend("fake-fim", model="tiny-coder")


@pytest.fixture
async def client(fake: FakeBackend, make_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(index_on_start=False)
    gw = gateway_with(fake)
    app = create_app(settings, gw)
    await gw.start(preload=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c
    await app.state.completer.close()
    await gw.close()


async def suggest(client: httpx.AsyncClient, fake: FakeBackend, text: str, **body: Any) -> str:
    fake.enqueue(text)
    resp = await client.post("/api/ai/fim", json={"suffix": "\n", **body})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["completion"] == text and answer["id"].startswith("cmpl-")
    return str(answer["id"])


async def test_feedback_round_trip(
    client: httpx.AsyncClient, fake: FakeBackend, make_settings: Any
) -> None:
    kept = await suggest(client, fake, "total = 0", prefix="def f():\n    ", language="python")
    dropped = await suggest(client, fake, "pass", prefix="class A:\n    ", language="python")
    other = await suggest(client, fake, "0;", prefix="let x = ", language="javascript")
    for sid, event in [
        (kept, "shown"), (kept, "accepted"), (dropped, "shown"), (dropped, "rejected"),
        (other, "shown"),
    ]:  # fmt: skip
        resp = await client.post("/api/ai/fim/feedback", json={"id": sid, "event": event})
        assert resp.status_code == 200 and resp.json()["ok"] is True
    later = {"id": kept, "event": "retained", "retained_chars": 7}
    assert (await client.post("/api/ai/fim/feedback", json=later)).status_code == 200

    stats = {
        (s["model"], s["language"]): s
        for s in (await client.get("/api/ai/fim/stats")).json()["stats"]
    }
    python = stats[("tiny-coder", "python")]
    assert python["suggestions"] == 2 and python["shown"] == 2
    assert python["accepted"] == 1 and python["rejected"] == 1
    assert python["acceptance_rate"] == 0.5
    assert python["accepted_chars"] == len("total = 0") and python["retained_chars"] == 7
    assert python["retention_rate"] == round(7 / len("total = 0"), 4)
    js = stats[("tiny-coder", "javascript")]
    assert js["shown"] == 1 and js["accepted"] == 0 and js["acceptance_rate"] == 0.0

    # It is kept in the SQLite store in the data dir, and survives a restart.
    store = FeedbackStore(make_settings().data_dir / "mimiverse.sqlite3")
    assert sum(s["suggestions"] for s in await store.stats()) == 3
    await store.close()


async def test_feedback_errors_say_what_to_fix(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    resp = await client.post("/api/ai/fim/feedback", json={"id": "cmpl-nope", "event": "shown"})
    assert resp.status_code == 404
    assert "no suggestion with id 'cmpl-nope'" in resp.json()["error"]["message"]

    resp = await client.post("/api/ai/fim/feedback", json={"id": "x", "event": "liked"})
    assert resp.status_code == 400
    assert "event" in resp.json()["error"]["message"]

    sid = await suggest(client, fake, "1", prefix="x = ")
    resp = await client.post("/api/ai/fim/feedback", json={"id": sid, "event": "retained"})
    assert resp.status_code == 400
    assert "retained_chars" in resp.json()["error"]["message"]


async def test_fim_body_errors_say_what_to_fix(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/ai/fim", json={"prefix": "x", "max_tokens": 0})
    assert resp.status_code == 400 and "max_tokens" in resp.json()["error"]["message"]
    resp = await client.post("/api/ai/fim", json={"prefix": "x", "cursor": 3})
    assert resp.status_code == 400 and "cursor" in resp.json()["error"]["message"]
    resp = await client.post("/api/ai/fim", json={"prefix": "", "suffix": ""})
    assert resp.status_code == 422
    assert "text before and after the cursor" in resp.json()["error"]["message"]


async def test_retained_is_capped_at_the_suggestion(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "s.sqlite3")
    await store.add(Record("s1", "m", "e", "python", "model", 4, 1, 10.0))
    await store.record("s1", "retained", 99)
    (row,) = await store.stats()
    assert row["retained_chars"] == 4 and row["accepted"] == 1
    await store.close()

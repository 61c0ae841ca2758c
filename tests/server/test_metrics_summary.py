"""GET /api/metrics/summary from the server's own figures, and the sampled series."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from mimiverse.observability import Metrics
from mimiverse.server.app import create_app
from mimiverse.server.metrics_series import KEEP, Buckets, Series, histogram, series_lifespan
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from tests.server.test_projects import accounts_app, add_user


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend("fake-fim", model="fake-model")


@pytest.fixture
def client(make_settings: Callable[..., Settings], tmp_path: Path, fake: FakeBackend) -> Any:
    settings = make_settings(project_root=tmp_path, index_on_start=False, embedded=False)
    app = create_app(settings, gateway_with(fake))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as c:
        yield c


def test_summary_reports_stages_fim_cache_and_http(client: TestClient, fake: FakeBackend) -> None:
    ids = []
    for prefix in ("def add(a, b):\n    ", "x = ", "y = "):
        fake.enqueue("return ", "a + b")
        resp = client.post("/api/ai/fim", json={"prefix": prefix, "language": "python"})
        assert resp.status_code == 200, resp.text
        ids.append(resp.json()["id"])
    cached = client.post("/api/ai/fim", json={"prefix": "x = ", "language": "python"})
    assert cached.json()["cached"] is True
    for suggestion in ids:
        client.post("/api/ai/fim/feedback", json={"id": suggestion, "event": "shown"})
    client.post("/api/ai/fim/feedback", json={"id": ids[0], "event": "accepted"})
    client.post("/api/ai/fim/feedback", json={"id": ids[0], "event": "retained",
                                              "retained_chars": 6})  # fmt: skip
    client.get("/api/nothing-here")

    resp = client.get("/api/metrics/summary")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    for stage in ("queue_wait", "time_to_first_token", "decode", "model_request", "http"):
        assert set(body["stages"][stage]) == {"count", "p50_ms", "p95_ms", "mean_ms"}
    model = body["stages"]["model_request"]
    assert model["count"] == 3 and 0 <= model["p50_ms"] <= model["p95_ms"]
    assert body["by_task"]["fim"]["time_to_first_token"]["count"] == 3
    fim = body["fim"]
    assert fim["requests"] == 4 and fim["model_requests"] == 3
    assert fim["shown"] == 3 and fim["accepted"] == 1
    assert fim["acceptance_rate"] == round(1 / 3, 4)
    assert fim["retained_chars"] == 6 and fim["retention_rate"] == round(6 / 12, 4)
    cache = body["cache"]
    assert (cache["hits"], cache["misses"], cache["hit_rate"]) == (1, 3, 0.25)
    assert cache["tasks"]["fim"]["hits"] == 1
    http = body["http"]
    assert http["requests"] >= 9 and http["client_errors"] >= 1 and http["errors"] == 0
    routes = {(r["method"], r["route"]): r for r in http["routes"]}
    assert routes[("POST", "/api/ai/fim")]["count"] == 4
    assert routes[("GET", "unmatched")]["client_errors"] == 1
    assert body["series"] and body["series"][0]["t"] > 0
    assert body["sample_every_s"] == 5.0


def test_the_series_samples_what_happened_between_points() -> None:
    metrics = Metrics()
    now = iter(range(1000, 2000, 5))
    series = Series(metrics, clock=lambda: float(next(now)))
    first = series.sample()
    assert first["t"] == 1000 and first["http_requests"] == 0 and first["http_p50_ms"] is None
    for seconds in (0.004, 0.004, 0.004, 0.2):
        metrics.http_latency.labels("GET", "/api/x").observe(seconds)
    metrics.http_requests.labels("GET", "/api/x", "500").inc()
    metrics.cache_event("fim", "hit")
    metrics.cache_event("fim", "miss")
    metrics.cache_event("fim", "miss")
    metrics.latency.labels("fake", "e", "fim").observe(0.3)
    metrics.tokens_out.labels("fake", "e", "fim").inc(12)
    second = series.sample()
    assert second["t"] == 1005 and second["http_requests"] == 4 and second["http_errors"] == 1
    assert 2.5 <= second["http_p50_ms"] <= 5.0 and 100 <= second["http_p95_ms"] <= 250
    assert (second["cache_hits"], second["cache_misses"]) == (1, 2)
    assert second["cache_hit_rate"] == round(1 / 3, 4)
    assert second["fim_requests"] == 1 and 250 <= second["fim_p50_ms"] <= 500
    assert second["tokens_out"] == 12 and second["model_requests"] == 1
    third = series.sample()
    assert third["http_requests"] == 0 and third["cache_hit_rate"] is None
    assert len(series.points) == 3


def test_the_ring_keeps_the_last_hour() -> None:
    series = Series(Metrics())
    for _ in range(KEEP + 10):
        series.sample()
    assert len(series.points) == KEEP == 720


def test_quantiles_interpolate_within_buckets_like_prometheus() -> None:
    metrics = Metrics()
    for _ in range(10):
        metrics.ttft.labels("b", "e", "chat").observe(0.03)  # bucket (0.025, 0.05]
    buckets = histogram(metrics.ttft)[""]
    assert buckets.count == 10
    assert buckets.quantile_ms(0.5) == 37.5  # halfway through the bucket
    assert buckets.mean_ms() == 30.0
    metrics.ttft.labels("b", "e", "chat").observe(500)  # past the last bound (120 s)
    assert histogram(metrics.ttft)[""].quantile_ms(1.0) == 120_000
    assert Buckets().quantile_ms(0.5) is None and Buckets().describe()["count"] == 0


async def test_the_sampler_runs_while_the_app_does(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(project_root=tmp_path, index_on_start=False, embedded=False)
    app: FastAPI = create_app(settings, gateway_with(FakeBackend("fake")))
    async with series_lifespan(app, every_s=0.05):
        await asyncio.sleep(0.3)
        assert len(app.state.metrics_series.points) >= 4
    assert app.state.metrics_series is None


def test_any_user_may_read_it_and_it_names_no_user_project_or_path(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    app = accounts_app(make_settings, tmp_path)
    alice, bob = add_user(app, "alice"), add_user(app, "bob")
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        assert client.get("/api/metrics/summary").status_code == 401
        made = client.post("/api/projects", json={"name": "zebraquokka"}, headers=alice)
        assert made.status_code == 201
        project = {"project": "alice/zebraquokka"}
        client.put("/api/files/content", headers=alice,
                   json={**project, "path": "walrus_secret.py", "content": "x"})  # fmt: skip
        client.get("/api/files/content", params={**project, "path": "walrus_secret.py"},
                   headers=alice)  # fmt: skip
        client.get("/api/agent/sessions/s_pangolin/events", headers=alice)
        resp = client.get("/api/metrics/summary", headers=bob)
        assert resp.status_code == 200, resp.text
        text = json.dumps(resp.json())
        for private in ("alice", "zebraquokka", "walrus_secret", "pangolin", "u_"):
            assert private not in text, private
        routes = {r["route"] for r in resp.json()["http"]["routes"]}
        assert "/api/agent/sessions/{session_id}/events" in routes

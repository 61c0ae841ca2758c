"""Routing, failover, breaker, balancing and streaming-error rules (scripted backends)."""

from __future__ import annotations

import asyncio

import pytest

from mimiverse.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    NoModelForTask,
    StreamInterrupted,
    UnknownModel,
    UpstreamError,
)
from mimiverse.gateway.base import Capabilities, ChatRequest, FimRequest
from mimiverse.gateway.breaker import CircuitBreaker
from mimiverse.testing import FakeBackend, gateway_with

FIM = FimRequest(prefix="def f(", suffix="):")


async def collect(stream: object) -> str:
    return "".join([d.text async for d in stream])  # type: ignore[attr-defined]


async def test_first_endpoint_serves_when_idle() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue("from-a")
    gw = gateway_with(a, b)
    result = await gw.fim(FIM)
    assert result.text == "from-a"
    assert result.endpoint == "a"
    assert len(b.calls) == 0


async def test_failover_before_first_token() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue(fail_before=UpstreamError("connection refused", endpoint="a"))
    b.enqueue("from-b")
    gw = gateway_with(a, b)
    result = await gw.fim(FIM)
    assert (result.text, result.endpoint) == ("from-b", "b")
    failovers = gw.metrics.failovers.labels("fim", "a")._value.get()
    assert failovers == 1


async def test_failure_after_tokens_is_an_error_not_a_truncation() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue("one", "two", "three", fail_after=2)
    gw = gateway_with(a, b)
    seen: list[str] = []
    with pytest.raises(StreamInterrupted, match="incomplete"):
        async for delta in gw.fim_stream(FIM):
            seen.append(delta.text)
    assert seen == ["one", "two"]
    assert len(b.calls) == 0, "a stream that already sent tokens must not be silently restarted"


async def test_non_retryable_errors_do_not_fail_over() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue(fail_before=ContextLengthExceeded("too long"))
    gw = gateway_with(a, b)
    with pytest.raises(ContextLengthExceeded):
        await gw.fim(FIM)
    assert len(b.calls) == 0
    assert gw.router.endpoints["a"].breaker.state == "closed"


async def test_all_endpoints_failing_names_each() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue(fail_before=UpstreamError("refused", endpoint="a"))
    b.enqueue(fail_before=UpstreamError("timeout", endpoint="b"))
    gw = gateway_with(a, b)
    with pytest.raises(BackendUnavailable, match=r"a: refused; b: timeout"):
        await gw.fim(FIM)


async def test_breaker_opens_and_moves_traffic() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    for _ in range(3):
        a.enqueue(fail_before=UpstreamError("refused", endpoint="a"))
    gw = gateway_with(a, b, breaker_failures=3)
    for _ in range(3):
        await gw.fim(FimRequest(prefix="x", temperature=0.5))
    assert gw.router.endpoints["a"].breaker.state == "open"
    calls_before = len(a.calls)
    for _ in range(5):
        assert (await gw.fim(FimRequest(prefix="y", temperature=0.5))).endpoint == "b"
    assert len(a.calls) == calls_before


def test_breaker_half_open_allows_one_trial() -> None:
    now = [0.0]
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.5
    assert breaker.state == "half-open"
    assert breaker.allow() is True
    assert breaker.allow() is False, "only one trial request while half-open"
    breaker.record_failure()
    assert breaker.state == "open"
    now[0] = 21.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


async def test_health_check_marks_down_and_back() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    gw = gateway_with(a, b)
    a.healthy = False
    await gw.router.check_all()
    assert not gw.router.endpoints["a"].available
    assert [e.name for e in gw.router.route("fim")] == ["b", "a"]
    a.healthy = True
    await gw.router.check_all()
    assert gw.router.endpoints["a"].available


async def test_balancing_spreads_concurrent_requests() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.default.delay_s = b.default.delay_s = 0.05
    gw = gateway_with(a, b, max_concurrency=2)
    requests = [FimRequest(prefix=f"p{i}", temperature=0.5) for i in range(8)]
    results = await asyncio.gather(*(gw.fim(r) for r in requests))
    served = {r.endpoint for r in results}
    assert served == {"a", "b"}


async def test_concurrency_limit_queues() -> None:
    a = FakeBackend("a")
    a.default.delay_s = 0.05
    gw = gateway_with(a, max_concurrency=1)
    peak = 0

    async def one(i: int) -> None:
        nonlocal peak
        async for _ in gw.fim_stream(FimRequest(prefix=f"q{i}", temperature=0.5)):
            peak = max(peak, gw.router.endpoints["a"].in_flight)

    await asyncio.gather(*(one(i) for i in range(4)))
    assert peak == 1


async def test_queue_timeout_fails_over_to_free_endpoint() -> None:
    a, b = FakeBackend("a"), FakeBackend("b")
    a.enqueue("slow", delay_s=0.5)
    gw = gateway_with(a, b, max_concurrency=1, queue_timeout_s=0.05)
    slow = asyncio.create_task(gw.fim(FimRequest(prefix="1", temperature=0.5)))
    await asyncio.sleep(0.01)
    quick = await gw.fim(FimRequest(prefix="2", temperature=0.5))
    assert quick.endpoint == "b"
    assert (await slow).endpoint == "a"


async def test_unknown_model_lists_known() -> None:
    gw = gateway_with(FakeBackend("a", model="m-a"))
    with pytest.raises(UnknownModel, match=r"unknown model 'nope': use one of a, m-a"):
        await gw.fim(FIM, model="nope")


async def test_no_model_for_task_names_the_fix() -> None:
    gw = gateway_with(FakeBackend("a", capabilities=Capabilities(fim=True)))
    with pytest.raises(NoModelForTask, match="MIMI_ENDPOINTS"):
        await gw.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}]))


async def test_fim_is_cached_and_chat_only_when_asked() -> None:
    a = FakeBackend("a")
    gw = gateway_with(a)
    first = await gw.fim(FIM)
    second = await gw.fim(FIM)
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text and len(a.calls) == 1
    chat = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    await gw.chat(chat)
    assert not (await gw.chat(chat)).cached
    await gw.chat(chat, cache=True)
    assert (await gw.chat(chat, cache=True)).cached


async def test_interrupted_stream_is_not_cached() -> None:
    a = FakeBackend("a")
    a.enqueue("x", "y", fail_after=1)
    gw = gateway_with(a)
    with pytest.raises(StreamInterrupted):
        await gw.fim(FIM)
    assert not (await gw.fim(FIM)).cached


async def test_embed_caches_each_text() -> None:
    a = FakeBackend("a")
    gw = gateway_with(a)
    vectors, cached = await gw.embed(["alpha", "beta"])
    assert cached == 0 and len(vectors) == 2
    vectors2, cached2 = await gw.embed(["beta", "gamma", "alpha"])
    assert cached2 == 2
    assert vectors2[0] == vectors[1] and vectors2[2] == vectors[0]
    assert a.calls[-1].inputs == ["gamma"]  # type: ignore[attr-defined]


async def test_cancelled_consumer_releases_the_slot() -> None:
    a = FakeBackend("a")
    a.enqueue("1", "2", "3", delay_s=0.05)
    gw = gateway_with(a, max_concurrency=1)
    stream = gw.fim_stream(FimRequest(prefix="c", temperature=0.5))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert gw.router.endpoints["a"].in_flight == 0
    assert gw.router.endpoints["a"].breaker.state == "closed"

"""`mimiverse doctor` reports a FIM context too small for the completion budget."""

from __future__ import annotations

from typing import Any

from mimiverse.doctor import completion_budget
from mimiverse.gateway.base import Capabilities
from mimiverse.testing import FakeBackend, gateway_with


def test_context_too_small_for_the_budget_is_reported_with_the_fix(make_settings: Any) -> None:
    small = FakeBackend("small-fim", capabilities=Capabilities(fim=True, context_length=1024))
    large = FakeBackend("large-fim", capabilities=Capabilities(fim=True, context_length=8192))
    gw = gateway_with(small, large)
    settings = make_settings(complete_prefix_tokens=1024, complete_context_tokens=512)
    checks = {c.name: c for c in completion_budget(settings, gw.router.routes["fim"])}
    bad = checks["complete: small-fim"]
    assert bad.status == "fail"
    assert "context is 1024 tokens but a completion may need" in bad.detail
    assert "context_length of endpoint 'small-fim'" in bad.fix
    assert "MIMI_COMPLETE_PREFIX_TOKENS" in bad.fix
    assert checks["complete: large-fim"].status == "ok"


def test_shipped_defaults_fit_the_embedded_context(make_settings: Any) -> None:
    settings = make_settings()
    backend = FakeBackend(
        "embedded-fim",
        capabilities=Capabilities(fim=True, context_length=settings.embedded_fim_ctx),
    )
    (check,) = completion_budget(settings, gateway_with(backend).router.routes["fim"])
    assert check.status == "ok", check.detail

"""Secrets never reach logs or agent events."""

from __future__ import annotations

import logging

import pytest

from mimiverse.accounts.tokens import new_api_token
from mimiverse.agent.events import EventLog
from mimiverse.observability import install_log_redaction


def test_logs_lose_tokens_cookies_and_configured_secrets(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction("s3cret-session-key-0123456789")
    _, token = new_api_token()
    log = logging.getLogger("mimiverse.test")
    with caplog.at_level(logging.INFO):
        log.info("auth %s", f"Authorization: Bearer {token}")
        log.info("cookie mimi_session=%s", "Zm9vYmFyYmF6cXV4cXV1eHh5enp5")
        log.info("key is s3cret-session-key-0123456789 here")
        log.warning("GET /x?token=abcdefabcdef1234 200")
    text = caplog.text
    assert token not in text and "Zm9vYmFyYmF6cXV4cXV1eHh5enp5" not in text
    assert "s3cret-session-key" not in text and "abcdefabcdef1234" not in text
    assert text.count("[REDACTED:") == 4


def test_agent_events_are_redacted_before_storage_and_streaming() -> None:
    _, token = new_api_token()
    log = EventLog("ses_x")
    event = log.emit("observation", text=f"found {token}", nested={"lines": [f"x {token}"]})
    assert token not in str(event.data) and "[REDACTED:MIMI_TOKEN]" in event.data["text"]

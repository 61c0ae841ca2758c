"""Schemathesis over the whole API: no 5xx, and every answer matches the OpenAPI document.

The app runs in ``auth=accounts`` with an admin's API token and scripted model backends, so
every route is reachable and model routes answer at once. Schemathesis' engine (what
``schemathesis run`` drives) generates valid and invalid requests from the document in all
its phases (examples, boundary values, fuzzing, stateful sequences) and runs every check:
server errors, status codes, content types, response bodies (SSE events too) and headers,
valid data accepted, invalid data refused, requests without credentials refused, 405s with
a right ``Allow``. Generation is derandomized with a fixed seed, so a run is repeatable.

The default suite runs a short profile; ``-m slow`` a long one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from mimiverse.accounts.principal import SCOPES
from mimiverse.server.app import accounts_of, create_app
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

SEED = 6
SHORT_EXAMPLES = 5
LONG_EXAMPLES = 100


@dataclass
class Report:
    """What one schemathesis run did."""

    cases: int = 0
    failures: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return f"{len(self.failures)} failures in {self.cases} cases:\n\n" + "\n\n".join(
            self.failures
        )


def run_schemathesis(app: FastAPI, token: str, examples: int) -> Report:
    """Every phase and check over the app's whole document, as an admin."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": examples, "deterministic": True},
            "auth": {"openapi": {"apiToken": {"bearer": token}}},
            "cache": {"enabled": False},
            # show max_tokens, session … in failure reports (the token is this test's own)
            "output": {"sanitization": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    report = Report()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            report.cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    if info is not None and info.failure.message not in str(report.failures):
                        report.failures.append(
                            f"{event.recorder.label} [{check.name}] {info.failure.title}\n"
                            f"{info.failure.message}\n{info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.failures.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            report.failures.append(f"fatal: {event.exception!r}")
    return report


@pytest.fixture
def admin_app(make_settings: Callable[..., Settings], tmp_path: Path) -> tuple[FastAPI, str]:
    """An accounts-mode app on a scripted model, and an admin's API token."""
    settings = make_settings(
        auth="accounts", embedded=False, rate_limits=False, workspaces_dir=tmp_path / "ws"
    )
    app = create_app(settings, gateway_with(FakeBackend("fake", model="fake-model")))
    accounts = accounts_of(app)
    admin = accounts.create_user("admin", "correct horse battery staple", role="admin")
    token, _ = accounts.create_token(admin["id"], "schemathesis", scopes=sorted(SCOPES))
    return app, token


def test_api_conforms_to_its_document(admin_app: tuple[FastAPI, str]) -> None:
    report = run_schemathesis(*admin_app, SHORT_EXAMPLES)
    print(f"schemathesis (short): {report.cases} cases, {len(report.failures)} failures")
    assert not report.failures, report.explain()
    assert report.cases > 1000


@pytest.mark.slow
def test_api_conforms_to_its_document_long(admin_app: tuple[FastAPI, str]) -> None:
    report = run_schemathesis(*admin_app, LONG_EXAMPLES)
    print(f"schemathesis (long): {report.cases} cases, {len(report.failures)} failures")
    assert not report.failures, report.explain()

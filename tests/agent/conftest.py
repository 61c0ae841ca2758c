"""A tiny project with a failing test, and an agent service over the in-package fake model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.service import AgentService
from mimiverse.agent.store import AgentStore
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)


def step(tool: str, plan: list[str] | None = None, thought: str = "", **args: Any) -> str:
    """One scripted model reply in the agent's JSON format."""
    body: dict[str, Any] = {}
    if plan:
        body["plan"] = plan
    body["thought"] = thought or f"call {tool}"
    body["action"] = {"tool": tool, "args": args}
    return json.dumps(body)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """calc.py with a bug and a pytest file that catches it, committed to git."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
        cwd=root,
        check=True,
    )
    return root


@pytest.fixture
def fake_model() -> FakeBackend:
    """The scripted chat model (no tool-call support: the agent uses its JSON mode)."""
    return FakeBackend("fake-chat")


@pytest.fixture
async def agent(
    fake_model: FakeBackend, make_settings: Callable[..., Settings], project: Path
) -> AsyncIterator[AgentService]:
    """An agent service over the fake model and a real store, sandbox and tools."""
    settings = make_settings(project_root=project, agent_fix_rounds=1, agent_max_steps=12)
    gateway = gateway_with(fake_model)
    await gateway.start(preload=False)
    store = AgentStore(settings.data_dir / "mimiverse.sqlite3")
    service = AgentService(settings, gateway, store)
    yield service
    await service.close()
    await gateway.close()
    store.close()

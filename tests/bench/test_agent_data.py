"""The agent bench's fixtures: every task is a real bug, and its reference fix solves it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_agent", BENCH / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


agent = _bench_module()
TASKS = agent.load_tasks()


def test_enough_tasks_and_prompts() -> None:
    assert len(TASKS) >= 12
    prompts = agent.load_prompts()
    assert len(prompts) >= 55
    assert len({p.id for p in prompts}) == len(prompts)
    names = {t.name for t in TASKS}
    assert {p.repo for p in prompts} <= names
    assert all(p.prompt.strip() and p.expect for p in prompts)
    assert set(agent.QUICK_TASKS) <= names


def test_prompts_expect_real_tools() -> None:
    from mimiverse.agent.tools import default_registry

    known = {*default_registry().names(), "finish"}
    assert {name for p in agent.load_prompts() for name in p.expect} <= known


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_task_fails_then_reference_fix_passes(task: Any, tmp_path: Path) -> None:
    root = agent.copy_repo(task.root, tmp_path / "repo", git=False)
    assert not (root / "task.toml").exists()
    assert task.task and task.check and task.fix
    passed, output = agent.run_check(root, task.check)
    assert not passed and " failed" in output, output
    agent.apply_fix(root, task.fix)
    passed, output = agent.run_check(root, task.check)
    assert passed, output

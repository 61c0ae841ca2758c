"""Real git repositories for tests: the ``git`` CLI without the machine's config or GIT_* env."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def isolate_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git reads no author (or anything else) from the machine's ~/.gitconfig."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


def git(root: Path, *args: str) -> str:
    """Run ``git args`` in ``root`` (GIT_* variables of the test run removed); its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A repository with a configured author and ``files`` committed."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Ada")
    git(root, "config", "user.email", "ada@example.com")
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if files:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "init")
    return root

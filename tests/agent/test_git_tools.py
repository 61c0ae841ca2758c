"""git_status, git_diff and git_commit on real repositories; commit messages from FakeBackend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.tools.base import Registry, ToolContext
from mimiverse.agent.tools.git import GitCommit, GitDiff, GitStatus, clean_message
from mimiverse.errors import UpstreamError
from mimiverse.gateway.base import ChatRequest
from mimiverse.gateway.service import Gateway
from mimiverse.settings import Settings
from mimiverse.testing import FakeBackend, gateway_with
from mimiverse.workspace.paths import Workspace
from tests.workspace.gitrepo import git, isolate_git_config, make_repo

CALC = "def divide(a, b):\n    return a / b\n"


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git_config(tmp_path, monkeypatch)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """calc.py and its test, committed by a configured author."""
    files = {"calc.py": CALC, "tests/test_calc.py": "def test_divide():\n    pass\n"}
    return make_repo(tmp_path / "repo", files)


@pytest.fixture
def make_ctx(make_settings: Callable[..., Settings]) -> Callable[..., ToolContext]:
    def make(root: Path, gateway: Gateway | None = None) -> ToolContext:
        workspace = Workspace(root)
        return ToolContext(
            workspace=workspace,
            settings=make_settings(project_root=root),
            changes=ChangeManager(workspace),
            gateway=gateway,
        )

    return make


@pytest.fixture
def registry() -> Registry:
    return Registry([GitStatus(), GitDiff(), GitCommit()])


@pytest.fixture
async def model() -> AsyncIterator[tuple[FakeBackend, Gateway]]:
    fake = FakeBackend("fake-chat")
    gateway = gateway_with(fake)
    await gateway.start(preload=False)
    yield fake, gateway
    await gateway.close()


def change_calc(root: Path) -> None:
    (root / "calc.py").write_text(
        "def divide(a, b):\n    if b == 0:\n        return None\n    return a / b\n"
    )
    (root / "tests" / "test_calc.py").write_text(
        "def test_divide():\n    pass\n\n\ndef test_zero():\n    pass\n"
    )


async def test_git_status(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    ctx = make_ctx(repo)
    clean = await registry.call("git_status", {}, ctx)
    assert clean.text == "On branch main\nnothing to commit: the working tree is clean"
    assert clean.data["clean"]

    change_calc(repo)
    git(repo, "add", "calc.py")
    (repo / "notes.txt").write_text("n\n")
    ctx.changes.stage_write("draft.py", "x = 1\n")
    result = await registry.call("git_status", {}, ctx)
    assert result.ok
    assert result.text.splitlines() == [
        "On branch main",
        "Staged (will be committed):",
        "  modified: calc.py",
        "Not staged:",
        "  modified: tests/test_calc.py",
        "Untracked:",
        "  notes.txt",
        "(note: you have staged edits that are not applied yet; git sees only the files on disk)",
    ]
    assert result.data["branch"] == "main"
    assert [e["path"] for e in result.data["staged"]] == ["calc.py"]
    assert not GitStatus.mutates and not GitDiff.mutates and GitCommit.mutates


async def test_git_diff(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    ctx = make_ctx(repo)
    nothing = await registry.call("git_diff", {}, ctx)
    assert nothing.ok and nothing.text == "no uncommitted changes"

    change_calc(repo)
    git(repo, "add", "calc.py")
    (repo / "new.py").write_text("NEW = 1\n")
    result = await registry.call("git_diff", {}, ctx)
    lines = result.text.splitlines()
    assert lines[0] == "Changes against the last commit (3 files):"
    assert lines[1:4] == [
        "M        +2 -0  calc.py",
        "M        +4 -0  tests/test_calc.py",
        "?        +1 -0  new.py",
    ]
    assert "+    if b == 0:" in result.text and "+NEW = 1" in result.text

    staged = await registry.call("git_diff", {"staged": True}, ctx)
    assert staged.text.startswith("Staged changes (1 file):\nM        +2 -0  calc.py")
    assert "test_zero" not in staged.text

    one = await registry.call("git_diff", {"path": "tests"}, ctx)
    assert one.text.startswith("Changes against the last commit in tests (1 file):")


async def test_git_diff_is_cut_to_fit_the_observation(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    (repo / "big.py").write_text("".join(f"value_{n} = {n}\n" for n in range(3000)))
    result = await registry.call("git_diff", {}, make_ctx(repo))
    assert result.data["truncated"]
    assert result.observation() == result.text
    assert result.text.endswith("[diff cut here: pass path to see one file at a time]")


async def test_commit_with_a_message(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    change_calc(repo)
    result = await registry.call(
        "git_commit", {"message": "fix: return None when dividing by zero"}, make_ctx(repo)
    )
    assert result.ok, result.text
    sha = git(repo, "rev-parse", "HEAD").strip()
    assert result.data["sha"] == sha
    assert result.text == (
        f'Committed {sha[:10]}: "fix: return None when dividing by zero" '
        "(2 files: calc.py, tests/test_calc.py)"
    )
    assert git(repo, "log", "-1", "--format=%an %s").strip() == (
        "Ada fix: return None when dividing by zero"
    )
    assert git(repo, "status", "--porcelain") == ""


async def test_commit_of_some_paths(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    change_calc(repo)
    result = await registry.call(
        "git_commit", {"message": "Guard division", "paths": ["calc.py"]}, make_ctx(repo)
    )
    assert result.ok and "(1 file: calc.py)" in result.text
    assert git(repo, "status", "--porcelain").strip() == "M tests/test_calc.py"


async def test_commit_message_written_by_the_model(
    registry: Registry,
    make_ctx: Callable[..., ToolContext],
    repo: Path,
    model: tuple[FakeBackend, Gateway],
) -> None:
    fake, gateway = model
    fake.enqueue(
        "```\n", "fix: return None when dividing by zero\n\n", "Callers check for None.\n```"
    )
    change_calc(repo)
    result = await registry.call("git_commit", {}, make_ctx(repo, gateway))
    assert result.ok, result.text
    assert "written by the model" in result.text
    assert git(repo, "log", "-1", "--format=%B").strip() == (
        "fix: return None when dividing by zero\n\nCallers check for None."
    )
    (request,) = [c for c in fake.calls if isinstance(c, ChatRequest)]
    system, user = request.messages
    assert "imperative" in system["content"] and "72" in system["content"]
    assert "M calc.py" in user["content"] and "+    if b == 0:" in user["content"]


@pytest.mark.parametrize("failure", ["error", "empty", "no gateway"])
async def test_commit_message_falls_back_to_a_summary(
    registry: Registry,
    make_ctx: Callable[..., ToolContext],
    repo: Path,
    model: tuple[FakeBackend, Gateway],
    failure: str,
) -> None:
    fake, gateway = model
    if failure == "error":
        fake.enqueue(fail_before=UpstreamError("model down", retryable=False))
    elif failure == "empty":
        fake.enqueue("```\n```")
    change_calc(repo)
    ctx = make_ctx(repo, None if failure == "no gateway" else gateway)
    result = await registry.call("git_commit", {"message": "  "}, ctx)
    assert result.ok, result.text
    assert git(repo, "log", "-1", "--format=%B").strip() == "Update calc.py, tests/test_calc.py"
    assert result.data["message_source"] == "summary"
    assert "no model wrote one" in result.text


async def test_commit_refusals(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path, tmp_path: Path
) -> None:
    ctx = make_ctx(repo)
    nothing = await registry.call("git_commit", {"message": "Nothing"}, ctx)
    assert not nothing.ok and "nothing to commit" in nothing.text

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.py").write_text("a\n")
    for tool in ("git_commit", "git_status", "git_diff"):
        result = await registry.call(tool, {}, make_ctx(plain))
        assert not result.ok, tool
        assert "not a git repository" in result.text and "git init" in result.text

    for paths in (["../outside.py"], ["/etc/passwd"], ["nope.py"]):
        bad = await registry.call("git_commit", {"message": "x", "paths": paths}, ctx)
        assert not bad.ok, paths
    escaped = await registry.call("git_diff", {"path": "../repo2"}, ctx)
    assert not escaped.ok and "outside the project" in escaped.text


async def test_commit_bad_arguments_name_the_field(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path
) -> None:
    ctx = make_ctx(repo)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("git_commit", {"paths": "calc.py"}, "paths"),
        ("git_commit", {"message": 3}, "message"),
        ("git_commit", {"msg": "x"}, "msg"),
        ("git_diff", {"staged": "maybe"}, "staged"),
        ("git_status", {"verbose": True}, "verbose"),
    ]
    for tool, args, field in cases:
        result = await registry.call(tool, args, ctx)
        assert not result.ok, (tool, args)
        assert f"invalid arguments for {tool}" in result.text and field in result.text


async def test_commit_without_an_author_and_without_hooks(
    registry: Registry, make_ctx: Callable[..., ToolContext], repo: Path, tmp_path: Path
) -> None:
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\nexit 1\n")
    hook.chmod(0o755)
    change_calc(repo)
    result = await registry.call("git_commit", {"message": "Guard division"}, make_ctx(repo))
    assert result.ok, result.text
    assert "No git author is configured" in result.text
    assert "Mimiverse <mimiverse@localhost>" in result.text
    assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == "Mimiverse <mimiverse@localhost>"
    assert not (tmp_path / "hook-ran").exists(), "the agent's commits run no repository hooks"


def test_clean_message() -> None:
    assert clean_message("<think>hmm</think>\nCommit message: Add parser.\n") == "Add parser"
    assert clean_message('"fix: quote"') == "fix: quote"
    assert clean_message("```text\nfeat: x\n\n\n\nbody\n```") == "feat: x\n\nbody"
    long = clean_message("refactor: " + "split the very long module into smaller ones " * 3)
    assert len(long) <= 72 and not long.endswith(" ")
    assert long.startswith("refactor: split the very long module")
    assert clean_message("   \n```\n```") == ""

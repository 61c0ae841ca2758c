"""Git over the CLI, against real repositories in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mimiverse.errors import BadRequest
from mimiverse.workspace.git import (
    FALLBACK_EMAIL,
    FALLBACK_NAME,
    FileStat,
    Git,
    fallback_message,
    parse_numstat,
    parse_status,
)
from tests.workspace.gitrepo import git, isolate_git_config, make_repo


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git_config(tmp_path, monkeypatch)


async def test_status_lists_staged_unstaged_untracked_and_renames(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a = 1\n", "b.py": "b = 1\n", "old.py": "x\n" * 20})
    (root / "a.py").write_text("a = 2\n")
    (root / "b.py").write_text("b = 2\n")
    git(root, "add", "b.py")
    git(root, "mv", "old.py", "new.py")
    (root / "notes.txt").write_text("n\n")
    (root / "fresh").mkdir()
    (root / "fresh" / "x.py").write_text("x\n")

    status = await Git(root).status()

    assert status.branch == "main"
    assert status.head == git(root, "rev-parse", "HEAD").strip()
    assert [(e.path, e.index) for e in status.staged] == [("b.py", "M"), ("new.py", "R")]
    assert status.staged[1].orig_path == "old.py"
    assert [(e.path, e.worktree) for e in status.unstaged] == [("a.py", "M")]
    assert status.untracked == ["fresh/", "notes.txt"]
    assert not status.clean


async def test_status_of_a_new_repository_and_a_clean_one(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r")
    status = await Git(root).status()
    assert (status.branch, status.head, status.clean) == ("main", None, True)
    (root / "a.py").write_text("a\n")
    git(root, "add", "a.py")
    git(root, "commit", "-qm", "one")
    assert (await Git(root).status()).clean


async def test_status_ahead_and_behind_its_upstream(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "1\n"})
    git(root, "branch", "base")
    git(root, "branch", "-u", "base")
    for n in (2, 3):
        (root / "a.py").write_text(f"{n}\n")
        git(root, "commit", "-qam", f"c{n}")
    status = await Git(root).status()
    assert (status.upstream, status.ahead, status.behind) == ("base", 2, 0)


async def test_status_reports_conflicts(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "x = 0\n"})
    git(root, "checkout", "-qb", "other")
    (root / "a.py").write_text("x = 1\n")
    git(root, "commit", "-qam", "one")
    git(root, "checkout", "-q", "main")
    (root / "a.py").write_text("x = 2\n")
    git(root, "commit", "-qam", "two")
    subprocess.run(["git", "merge", "-q", "other"], cwd=root, capture_output=True)
    status = await Git(root).status()
    assert status.conflicted == ["a.py"]


async def test_non_ascii_names_are_not_quoted(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"keep.py": "k\n"})
    (root / "café menu.py").write_text("c\n")
    status = await Git(root).status()
    assert status.untracked == ["café menu.py"]
    commit = await Git(root).commit("Add the menu")
    assert [f.path for f in commit.files] == ["café menu.py"]


async def test_a_project_inside_a_larger_repository_sees_only_itself(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"top.py": "t\n", "app/main.py": "m\n"})
    (root / "top.py").write_text("changed\n")
    (root / "app" / "main.py").write_text("changed\n")
    (root / "app" / "new.py").write_text("n\n")
    project = Git(root / "app")

    status = await project.status()
    assert [e.path for e in status.unstaged] == ["main.py"]
    assert status.untracked == ["new.py"]
    diff = await project.diff()
    assert [f.path for f in diff.files] == ["main.py", "new.py"]
    assert "top.py" not in diff.text

    await project.commit("Change the app")
    assert git(root, "status", "--porcelain").strip() == "M top.py"


async def test_git_environment_variables_do_not_leak_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_repo(tmp_path / "other", {"o.py": "o\n"})
    root = make_repo(tmp_path / "r", {"a.py": "a\n"})
    (root / "a.py").write_text("b\n")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "nowhere"))
    status = await Git(root).status()
    assert [e.path for e in status.unstaged] == ["a.py"]


async def test_not_a_repository_says_git_init(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    git_ = Git(plain)
    assert not await git_.is_repo()
    with pytest.raises(BadRequest, match="git init") as caught:
        await git_.status()
    assert caught.value.details["reason"] == "not_a_git_repository"
    with pytest.raises(BadRequest, match="git init"):
        await git_.commit("Add things")


async def test_working_tree_diff_includes_new_files_and_staged_diff_only_staged(
    tmp_path: Path,
) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a = 1\n", "b.py": "b = 1\n"})
    (root / "a.py").write_text("a = 2\n")
    (root / "b.py").write_text("b = 2\n")
    git(root, "add", "b.py")
    (root / "new.py").write_text("one\ntwo\n")
    (root / "blob.bin").write_bytes(b"\0\1\2")
    (root / ".gitignore").write_text("ignored.txt\n")
    (root / "ignored.txt").write_text("secret\n")

    diff = await Git(root).diff()
    stats = {f.path: (f.status, f.added, f.removed) for f in diff.files}
    assert stats == {
        "a.py": ("M", 1, 1),
        "b.py": ("M", 1, 1),
        ".gitignore": ("?", 1, 0),
        "blob.bin": ("?", None, None),
        "new.py": ("?", 2, 0),
    }
    assert "+a = 2" in diff.text and "+++ b/new.py" in diff.text
    assert "ignored" not in diff.text.replace(".gitignore", "").replace("ignored.txt\n", "")

    staged = await Git(root).diff(staged=True)
    assert [f.path for f in staged.files] == ["b.py"]
    only_a = await Git(root).diff(paths=["a.py"])
    assert [f.path for f in only_a.files] == ["a.py"]


async def test_diff_before_the_first_commit(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r")
    (root / "a.py").write_text("a\n")
    git(root, "add", "a.py")
    (root / "b.py").write_text("b\n")
    diff = await Git(root).diff()
    assert [(f.path, f.status) for f in diff.files] == [("a.py", "A"), ("b.py", "?")]
    assert [f.path for f in (await Git(root).diff(staged=True)).files] == ["a.py"]


async def test_diff_is_cut_at_the_limit(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"big.py": "".join(f"line {n}\n" for n in range(5000))})
    (root / "big.py").write_text("".join(f"LINE {n}\n" for n in range(5000)))
    diff = await Git(root).diff(limit=1000)
    assert diff.truncated
    assert len(diff.text) <= 1000
    assert diff.files == [FileStat("big.py", 5000, 5000, "M")], "the summary stays whole"


async def test_commit_stages_everything_in_the_project(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"calc.py": "1\n", "gone.py": "g\n"})
    (root / "calc.py").write_text("2\n")
    (root / "gone.py").unlink()
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text("t\n")

    commit = await Git(root).commit("Rework calc\n\nWith a body.")

    assert commit.sha == git(root, "rev-parse", "HEAD").strip()
    assert commit.subject == "Rework calc"
    assert {(f.path, f.status) for f in commit.files} == {
        ("calc.py", "M"),
        ("gone.py", "D"),
        ("tests/test_calc.py", "A"),
    }
    assert (commit.author, commit.default_author) == ("Ada <ada@example.com>", False)
    assert git(root, "log", "-1", "--format=%an|%B").strip() == "Ada|Rework calc\n\nWith a body."
    assert git(root, "status", "--porcelain") == ""


async def test_commit_of_given_paths_leaves_the_rest(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a\n", "b.py": "b\n"})
    (root / "a.py").write_text("a2\n")
    (root / "b.py").write_text("b2\n")
    git(root, "add", "b.py")  # staged earlier by the user: still not part of this commit
    commit = await Git(root).commit("Change a", ["a.py"])
    assert [f.path for f in commit.files] == ["a.py"]
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["a.py"]
    assert git(root, "status", "--porcelain").strip() == "M  b.py"


async def test_commit_paths_are_literal_not_globs(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a\n"})
    (root / "a.py").write_text("a2\n")
    with pytest.raises(BadRequest, match=r"\*\.py"):
        await Git(root).commit("Change", ["*.py"])


async def test_commit_refuses_nothing_and_an_empty_message(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a\n"})
    with pytest.raises(BadRequest, match="nothing to commit") as caught:
        await Git(root).commit("Nothing")
    assert caught.value.details["reason"] == "nothing_to_commit"
    (root / "a.py").write_text("b\n")
    with pytest.raises(BadRequest, match="message is empty"):
        await Git(root).commit("  \n")


async def test_commit_without_a_configured_author_uses_mimiverse(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r")
    git(root, "config", "--unset", "user.name")
    git(root, "config", "--unset", "user.email")
    (root / "a.py").write_text("a\n")
    commit = await Git(root).commit("Add a")
    assert commit.default_author
    assert commit.author == f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
    assert git(root, "log", "-1", "--format=%an <%ae>").strip() == commit.author


async def test_hooks_run_only_when_allowed(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a\n"})
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\nexit 1\n")
    hook.chmod(0o755)
    (root / "a.py").write_text("b\n")
    with pytest.raises(BadRequest, match="commit failed"):
        await Git(root).commit("With hooks")
    assert (tmp_path / "hook-ran").exists()
    (tmp_path / "hook-ran").unlink()
    await Git(root, hooks=False).commit("Without hooks")
    assert not (tmp_path / "hook-ran").exists()


def test_fallback_message() -> None:
    assert fallback_message([FileStat("calc.py", 1, 1), FileStat("tests/test_calc.py", 2, 0)]) == (
        "Update calc.py, tests/test_calc.py"
    )
    assert fallback_message([FileStat("new.py", 1, 0, "A")]) == "Add new.py"
    assert fallback_message([FileStat("old.py", 0, 1, "D")]) == "Remove old.py"
    many = [FileStat(f"src/package/module_{n}.py", 1, 0) for n in range(30)]
    subject = fallback_message(many)
    assert len(subject) <= 72
    assert subject.startswith("Update src/package/module_0.py, ")
    assert subject.endswith(" more")
    long = [FileStat("a/" + "very_long_folder_name/" * 5 + "file.py", 1, 1)]
    assert fallback_message(long) == "Update file.py"


def test_parsers_handle_renames() -> None:
    text = "1\t0\tplain.py\0" + "0\t0\t\0old name.py\0new name.py\0" + "-\t-\tlogo.png\0"
    assert parse_numstat(text) == [
        FileStat("plain.py", 1, 0),
        FileStat("new name.py", 0, 0),
        FileStat("logo.png", None, None),
    ]
    status = parse_status(
        "# branch.oid (initial)\0# branch.head (detached)\0"
        "2 R. N... 100644 100644 100644 aaa aaa R100 sub/new name.py\0sub/old.py\0"
        "? sub/dir/\0",
        prefix="sub/",
    )
    assert (status.head, status.branch) == (None, None)
    assert [(e.path, e.orig_path) for e in status.staged] == [("new name.py", "old.py")]
    assert status.untracked == ["dir/"]

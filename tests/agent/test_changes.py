"""Changesets: staging, per-hunk decisions, atomic apply, undo, persistence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mimiverse.agent import diffs
from mimiverse.agent.changes import MAX_EDIT_BYTES, ChangeManager, Changeset
from mimiverse.agent.store import AgentStore
from mimiverse.errors import (
    BadRequest,
    Conflict,
    EditMismatch,
    MimiError,
    NotFound,
    PathOutsideWorkspace,
    ToolError,
)
from mimiverse.workspace import files
from mimiverse.workspace.paths import Workspace

LONG = "".join(f"line {n}\n" for n in range(1, 41))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (project / "long.txt").write_text(LONG)
    return project


@pytest.fixture
def changes(root: Path) -> ChangeManager:
    return ChangeManager(Workspace(root), AgentStore.memory(), session_id="s1")


def far_apart_edits(changes: ChangeManager) -> Changeset:
    changes.stage_edit("long.txt", "line 3\n", "line three\n")
    changes.stage_edit("long.txt", "line 35\n", "line thirty-five\n")
    changeset = changes.propose()
    assert changeset is not None
    return changeset


# --- staging ------------------------------------------------------------------------------


def test_edits_are_staged_not_written_and_accumulate(root: Path, changes: ChangeManager) -> None:
    changes.stage_edit("calc.py", "return a - b", "return a + b")
    change = changes.stage_edit("calc.py", "def add(a, b):", "def add(a: int, b: int) -> int:")
    assert change.after == "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert changes.current_text("calc.py") == change.after
    assert changes.current_text("long.txt") is None
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert changes.has_draft()
    assert "-    return a - b" in change.diff() and "+    return a + b" in change.diff()


def test_search_not_found_shows_closest_lines_and_writes_nothing(
    root: Path, changes: ChangeManager
) -> None:
    with pytest.raises(EditMismatch) as err:
        changes.stage_edit("long.txt", "line 17 \nline 18x\n", "new\n")
    message = err.value.message
    assert "not found in long.txt" in message
    assert "17 | line 17" in message and "18 | line 18" in message
    assert "exactly" in message
    assert changes.current_text("long.txt") is None
    assert not changes.has_draft()
    assert (root / "long.txt").read_text() == LONG


def test_ambiguous_search_lists_the_matching_lines(changes: ChangeManager) -> None:
    with pytest.raises(EditMismatch) as err:
        changes.stage_edit("long.txt", "line 1", "x")  # line 1, 10..19
    assert "lines 1, 10, 11" in err.value.message
    assert "more surrounding lines" in err.value.message


def test_empty_search_on_an_existing_file_is_refused(changes: ChangeManager) -> None:
    with pytest.raises(EditMismatch, match="search is empty"):
        changes.stage_edit("calc.py", "", "x = 1\n")


def test_empty_search_on_a_missing_file_creates_it(changes: ChangeManager) -> None:
    change = changes.stage_edit("new.py", "", "x = 1\n")
    assert change.before is None and change.after == "x = 1\n"


def test_edit_of_a_missing_file_is_not_found(changes: ChangeManager) -> None:
    with pytest.raises(NotFound, match="create_file"):
        changes.stage_edit("nope.py", "x", "y")


def test_trailing_whitespace_is_tolerated(root: Path, changes: ChangeManager) -> None:
    (root / "ws.py").write_text("a = 1   \nb = 2\t\nc = 3\n")
    change = changes.stage_edit("ws.py", "a = 1\nb = 2\n", "a = 10\nb = 20\n")
    assert change.after == "a = 10\nb = 20\nc = 3\n"


def test_indentation_difference_is_tolerated_and_replacement_reindented(
    root: Path, changes: ChangeManager
) -> None:
    (root / "cls.py").write_text(
        "class A:\n    def f(self):\n        if x:\n            return 1\n        return 2\n"
    )
    change = changes.stage_edit(
        "cls.py",
        "if x:\n    return 1\nreturn 2\n",
        "if x:\n    return 1\nif y:\n    return 3\nreturn 2\n",
    )
    assert change.after == (
        "class A:\n    def f(self):\n        if x:\n            return 1\n"
        "        if y:\n            return 3\n        return 2\n"
    )


def test_line_numbers_copied_from_read_file_are_ignored(changes: ChangeManager) -> None:
    change = changes.stage_edit(
        "calc.py", "     1\tdef add(a, b):\n     2\t    return a - b\n", "     2\t    return 0\n"
    )
    assert change.after == "    return 0\n"
    with pytest.raises(EditMismatch, match="not found"):
        changes.stage_edit("calc.py", "     1\tnothing like it\n", "x\n")


def test_crlf_file_round_trips_exactly(root: Path, changes: ChangeManager) -> None:
    original = b"one\r\ntwo\r\nthree"  # CRLF, no newline at the end
    (root / "win.txt").write_bytes(original)
    changes.stage_edit("win.txt", "two\nthree", "TWO\nthree")
    changeset = changes.propose()
    assert changeset is not None
    changes.decide(changeset.id, all=True)
    changes.apply(changeset.id)
    assert (root / "win.txt").read_bytes() == b"one\r\nTWO\r\nthree"
    changes.undo(changeset.id)
    assert (root / "win.txt").read_bytes() == original


def test_mixed_line_endings_and_missing_final_newline_are_kept(
    root: Path, changes: ChangeManager
) -> None:
    original = b"a\r\nb\nc\r\nlast"
    (root / "mixed.txt").write_bytes(original)
    change = changes.stage_edit("mixed.txt", "b", "B")
    assert change.after == "a\r\nB\nc\r\nlast"
    change = changes.stage_edit("mixed.txt", "last\n", "final\n")  # tolerant: EOF has no \n
    assert change.after == "a\r\nB\nc\r\nfinal"


def test_binary_large_and_non_utf8_files_are_refused(root: Path, changes: ChangeManager) -> None:
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "big.txt").write_bytes(b"x" * (MAX_EDIT_BYTES + 1))
    (root / "latin.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ToolError, match="binary"):
        changes.stage_edit("img.png", "PNG", "GIF")
    with pytest.raises(ToolError, match="up to 1 MB"):
        changes.stage_edit("big.txt", "x", "y")
    with pytest.raises(ToolError, match="UTF-8"):
        changes.stage_delete("latin.txt")
    with pytest.raises(ToolError, match="up to 1 MB"):
        changes.stage_write("huge.txt", "y" * (MAX_EDIT_BYTES + 1))


def test_paths_outside_the_project_and_git_internals_are_refused(
    root: Path, tmp_path: Path, changes: ChangeManager
) -> None:
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / ".git").mkdir()
    for bad in ("../secret.txt", "/etc/passwd", "link.txt"):
        with pytest.raises(PathOutsideWorkspace):
            changes.stage_write(bad, "x")
    with pytest.raises(ToolError, match=r"\.git"):
        changes.stage_write(".git/config", "x")
    assert (tmp_path / "secret.txt").read_text() == "secret\n"


# --- proposals and decisions ---------------------------------------------------------------


def test_per_hunk_decisions_write_only_approved_hunks(root: Path, changes: ChangeManager) -> None:
    changeset = far_apart_edits(changes)
    assert [h.id for h in changeset.hunks()] == ["f0h1", "f0h2"]
    assert changeset.hunk_count == 2
    assert not changes.has_draft()
    first, second = changeset.hunks()
    assert first.header == "@@ -1,6 +1,6 @@" and "+line three" in first.lines
    changes.decide(changeset.id, approve=[first.id], reject=[second.id])
    applied = changes.apply(changeset.id)
    assert applied.status == "partially_applied"
    assert (root / "long.txt").read_text() == LONG.replace("line 3\n", "line three\n")


def test_apply_refuses_while_hunks_are_undecided(root: Path, changes: ChangeManager) -> None:
    changeset = far_apart_edits(changes)
    changes.decide(changeset.id, approve=["f0h1"])
    with pytest.raises(BadRequest, match="f0h2") as err:
        changes.apply(changeset.id)
    assert err.value.details["undecided"] == ["f0h2"]
    assert (root / "long.txt").read_text() == LONG
    assert changes.get(changeset.id).status == "proposed"


def test_decide_all_then_override_and_unknown_ids(changes: ChangeManager) -> None:
    changeset = far_apart_edits(changes)
    decided = changes.decide(changeset.id, reject=["f0h2"], all=True)
    assert [h.status for h in decided.hunks()] == ["approved", "rejected"]
    with pytest.raises(NotFound, match="f0h1, f0h2"):
        changes.decide(changeset.id, approve=["f9h9"])


def test_all_rejected_writes_nothing(root: Path, changes: ChangeManager) -> None:
    changeset = far_apart_edits(changes)
    changes.decide(changeset.id, all=False)
    assert changes.apply(changeset.id).status == "rejected"
    assert (root / "long.txt").read_text() == LONG
    with pytest.raises(Conflict, match="already rejected"):
        changes.apply(changeset.id)


def test_propose_with_nothing_changed_is_none(changes: ChangeManager) -> None:
    assert changes.propose() is None
    changes.stage_edit("calc.py", "a - b", "a + b")
    changes.stage_edit("calc.py", "a + b", "a - b")
    assert not changes.has_draft()
    assert changes.propose() is None


# --- apply ----------------------------------------------------------------------------------


def test_multi_file_apply_and_undo(root: Path, changes: ChangeManager) -> None:
    changes.stage_edit("calc.py", "a - b", "a + b")
    changes.stage_edit("long.txt", "line 20\n", "line twenty\n")
    changeset = changes.propose("fix add")
    assert changeset is not None and changeset.title == "fix add"
    assert {f.path for f in changeset.files} == {"calc.py", "long.txt"}
    assert "--- a/calc.py\n+++ b/calc.py\n" in changeset.diff()
    changes.decide(changeset.id, all=True)
    assert changes.apply(changeset.id).status == "applied"
    assert "a + b" in (root / "calc.py").read_text()
    assert "line twenty" in (root / "long.txt").read_text()
    assert changes.undo(changeset.id).status == "undone"
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert (root / "long.txt").read_text() == LONG


def test_conflict_when_a_file_changed_since_the_proposal(
    root: Path, changes: ChangeManager
) -> None:
    changes.stage_edit("calc.py", "a - b", "a + b")
    changes.stage_edit("long.txt", "line 20\n", "line twenty\n")
    changeset = changes.propose()
    assert changeset is not None
    changes.decide(changeset.id, all=True)
    (root / "long.txt").write_text(LONG + "user line\n")
    with pytest.raises(Conflict, match=r"long\.txt was changed on disk"):
        changes.apply(changeset.id)
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert (root / "long.txt").read_text() == LONG + "user line\n"
    assert changes.get(changeset.id).status == "proposed"


def test_undo_refused_after_a_user_edit(root: Path, changes: ChangeManager) -> None:
    changes.stage_edit("calc.py", "a - b", "a + b")
    changeset = changes.propose()
    assert changeset is not None
    changes.decide(changeset.id, all=True)
    changes.apply(changeset.id)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b  # mine\n")
    with pytest.raises(Conflict, match=r"calc\.py was changed after"):
        changes.undo(changeset.id)
    assert "# mine" in (root / "calc.py").read_text()


def test_create_delete_rename_apply_and_undo(root: Path, changes: ChangeManager) -> None:
    os.chmod(root / "calc.py", 0o755)
    changes.stage_write("pkg/sub/new.py", "x = 1\n")
    changes.stage_delete("long.txt")
    changes.stage_rename("calc.py", "lib/calc.py")
    changes.stage_edit("lib/calc.py", "a - b", "a + b")
    assert changes.current_text("lib/calc.py") == "def add(a, b):\n    return a + b\n"
    changeset = changes.propose()
    assert changeset is not None
    kinds = [(h.id, h.kind) for h in changeset.hunks()]
    assert kinds == [("f0h1", "text"), ("f1h1", "text"), ("f2h0", "rename"), ("f2h1", "text")]
    assert "rename from calc.py\nrename to lib/calc.py\n" in changeset.diff()
    assert "--- /dev/null\n+++ b/pkg/sub/new.py" in changeset.diff()
    changes.decide(changeset.id, all=True)
    changes.apply(changeset.id)
    assert (root / "pkg/sub/new.py").read_text() == "x = 1\n"
    assert not (root / "long.txt").exists() and not (root / "calc.py").exists()
    assert (root / "lib/calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (root / "lib/calc.py").stat().st_mode & 0o777 == 0o755

    changes.undo(changeset.id)
    assert not (root / "pkg").exists()
    assert (root / "long.txt").read_text() == LONG
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert (root / "calc.py").stat().st_mode & 0o777 == 0o755
    assert not (root / "lib/calc.py").exists()


def test_rejected_rename_keeps_the_file_in_place_with_approved_edits(
    root: Path, changes: ChangeManager
) -> None:
    changes.stage_rename("calc.py", "calc2.py")
    changes.stage_edit("calc2.py", "a - b", "a + b")
    changeset = changes.propose()
    assert changeset is not None
    changes.decide(changeset.id, approve=["f0h1"], reject=["f0h0"])
    changes.apply(changeset.id)
    assert not (root / "calc2.py").exists()
    assert "a + b" in (root / "calc.py").read_text()


def test_rename_onto_an_existing_file_is_refused(changes: ChangeManager) -> None:
    with pytest.raises(ToolError, match="already exists"):
        changes.stage_rename("calc.py", "long.txt")


def test_failure_midway_restores_the_files_already_written(
    root: Path, changes: ChangeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes.stage_edit("calc.py", "a - b", "a + b")
    changes.stage_edit("long.txt", "line 20\n", "line twenty\n")
    changes.stage_write("new/file.txt", "hello\n")
    changeset = changes.propose()
    assert changeset is not None
    changes.decide(changeset.id, all=True)
    real = files.atomic_write
    calls = []

    def flaky(
        path: Path, data: bytes, *, mode: int | None = None, beneath: Path | None = None
    ) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, data, mode=mode, beneath=beneath)

    monkeypatch.setattr(files, "atomic_write", flaky)
    with pytest.raises(MimiError, match=r"failed at long\.txt: No space left on device") as err:
        changes.apply(changeset.id)
    assert "restored" in err.value.message
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert (root / "long.txt").read_text() == LONG
    assert not (root / "new").exists()
    assert changes.get(changeset.id).status == "proposed"

    monkeypatch.setattr(files, "atomic_write", real)
    assert changes.apply(changeset.id).status == "applied"


# --- persistence ---------------------------------------------------------------------------


def test_changesets_survive_a_new_manager_over_the_same_store(root: Path, tmp_path: Path) -> None:
    db = tmp_path / "data" / "agent.sqlite3"
    store = AgentStore(db)
    first = ChangeManager(Workspace(root), store, session_id="s1")
    first.stage_edit("long.txt", "line 3\n", "line three\n")
    store.close()

    store = AgentStore(db)
    second = ChangeManager(Workspace(root), store, session_id="s1")
    assert second.has_draft()
    second.stage_edit("long.txt", "line 35\n", "line thirty-five\n")  # builds on the draft
    changeset = second.propose()
    assert changeset is not None
    assert [row["status"] for row in store.list_changesets("s1")] == ["proposed"]
    store.close()

    store = AgentStore(db)
    third = ChangeManager(Workspace(root), store, session_id="s1")
    assert not third.has_draft()
    assert [c.id for c in third.list()] == [changeset.id]
    again = third.get(changeset.id)
    assert again.as_dict() == changeset.as_dict()
    assert Changeset.from_dict(again.as_dict()) == again
    third.decide(changeset.id, approve=["f0h2"], reject=["f0h1"])
    third.apply(changeset.id)
    store.close()

    store = AgentStore(db)
    fourth = ChangeManager(Workspace(root), store, session_id="s1")
    assert fourth.get(changeset.id).status == "partially_applied"
    assert "line thirty-five" in (root / "long.txt").read_text()
    fourth.undo(changeset.id)
    assert (root / "long.txt").read_text() == LONG
    assert ChangeManager(Workspace(root), store, "other").list() == []
    store.close()


# --- diffs ---------------------------------------------------------------------------------


def test_hunks_reapply_to_the_exact_after_text() -> None:
    before = "a\nb\r\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl"
    after = "a\nB\r\nc\nd\ne\nf\ng\nh\ni\nj\nk\nL\n"
    hunks = diffs.diff_hunks(before, after)
    assert len(hunks) == 2
    assert diffs.apply_spans(before, after, [(h.span, True) for h in hunks]) == after
    assert diffs.apply_spans(before, after, [(h.span, False) for h in hunks]) == before
    assert hunks[1].lines[-3:] == ["-l", diffs.NO_NEWLINE, "+L"]
    for hunk in hunks:
        assert diffs.Span.parse(hunk.span.header()) == hunk.span

"""Files a task names, and the modules a named test imports, shown to the model up front."""

from __future__ import annotations

from pathlib import Path

from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.openfiles import mentioned_paths, open_files
from mimiverse.workspace.paths import Workspace


def test_named_test_brings_the_module_it_imports(project: Path) -> None:
    workspace = Workspace(project)
    changes = ChangeManager(workspace)
    text = open_files("tests/test_calc.py::test_add fails, fix it", workspace, changes)
    assert "--- tests/test_calc.py" in text and "--- calc.py" in text
    assert "   2\t    return a - b" in text


def test_only_real_project_files_are_opened(project: Path) -> None:
    workspace = Workspace(project)
    message = "see calc.py, ../etc/passwd, /etc/hosts, missing.py and e.g. v1.2"
    assert mentioned_paths(message, workspace) == ["calc.py"]
    assert open_files("nothing named here", workspace, ChangeManager(workspace)) == ""


def test_staged_edits_are_what_is_shown(project: Path) -> None:
    workspace = Workspace(project)
    changes = ChangeManager(workspace)
    changes.stage_edit("calc.py", "return a - b", "return a + b")
    assert "return a + b" in open_files("fix calc.py", workspace, changes)

"""Open files: the files a user's message names, and the modules a named test imports.

A small model given ``tests/test_stats.py::test_median fails`` tends to search in circles;
handing it the test and the code under test up front (as Aider's chat files do) lets it go
straight to the fix. The texts are read from the draft when the agent has staged edits.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mimiverse.errors import MimiError
from mimiverse.workspace.files import is_binary, read_bytes

if TYPE_CHECKING:
    from mimiverse.agent.changes import ChangeManager
    from mimiverse.workspace.paths import Workspace

_PATH = re.compile(r"(?<![\w/.-])([\w.-]+(?:/[\w.-]+)*\.[A-Za-z0-9]{1,6})(?:::[\w\[\]-]+)*")
_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)
MAX_FILES = 4
MAX_FILE_CHARS = 6000


def mentioned_paths(message: str, workspace: Workspace) -> list[str]:
    """Project files named in ``message`` (``path/to/file.py`` or ``file.py::test``)."""
    found: list[str] = []
    for match in _PATH.finditer(message):
        try:
            path = workspace.resolve(match.group(1))
        except MimiError:
            continue
        rel = workspace.relative(path)
        if path.is_file() and rel not in found:
            found.append(rel)
    return found


def imported_modules(text: str, workspace: Workspace) -> list[str]:
    """Project modules a Python file imports (``from stats import median`` → stats.py)."""
    found: list[str] = []
    for match in _IMPORT.finditer(text):
        dotted = match.group(1) or match.group(2)
        base = dotted.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py", f"src/{base}.py"):
            try:
                path = workspace.resolve(candidate)
            except MimiError:
                continue
            if path.is_file():
                found.append(workspace.relative(path))
                break
    return found


def open_files(message: str, workspace: Workspace, changes: ChangeManager) -> str:
    """The named files (and, for tests, the project modules they import) as prompt text."""
    paths = mentioned_paths(message, workspace)
    texts: dict[str, str] = {}
    queue = list(paths)
    while queue and len(texts) < MAX_FILES:
        rel = queue.pop(0)
        if rel in texts:
            continue
        text = _read(rel, workspace, changes)
        if text is None:
            continue
        texts[rel] = text
        if rel.endswith(".py") and rel in paths:
            queue += [m for m in imported_modules(text, workspace) if m not in texts]
    if not texts:
        return ""
    parts = ["Files the task names (and the modules they import), as they are now:"]
    for rel, text in texts.items():
        body = (
            text
            if len(text) <= MAX_FILE_CHARS
            else text[:MAX_FILE_CHARS] + "\n… (cut: read_file for the rest)"
        )
        numbered = "\n".join(f"{n:>4}\t{line}" for n, line in enumerate(body.splitlines(), 1))
        parts.append(f"--- {rel}\n{numbered}")
    return "\n\n".join(parts)


def _read(rel: str, workspace: Workspace, changes: ChangeManager) -> str | None:
    staged = changes.current_text(rel)
    if staged is not None:
        return staged
    try:
        data = read_bytes(workspace.resolve(rel), beneath=workspace.root)
    except (OSError, MimiError):
        return None
    if is_binary(data):
        return None
    return data.decode("utf-8", errors="replace")

"""Small helpers the tool modules share: project-relative paths and counted nouns."""

from __future__ import annotations

from mimiverse.agent.tools.base import ToolContext


def project_path(ctx: ToolContext, path: str) -> str:
    """``path`` relative to the project root; PathOutsideWorkspace when it escapes."""
    return ctx.workspace.relative(ctx.workspace.resolve(path))


def plural(n: int, one: str, many: str = "") -> str:
    """``1 file``, ``3 files``; ``many`` for irregular plurals (``2 entries``)."""
    return f"{n} {one if n == 1 else many or one + 's'}"

"""Edit tools: change files by staging proposals on the session's draft changeset.

None of these write to disk. Each stages its change on ``ctx.changes`` and answers with the
diff of that one change; the runtime decides when the draft is proposed and, for a trusted
session (``ctx.auto_approve``), applied. Paths go through ``ctx.workspace.resolve``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mimiverse.agent import diffs
from mimiverse.agent.tools._common import project_path
from mimiverse.agent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.errors import ToolError

DIFF_LINES_SHOWN = 80
"""Diff lines a tool's text shows; the whole diff is always in ``data["diff"]``."""


class EditFile(Tool):
    """Search-and-replace one block of a file."""

    name = "edit_file"
    description = (
        "Replace one block of text in a file. `search` must be copied exactly from the file "
        "(same lines, spaces and indentation) and include enough lines to match one place; "
        "`replace` is the new text (empty deletes the block). To change several places, "
        "call edit_file once per block; each call sees the previous ones. The edit is "
        "staged as a proposal for review, not written to disk at once."
    )

    class Args(ToolArgs):
        path: str = Field(description="File to edit, relative to the project root.")
        search: str = Field(
            description="Exact text to find, copied from the file with its indentation."
        )
        replace: str = Field(description="Text that replaces `search` (may be empty).")

    mutates = True

    async def run(self, args: EditFile.Args, ctx: ToolContext) -> ToolResult:
        key = project_path(ctx, args.path)
        old = ctx.changes.read(key)
        change = ctx.changes.stage_edit(key, args.search, args.replace)
        return _staged(ctx, f"staged edit to {key}", key, old, change.after, key)


class CreateFile(Tool):
    """Create a file (or replace all of one with ``overwrite``)."""

    name = "create_file"
    description = (
        "Create a new file with the given content (parent folders are made as needed). "
        "Refuses an existing file unless `overwrite` is true; to change part of a file use "
        "edit_file. Staged as a proposal for review, not written to disk at once."
    )

    class Args(ToolArgs):
        path: str = Field(description="File to create, relative to the project root.")
        content: str = Field(description="The whole content of the file.")
        overwrite: bool = Field(
            default=False, description="Replace the file if it exists (all of its content)."
        )

    mutates = True

    async def run(self, args: CreateFile.Args, ctx: ToolContext) -> ToolResult:
        key = project_path(ctx, args.path)
        old = ctx.changes.read(key)
        if old is not None and not args.overwrite:
            raise ToolError(
                f"{key} already exists; use edit_file to change part of it, or call "
                "create_file with overwrite: true to replace all of it",
                path=key,
            )
        change = ctx.changes.stage_write(key, args.content)
        verdict = f"staged {'new file ' if old is None else 'new content for '}{key}"
        return _staged(ctx, verdict, key, old, change.after, key)


class DeleteFile(Tool):
    """Delete a file."""

    name = "delete_file"
    description = "Delete a file. Staged as a proposal for review, not deleted at once."

    class Args(ToolArgs):
        path: str = Field(description="File to delete, relative to the project root.")

    mutates = True

    async def run(self, args: DeleteFile.Args, ctx: ToolContext) -> ToolResult:
        key = project_path(ctx, args.path)
        old = ctx.changes.read(key)
        ctx.changes.stage_delete(key)
        return _staged(ctx, f"staged deletion of {key}", key, old, None, key)


class RenameFile(Tool):
    """Move a file to a new path."""

    name = "rename_file"
    description = (
        "Rename or move a file; `dst` must not exist (parent folders are made as needed). "
        "Staged as a proposal for review, not moved at once."
    )

    class Args(ToolArgs):
        src: str = Field(description="File to move, relative to the project root.")
        dst: str = Field(description="Its new path, relative to the project root.")

    mutates = True

    async def run(self, args: RenameFile.Args, ctx: ToolContext) -> ToolResult:
        src, dst = project_path(ctx, args.src), project_path(ctx, args.dst)
        text = ctx.changes.read(src)
        ctx.changes.stage_rename(src, dst)
        return _staged(ctx, f"staged rename of {src} to {dst}", src, text, text, dst)


def _staged(
    ctx: ToolContext,
    verdict: str,
    old_path: str,
    before: str | None,
    after: str | None,
    new_path: str,
) -> ToolResult:
    diff = diffs.unified_diff(before, after, old_path, new_path)
    draft = ctx.changes.draft()
    changeset_id = draft.id if draft is not None else None
    lines = diff.splitlines()
    shown = "\n".join(lines[:DIFF_LINES_SHOWN])
    if len(lines) > DIFF_LINES_SHOWN:
        shown += f"\n… ({len(lines) - DIFF_LINES_SHOWN} more diff lines)"
    warning = syntax_warning(new_path, before, after)
    return ToolResult(
        text=f"{verdict} (proposal, not yet applied):\n{shown}{warning}",
        data={"path": new_path, "diff": diff, "changeset_id": changeset_id},
        changeset_id=changeset_id,
    )


def syntax_warning(path: str, before: str | None, after: str | None) -> str:
    """A note when an edit leaves a file that no longer parses (tree-sitter), else ''.

    Like aider's lint-after-edit: a small model learns of a broken indent or bracket from
    this line instead of from a failing test run two steps later.
    """
    from mimiverse.index.chunk import parse
    from mimiverse.index.languages import language_for

    language = language_for(path)
    if after is None or language is None or language == "markdown":
        return ""
    tree = parse(language, after.encode())
    if tree is None or not tree.root_node.has_error:
        return ""
    if before is not None:
        old = parse(language, before.encode())
        if old is not None and old.root_node.has_error:
            return ""  # it did not parse before either: not this edit's doing
    line = _first_error_line(tree.root_node)
    text = after.splitlines()[line - 1] if 0 < line <= len(after.splitlines()) else ""
    return (
        f"\nwarning: after this edit {path} no longer parses as {language} "
        f"(first error near line {line}: {text.strip()[:120]!r}). Fix it with another edit_file "
        "(check indentation and brackets)."
    )


def _first_error_line(node: Any) -> int:
    stack = [node]
    while stack:
        current = stack.pop(0)
        if current.type == "ERROR" or current.is_missing:
            return int(current.start_point[0]) + 1
        stack = [*current.children, *stack]
    return int(node.start_point[0]) + 1


TOOLS = (EditFile, CreateFile, DeleteFile, RenameFile)

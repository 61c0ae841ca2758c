"""Git tools: ``git_status``, ``git_diff`` and ``git_commit`` (with generated messages).

Commits made by the agent run with hooks turned off: a hook is code from the repository
that would run outside the sandbox. A commit without a message gets one written by the
model from the staged diff (prompt: ``prompts/commit_message.md``), or a summary of the
changed files when no model is configured or it fails.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from dataclasses import asdict
from typing import TYPE_CHECKING, ClassVar, TypeVar

from pydantic import Field

from mimiverse.agent.prompts import prompt
from mimiverse.agent.tools._common import plural, project_path
from mimiverse.agent.tools.base import OBSERVATION_LIMIT, Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.errors import BadRequest, MimiError, ToolError
from mimiverse.gateway.base import ChatRequest
from mimiverse.workspace.git import SUBJECT_LIMIT, Diff, Git, Status, fallback_message

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway

log = logging.getLogger("mimiverse.agent")

DIFF_SHOWN = OBSERVATION_LIMIT - 4_000
"""Characters of diff ``git_diff`` shows (its file list and note come on top)."""
STAT_LINES = 40
"""Files listed at most above the diff."""
PROMPT_DIFF_CHARS = 12_000
"""Characters of the staged diff the commit-message model reads."""
MESSAGE_TIMEOUT_S = 120.0
BODY_LINES = 15
DRAFT_NOTE = "note: you have staged edits that are not applied yet; git sees only the files on disk"

T = TypeVar("T")


async def _git(call: Awaitable[T]) -> T:
    """Await a git call, turning its BadRequest (not a repo, nothing to commit…) into a
    ToolError the model reads."""
    try:
        return await call
    except ToolError:
        raise
    except BadRequest as exc:
        raise ToolError(exc.message, **exc.details) from None


def _draft_note(ctx: ToolContext) -> str:
    return f"\n({DRAFT_NOTE})" if ctx.changes.has_draft() else ""


class GitStatus(Tool):
    """The branch and the changed files."""

    name: ClassVar[str] = "git_status"
    description: ClassVar[str] = (
        "Show the git branch, how far it is ahead/behind its upstream, and the staged, "
        "unstaged and untracked files."
    )
    mutates: ClassVar[bool] = False

    class Args(ToolArgs):
        pass

    async def run(self, args: GitStatus.Args, ctx: ToolContext) -> ToolResult:
        status = await _git(Git(ctx.workspace.root).status())
        return ToolResult(render_status(status) + _draft_note(ctx), data=status.as_dict())


def render_status(status: Status) -> str:
    """``git status`` for a model: branch line, then one section per kind of change."""
    where = f"On branch {status.branch}" if status.branch else "HEAD is detached"
    if status.head is None:
        where += " (no commits yet)"
    elif status.branch is None:
        where += f" at {status.head[:10]}"
    if status.upstream:
        where += f", tracking {status.upstream}: ahead {status.ahead}, behind {status.behind}"
    lines = [where]
    if status.clean:
        lines.append("nothing to commit: the working tree is clean")
    sections = (
        ("Staged (will be committed)", [_entry(e.index, e.path, e.orig_path) for e in status.staged]),
        ("Not staged", [_entry(e.worktree, e.path, e.orig_path) for e in status.unstaged]),
        ("Untracked", [f"  {p}" for p in status.untracked]),
        ("Conflicted (fix, then commit)", [f"  {p}" for p in status.conflicted]),
    )  # fmt: skip
    for title, rows in sections:
        if rows:
            lines.append(f"{title}:")
            lines.extend(rows)
    return "\n".join(lines)


_LETTERS = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied",
            "T": "type changed", "U": "unmerged"}  # fmt: skip


def _entry(letter: str, path: str, orig: str | None) -> str:
    what = _LETTERS.get(letter, letter)
    return f"  {what}: {orig} -> {path}" if orig else f"  {what}: {path}"


class GitDiff(Tool):
    """The uncommitted changes as a unified diff."""

    name: ClassVar[str] = "git_diff"
    description: ClassVar[str] = (
        "Show uncommitted changes as a unified diff: the working tree against the last "
        "commit (new untracked files included), or only what is staged."
    )
    mutates: ClassVar[bool] = False

    class Args(ToolArgs):
        staged: bool = Field(
            default=False, description="Only the staged changes (what a commit would take)."
        )
        path: str | None = Field(
            default=None, description="Only this file or folder (relative to the project root)."
        )

    async def run(self, args: GitDiff.Args, ctx: ToolContext) -> ToolResult:
        paths = [project_path(ctx, args.path)] if args.path else []
        git = Git(ctx.workspace.root)
        diff = await _git(git.diff(staged=args.staged, paths=paths, limit=DIFF_SHOWN))
        what = "Staged changes" if args.staged else "Changes against the last commit"
        where = f" in {paths[0]}" if paths else ""
        data = {
            "staged": args.staged,
            "files": [asdict(f) for f in diff.files],
            "truncated": diff.truncated,
        }
        if not diff.files:
            empty = "nothing is staged" if args.staged else "no uncommitted changes"
            return ToolResult(f"{empty}{where}{_draft_note(ctx)}", data=data)
        stat = diff.stat().splitlines()
        if len(stat) > STAT_LINES:
            stat = [*stat[:STAT_LINES], f"… {len(stat) - STAT_LINES} more files"]
        summary = "\n".join(stat)
        text = f"{what}{where} ({plural(len(diff.files), 'file')}):\n{summary}\n\n{diff.text}"
        if diff.truncated:
            text += "\n[diff cut here: pass path to see one file at a time]"
        return ToolResult(text.rstrip("\n") + _draft_note(ctx), data=data)


class GitCommit(Tool):
    """Commit changes to git."""

    name: ClassVar[str] = "git_commit"
    description: ClassVar[str] = (
        "Stage and commit changes: the given paths, or every change in the project "
        "(`git add -A`). Leave message empty to have one written from the diff."
    )
    mutates: ClassVar[bool] = True

    class Args(ToolArgs):
        message: str = Field(
            default="",
            description="The commit message: an imperative subject of at most 72 characters, "
            "optionally a blank line and a body. Empty: written from the staged diff.",
        )
        paths: list[str] | None = Field(
            default=None,
            description="Files or folders to commit (relative to the project root); "
            "default: every change in the project.",
        )

    async def run(self, args: GitCommit.Args, ctx: ToolContext) -> ToolResult:
        paths = [project_path(ctx, p) for p in args.paths or []]
        git = Git(ctx.workspace.root, hooks=False)
        staged = await _git(git.stage(paths))
        message, source = args.message.strip(), "given"
        if not message:
            diff = await _git(git.diff(staged=True, paths=paths, limit=PROMPT_DIFF_CHARS))
            message, source = await commit_message(ctx.gateway, diff)
        commit = await _git(git.commit(message, paths))
        names = ", ".join(f.path for f in commit.files[:10])
        if len(commit.files) > 10:
            names += f" and {len(commit.files) - 10} more"
        lines = [
            f'Committed {commit.sha[:10]}: "{commit.subject}" '
            f"({plural(len(commit.files), 'file')}: {names})"
        ]
        if source == "model":
            lines.append("The message was written by the model from the staged diff.")
        elif source == "summary":
            lines.append("The message summarises the changed files (no model wrote one).")
        if commit.default_author:
            lines.append(
                f"No git author is configured, so the commit is by {commit.author}; set one "
                'with `git config user.name "Your Name"` and `git config user.email you@example.com`.'
            )
        data = {
            "sha": commit.sha,
            "subject": commit.subject,
            "message": message,
            "message_source": source,
            "files": [asdict(f) for f in commit.files],
            "staged": [f.path for f in staged],
            "author": commit.author,
            "default_author": commit.default_author,
        }
        return ToolResult("\n".join(lines) + _draft_note(ctx), data=data)


async def commit_message(gateway: Gateway | None, diff: Diff) -> tuple[str, str]:
    """A message for the staged ``diff`` and who wrote it: ``model`` or ``summary``.

    The summary ("Update calc.py, tests/test_calc.py") is used when there is no gateway,
    the model fails, or it answers with nothing usable.
    """
    fallback = fallback_message(diff.files)
    if gateway is None:
        return fallback, "summary"
    files = "\n".join(f"{f.status} {f.path}" for f in diff.files)
    cut = "\n[diff cut here]" if diff.truncated else ""
    request = ChatRequest(
        messages=[
            {"role": "system", "content": prompt("commit_message")},
            {"role": "user", "content": f"Files:\n{files}\n\nDiff:\n{diff.text}{cut}"},
        ],
        max_tokens=300,
        temperature=0.2,
    )
    try:
        completion = await asyncio.wait_for(gateway.chat(request), MESSAGE_TIMEOUT_S)
    except (MimiError, TimeoutError) as exc:
        log.warning("commit message generation failed, using a summary: %s", exc)
        return fallback, "summary"
    message = clean_message(completion.text)
    return (message, "model") if message else (fallback, "summary")


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^(?:commit message|subject)\s*:\s*", re.IGNORECASE)


def clean_message(text: str) -> str:
    """A model's answer as a commit message: no reasoning, fences, labels or quotes; the
    subject cut at a word to ``SUBJECT_LIMIT``; a short body after one blank line."""
    text = _THINK.sub("", text).strip()
    lines = [line.rstrip() for line in text.splitlines() if not line.strip().startswith("```")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return ""
    subject = _LABEL.sub("", lines[0].strip()).strip("\"'` ").rstrip(".")
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT + 1].rsplit(" ", 1)[0].rstrip(",;:")[:SUBJECT_LIMIT]
    if not subject:
        return ""
    body = "\n".join(lines[1:]).strip().strip("\"'").strip()
    body = re.sub(r"\n{3,}", "\n\n", body)
    body = "\n".join(body.splitlines()[:BODY_LINES])
    return f"{subject}\n\n{body}" if body else subject


TOOLS = (GitStatus, GitDiff, GitCommit)

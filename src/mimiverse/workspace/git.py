"""Git for one project root, over the ``git`` CLI: status, diff, stage and commit.

Every command runs as ``git --no-pager -c core.quotepath=off --literal-pathspecs …`` in an
asyncio subprocess, in the project root, with stdin closed and an environment stripped of
the caller's ``GIT_*`` variables (a ``GIT_DIR`` or ``GIT_INDEX_FILE`` leaking in from a
hook would point git at another repository). Paths in and out are relative to the project
root; when the root is a folder inside a larger repository, every command is limited to
that folder. Mistakes a caller can fix (not a repository, nothing to commit, a path git
does not know) raise ``BadRequest`` with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mimiverse.errors import BadRequest, MimiError

FALLBACK_NAME = "Mimiverse"
FALLBACK_EMAIL = "mimiverse@localhost"
"""The author of commits made where no ``user.name``/``user.email`` is configured."""
TIMEOUT_S = 60.0
DIFF_LIMIT = 200_000
"""Characters of diff text kept; the rest is cut and ``Diff.truncated`` set."""
UNTRACKED_DIFFS = 20
"""At most this many untracked files are shown as new-file diffs in a working-tree diff."""
SUBJECT_LIMIT = 72

_NOT_A_REPO = "not a git repository"


@dataclass(frozen=True)
class GitOutput:
    """What one git command printed."""

    code: int
    stdout: str
    stderr: str
    truncated: bool = False


@dataclass(frozen=True)
class Entry:
    """One changed path in ``git status``.

    ``index`` and ``worktree`` are porcelain status letters (``M`` modified, ``A`` added,
    ``D`` deleted, ``R`` renamed, ``C`` copied, ``T`` type changed, ``U`` unmerged, ``.``
    unchanged) for the staged and the unstaged side.
    """

    path: str
    index: str
    worktree: str
    orig_path: str | None = None


@dataclass
class Status:
    """``git status`` of the project, parsed from porcelain v2."""

    branch: str | None
    """None when HEAD is detached."""
    head: str | None
    """The commit HEAD points at; None before the first commit."""
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    staged: list[Entry] = field(default_factory=list)
    unstaged: list[Entry] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    """Untracked files; a folder with nothing tracked in it is one entry ending in '/'."""
    conflicted: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No staged, unstaged, untracked or conflicted paths."""
        return not (self.staged or self.unstaged or self.untracked or self.conflicted)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "clean": self.clean}


@dataclass(frozen=True)
class FileStat:
    """Lines added and removed in one file (None for binary files)."""

    path: str
    added: int | None
    removed: int | None
    status: str = "M"
    """A (added), D (deleted), M (modified), R (renamed) or ? (untracked, shown as new)."""


@dataclass
class Diff:
    """A unified diff and its per-file summary."""

    text: str
    files: list[FileStat]
    truncated: bool = False

    def stat(self) -> str:
        """One line per file: ``+added -removed path`` (like ``git diff --stat``, shorter)."""
        lines = []
        for f in self.files:
            counts = "binary" if f.added is None else f"+{f.added} -{f.removed}"
            lines.append(f"{f.status} {counts:>12}  {f.path}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Commit:
    """A commit just made."""

    sha: str
    subject: str
    files: list[FileStat]
    author: str
    """``Name <email>`` as recorded."""
    default_author: bool
    """True when no author was configured and Mimiverse's fallback was used."""


class Git:
    """Git commands for the project at ``root``.

    ``hooks=False`` runs commits with ``core.hooksPath=/dev/null``: hook scripts are code
    in the repository that would run outside any sandbox, so the agent turns them off.
    """

    def __init__(self, root: str | Path, *, hooks: bool = True, timeout_s: float = TIMEOUT_S):
        self.root = Path(root).resolve()
        self.hooks = hooks
        self.timeout_s = timeout_s
        self._prefix: str | None = None

    # --- running git --------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment git runs with: the caller's, minus ``GIT_*``, never prompting."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_OPTIONAL_LOCKS="0",
            GIT_EDITOR=":",
            LC_ALL="C",
        )
        return env

    async def run(
        self,
        *args: str,
        ok: Sequence[int] = (0,),
        limit: int | None = None,
        stdin: bytes | None = None,
        config: Sequence[str] = (),
    ) -> GitOutput:
        """Run ``git args…``; BadRequest when the exit code is not in ``ok``.

        ``limit`` caps the characters of stdout kept (git is stopped once it is reached).
        ``config`` adds ``-c key=value`` options.
        """
        command = ["git", "--no-pager", "-c", "core.quotepath=off", "-c", "core.fsmonitor=false",
                   "-c", "color.ui=false", "--literal-pathspecs"]  # fmt: skip
        for item in config:
            command += ["-c", item]
        command += args
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=self.root,
                env=self.env(),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            if not self.root.is_dir():
                raise BadRequest(f"project root {self.root} does not exist") from exc
            raise MimiError("git is not installed here: apt-get install git") from exc
        try:
            out, err, truncated = await asyncio.wait_for(
                _communicate(proc, stdin, limit), self.timeout_s
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise BadRequest(
                f"git {args[0]} took longer than {self.timeout_s:.0f} s and was stopped"
            ) from None
        code = proc.returncode if proc.returncode is not None else -1
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace").strip()
        if limit is not None and len(stdout) > limit:
            stdout, truncated = stdout[:limit], True
        if code not in ok and not truncated:
            if _NOT_A_REPO in stderr:
                raise self.not_a_repo()
            raise BadRequest(f"git {args[0]} failed (exit {code}): {stderr or 'no message'}")
        return GitOutput(code, stdout, stderr, truncated)

    def not_a_repo(self) -> BadRequest:
        """The error for a project that is not under git."""
        return BadRequest(
            f"the project ({self.root}) is not a git repository: run `git init` in the "
            "project root first",
            reason="not_a_git_repository",
        )

    async def prefix(self) -> str:
        """The project root's path inside its repository ('' at the top, else 'dir/')."""
        if self._prefix is None:
            out = await self.run("rev-parse", "--show-prefix")
            self._prefix = out.stdout.strip()
        return self._prefix

    async def is_repo(self) -> bool:
        """Whether the project root is inside a git work tree."""
        try:
            await self.prefix()
        except BadRequest as exc:
            if exc.details.get("reason") == "not_a_git_repository":
                return False
            raise
        return True

    async def has_head(self) -> bool:
        """Whether the current branch has a commit yet."""
        out = await self.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
        return out.code == 0

    # --- status -------------------------------------------------------------------------

    async def status(self) -> Status:
        """Branch, ahead/behind and changed paths within the project."""
        prefix = await self.prefix()
        out = await self.run(
            "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal", "--", "."
        )
        return parse_status(out.stdout, prefix)

    # --- diff ---------------------------------------------------------------------------

    async def diff(
        self,
        *,
        staged: bool = False,
        paths: Sequence[str] = (),
        limit: int = DIFF_LIMIT,
        untracked: bool = True,
    ) -> Diff:
        """Staged changes (``staged``) or the working tree against HEAD, for ``paths``.

        A working-tree diff also shows untracked files as new files (``untracked``).
        """
        base, flags, spec = await self._diff_args(staged, paths)
        files = await self._files(base, flags, spec)
        out = await self.run("diff", *base, *flags, *spec, limit=limit)
        text, truncated = out.stdout, out.truncated
        if untracked and not staged:
            extra, cut = await self._untracked_diffs(spec, limit - len(text))
            for path, chunk in extra:
                files.append(_new_file_stat(path, chunk))
                text += chunk
            truncated = truncated or cut
        return Diff(text, files, truncated)

    async def changed(self, *, staged: bool = False, paths: Sequence[str] = ()) -> list[FileStat]:
        """The files a ``diff`` with the same arguments would show (untracked ones left out)."""
        return await self._files(*await self._diff_args(staged, paths))

    async def _diff_args(
        self, staged: bool, paths: Sequence[str]
    ) -> tuple[list[str], list[str], list[str]]:
        await self.prefix()
        if staged:
            base = ["--cached"]
        elif await self.has_head():
            base = ["HEAD"]
        else:
            base = [await self._empty_tree()]
        flags = ["--no-color", "--no-ext-diff", "--no-textconv", "-M", "--relative"]
        return base, flags, ["--", *(paths or ["."])]

    async def _files(self, base: list[str], flags: list[str], spec: list[str]) -> list[FileStat]:
        numstat = await self.run("diff", *base, *flags, "--numstat", "-z", *spec)
        status = await self._name_status(base, flags, spec)
        return [
            FileStat(f.path, f.added, f.removed, status.get(f.path, "M"))
            for f in parse_numstat(numstat.stdout)
        ]

    async def _name_status(
        self, base: list[str], flags: list[str], spec: list[str]
    ) -> dict[str, str]:
        out = await self.run("diff", *base, *flags, "--name-status", "-z", *spec)
        fields = out.stdout.split("\0")
        found: dict[str, str] = {}
        i = 0
        while i < len(fields) and fields[i]:
            letter = fields[i][0]
            if letter in "RC":
                found[fields[i + 2]] = letter
                i += 3
            else:
                found[fields[i + 1]] = letter
                i += 2
        return found

    async def _empty_tree(self) -> str:
        out = await self.run("hash-object", "-t", "tree", "/dev/null")
        return out.stdout.strip()

    async def _untracked_diffs(
        self, spec: list[str], room: int
    ) -> tuple[list[tuple[str, str]], bool]:
        """New-file diffs of untracked files (ignored ones left out), within ``room`` chars."""
        listing = await self.run("ls-files", "--others", "--exclude-standard", "-z", *spec)
        paths = [p for p in listing.stdout.split("\0") if p]
        found: list[tuple[str, str]] = []
        for n, path in enumerate(paths):
            if n >= UNTRACKED_DIFFS or room <= 0:
                return found, True
            out = await self.run(
                "diff", "--no-index", "--no-color", "--no-ext-diff", "--no-textconv",
                "--", "/dev/null", path, ok=(0, 1), limit=room,
            )  # fmt: skip
            found.append((path, out.stdout))
            room -= len(out.stdout)
            if out.truncated:
                return found, True
        return found, False

    # --- stage and commit ---------------------------------------------------------------

    async def stage(self, paths: Sequence[str] = ()) -> list[FileStat]:
        """``git add -A`` the given paths (default: the whole project); what is now staged.

        BadRequest when nothing is staged within those paths.
        """
        await self.prefix()
        spec = ["--", *(paths or ["."])]
        await self.run("add", "-A", *spec)
        staged = await self.changed(staged=True, paths=paths)
        if not staged:
            where = ", ".join(paths) if paths else "the project"
            raise BadRequest(
                f"nothing to commit in {where}: the files are unchanged since the last commit"
                " (edits the agent proposed are only on disk once applied)",
                reason="nothing_to_commit",
            )
        return staged

    async def author(self) -> tuple[str, str, bool]:
        """(name, email, is_fallback): the configured author, or Mimiverse's fallback."""
        name = (await self.run("config", "--get", "user.name", ok=(0, 1))).stdout.strip()
        email = (await self.run("config", "--get", "user.email", ok=(0, 1))).stdout.strip()
        fallback = not (name and email)
        return name or FALLBACK_NAME, email or FALLBACK_EMAIL, fallback

    async def commit(self, message: str, paths: Sequence[str] = ()) -> Commit:
        """Stage ``paths`` (default: the whole project) and commit them with ``message``."""
        message = message.strip()
        if not message:
            raise BadRequest("the commit message is empty: give a one-line summary")
        files = await self.stage(paths)
        name, email, fallback = await self.author()
        config = [f"user.name={name}", f"user.email={email}"] if fallback else []
        if not self.hooks:
            config.append("core.hooksPath=/dev/null")
        spec = ["--", *(paths or ["."])]
        await self.run(
            "commit", "--quiet", "--cleanup=strip", "-F", "-", *spec,
            stdin=message.encode("utf-8"), config=config,
        )  # fmt: skip
        sha = (await self.run("rev-parse", "HEAD")).stdout.strip()
        subject = message.splitlines()[0].strip()
        return Commit(sha, subject, files, f"{name} <{email}>", fallback)


def fallback_message(files: Sequence[FileStat]) -> str:
    """A deterministic subject: "Update calc.py, tests/test_calc.py" (≤ 72 characters)."""
    if not files:
        return "Update files"
    statuses = {f.status for f in files}
    verb = "Add" if statuses <= {"A", "?"} else "Remove" if statuses == {"D"} else "Update"
    names = [f.path for f in files]
    subject = f"{verb} {names[0]}"
    if len(subject) > SUBJECT_LIMIT:
        subject = f"{verb} {posixpath.basename(names[0])}"
    shown = 1
    for name in names[1:]:
        more = len(names) - shown - 1
        tail = f" and {more} more" if more else ""
        if len(subject) + 2 + len(name) + len(tail) > SUBJECT_LIMIT:
            break
        subject += f", {name}"
        shown += 1
    if shown < len(names):
        subject += f" and {len(names) - shown} more"
    return subject[:SUBJECT_LIMIT]


def parse_status(text: str, prefix: str = "") -> Status:
    """Parse ``git status --porcelain=v2 --branch -z`` (paths made relative to ``prefix``)."""
    status = Status(branch=None, head=None)

    def rel(path: str) -> str:
        return posixpath.relpath(path, prefix) if prefix else path

    fields = iter(text.split("\0"))  # a rename's original path is the next field
    for record in fields:
        if not record:
            continue
        kind = record[0]
        if kind == "#":
            _branch_header(status, record)
        elif kind in "12":
            parts = record.split(" ", 8 if kind == "1" else 9)
            xy, path = parts[1], parts[-1]
            orig = None
            if kind == "2":
                orig = rel(next(fields))
            entry_x, entry_y = xy[0], xy[1]
            if entry_x != ".":
                status.staged.append(Entry(rel(path), entry_x, entry_y, orig))
            if entry_y != ".":
                status.unstaged.append(Entry(rel(path), entry_x, entry_y, orig))
        elif kind == "u":
            status.conflicted.append(rel(record.split(" ", 10)[-1]))
        elif kind == "?":
            path = record[2:]
            folder = "/" if path.endswith("/") else ""
            status.untracked.append(rel(path.rstrip("/")) + folder)
    return status


def _branch_header(status: Status, record: str) -> None:
    _, key, *rest = record.split(" ")
    value = " ".join(rest)
    if key == "branch.oid":
        status.head = None if value == "(initial)" else value
    elif key == "branch.head":
        status.branch = None if value == "(detached)" else value
    elif key == "branch.upstream":
        status.upstream = value
    elif key == "branch.ab":
        ahead, behind = value.split()
        status.ahead, status.behind = int(ahead), abs(int(behind))


def parse_numstat(text: str) -> list[FileStat]:
    """Parse ``git diff --numstat -z`` (renames report the new path)."""
    fields = iter(text.split("\0"))
    files: list[FileStat] = []
    for record in fields:
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        if not path:  # a rename: the old and the new path follow as fields of their own
            next(fields)
            path = next(fields)
        binary = added == "-"
        files.append(
            FileStat(path, None if binary else int(added), None if binary else int(removed))
        )
    return files


def _new_file_stat(path: str, diff: str) -> FileStat:
    if "\nBinary files " in diff or diff.startswith("Binary files "):
        return FileStat(path, None, None, "?")
    added = sum(
        1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )
    return FileStat(path, added, 0, "?")


async def _communicate(
    proc: asyncio.subprocess.Process, stdin: bytes | None, limit: int | None
) -> tuple[bytes, bytes, bool]:
    """Feed ``stdin``, read stdout (up to ~``limit`` bytes, then stop git) and stderr."""
    assert proc.stdout is not None and proc.stderr is not None

    async def feed() -> None:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()

    async def read_out() -> tuple[bytes, bool]:
        assert proc.stdout is not None
        chunks: list[bytes] = []
        size = 0
        # UTF-8 needs up to 4 bytes a character: 4 * limit bytes always hold limit characters.
        cap = None if limit is None else 4 * limit + 4
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
            if cap is not None and size > cap:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return b"".join(chunks), True

    (out, truncated), err, _ = await asyncio.gather(read_out(), proc.stderr.read(), feed())
    await proc.wait()
    return out, err, truncated

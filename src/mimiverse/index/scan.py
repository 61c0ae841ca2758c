"""Walk a project and decide which files to index, saying why the others were left out.

Ignore rules: every ``.gitignore`` and ``.mimiignore`` on the way down (deeper files win,
and within a directory ``.mimiignore`` wins over ``.gitignore``), plus
``.git/info/exclude``. Version-control folders, dependency and virtual-env folders and
tool caches are always skipped, and ``build``/``dist``/``target`` at the root. Directory
symlinks are never followed (their targets inside the root are walked where they are);
file symlinks are followed only when they resolve inside the root.

``Skipped.reason`` starts with one of: ``ignored``, ``excluded directory``, ``symlink``,
``not a regular file``, ``unreadable``, ``too large``, ``binary``, ``data file``,
``generated``, ``minified``; details follow a colon.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pathspec import GitIgnoreSpec

from mimiverse.errors import BadRequest
from mimiverse.index.languages import TEXT, language_for
from mimiverse.index.model import Skipped, SourceFile

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "node_modules",
        "bower_components",
        ".venv",  # a plain "venv" folder may be a real package (CPython's Lib/venv):
        # virtualenvs of any name are found by their pyvenv.cfg instead.
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".eggs",
        ".gradle",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".parcel-cache",
        ".turbo",
        ".terraform",
        ".cache",
    }
)
"""Directory names skipped wherever they are."""

ROOT_SKIP_DIRS = frozenset({"build", "dist", "target"})
"""Build output directories, skipped at the project root only (``src/build/`` may be code)."""

LOCKFILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "Cargo.lock",
        "poetry.lock",
        "Pipfile.lock",
        "uv.lock",
        "pdm.lock",
        "composer.lock",
        "Gemfile.lock",
        "Podfile.lock",
        "go.sum",
        "mix.lock",
        "flake.lock",
        "packages.lock.json",
        "gradle.lockfile",
        "pubspec.lock",
    }
)

# fmt: off
BINARY_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff", ".psd",
    ".heic", ".avif", ".mp3", ".mp4", ".m4a", ".wav", ".ogg", ".flac", ".avi", ".mov", ".mkv",
    ".webm", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".war",
    ".whl", ".egg", ".deb", ".rpm", ".dmg", ".iso", ".so", ".dylib", ".dll", ".exe", ".o", ".a",
    ".lib", ".obj", ".bin", ".class", ".pyc", ".pyo", ".pyd", ".wasm", ".ttf", ".otf", ".woff",
    ".woff2", ".eot", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".sqlite",
    ".sqlite3", ".db", ".parquet", ".npy", ".npz", ".pkl", ".pickle", ".pt", ".pth", ".onnx",
    ".gguf", ".safetensors",
})
# fmt: on
"""Extensions skipped as binary without reading them."""

DATA_EXTENSIONS = frozenset({".csv", ".tsv", ".log", ".map", ".svg", ".ipynb", ".lock"})
"""Text, but data rather than source."""

MINIFIABLE_EXTENSIONS = frozenset({".js", ".mjs", ".cjs", ".css", ".json"})
MAX_LINE = 5000
"""A line longer than this in a minifiable file means it is minified."""
MAX_AVERAGE_LINE = 300
"""An average line longer than this (in code of 2 KB or more) means it is minified."""

_SNIFF = 8192
_TEXT_BYTES = bytes(range(0x20, 0x100)) + b"\t\n\r\f\v\b\x1b"
"""Bytes that may appear in text; the rest are control characters."""
_GENERATED_ANYWHERE = re.compile(r"@generated\b|\bDO NOT EDIT\b")
"""Markers that count anywhere in a header comment (case matters)."""
_GENERATED_LEAD = re.compile(
    r"(?:this (?:file|module|code|source) (?:is|was|has been) )?"
    r"(?:auto-?generated|automatically generated|generated (?:by|from))\b",
    re.IGNORECASE,
)
"""Markers that count when a header comment starts with them."""
_LEAD_CHARS = "#/*!;%-<>\"'{ \t"
_COMMENT_LEADS = ("#", "//", "/*", "*", "<!--", "--", ";", '"""', "'''", "%", "!", "{{!")
_HEADER_LINES = 30
_HEADER_BYTES = 2048


@dataclass(frozen=True)
class ScanResult:
    """What a scan found: files to index and files left out, each sorted by path."""

    files: list[SourceFile]
    skipped: list[Skipped]


def read_text(path: str | os.PathLike[str]) -> str:
    """A file's text as UTF-8, invalid bytes replaced by U+FFFD (a leading BOM dropped).

    Line numbers stay correct: a newline byte is never part of an invalid sequence, so
    replacement never adds or removes a line.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


@dataclass(frozen=True)
class _Rules:
    """One directory's ignore files, read in order of rising precedence."""

    prefix: str
    """The directory, relative to the root, with a trailing slash ('' for the root)."""
    specs: tuple[tuple[str, GitIgnoreSpec], ...]


def scan(
    root: Path, *, max_bytes: int = 1_000_000, only: Iterable[str] | None = None
) -> ScanResult:
    """Walk ``root`` and sort its files into indexable ones and skipped ones (with why).

    ``only`` limits the walk to these relative file paths (and the folders above them),
    judged by exactly the rules of a full scan: for re-checking a few changed files.
    """
    try:
        base = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise BadRequest(f"project root not found: {root}", path=str(root)) from exc
    if not base.is_dir():
        raise BadRequest(f"project root is not a directory: {root}", path=str(root))
    walker = _Walker(base, max_bytes, None if only is None else set(only))
    walker.walk()
    return ScanResult(
        files=sorted(walker.files, key=lambda f: f.path),
        skipped=sorted(walker.skipped, key=lambda s: s.path),
    )


class _Walker:
    def __init__(self, root: Path, max_bytes: int, only: set[str] | None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.only = only
        self.only_dirs = {
            parent.as_posix() for rel in only or () for parent in PurePosixPath(rel).parents
        }
        self.files: list[SourceFile] = []
        self.skipped: list[Skipped] = []

    def skip(self, rel: str, reason: str) -> None:
        self.skipped.append(Skipped(rel, reason))

    def walk(self) -> None:
        exclude = self.root / ".git" / "info" / "exclude"
        git = (self.root / ".git").is_dir()
        base_specs = _load_spec(exclude, ".git/info/exclude") if git else ()
        stack: list[tuple[str, tuple[_Rules, ...]]] = [("", ())]
        first = True
        while stack:
            rel_dir, rules = stack.pop()
            full_dir = self.root / rel_dir if rel_dir else self.root
            try:
                with os.scandir(full_dir) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                self.skip(rel_dir or ".", f"unreadable: {_why(exc)}")
                continue
            prefix = f"{rel_dir}/" if rel_dir else ""
            specs = [
                *(base_specs if first else ()),
                *_load_spec(full_dir / ".gitignore", f"{prefix}.gitignore"),
                *_load_spec(full_dir / ".mimiignore", f"{prefix}.mimiignore"),
            ]
            first = False
            if specs:
                rules = (*rules, _Rules(prefix, tuple(specs)))
            subdirs: list[str] = []
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if self.only is not None and rel not in self.only and rel not in self.only_dirs:
                    continue
                if self.entry(entry, rel, rules, at_root=not rel_dir):
                    subdirs.append(rel)
            stack.extend((sub, rules) for sub in reversed(subdirs))

    def entry(
        self, entry: os.DirEntry[str], rel: str, rules: tuple[_Rules, ...], *, at_root: bool
    ) -> bool:
        """Handle one entry; True when it is a directory to walk into."""
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
        except OSError as exc:
            self.skip(rel, f"unreadable: {_why(exc)}")
            return False
        if entry.name == ".git" and not is_dir:
            self.skip(rel, "excluded directory: git worktree link")
            return False
        if is_dir:
            if entry.name in SKIP_DIRS or entry.name.endswith(".egg-info"):
                self.skip(rel, "excluded directory")
                return False
            if at_root and entry.name in ROOT_SKIP_DIRS:
                self.skip(rel, "excluded directory: build output")
                return False
            source = _ignored(rules, rel, is_dir=True)
            if source:
                self.skip(rel, f"ignored: {source}")
                return False
            if _is_virtualenv(Path(entry.path)):
                self.skip(rel, "excluded directory: virtualenv")
                return False
            return True
        source = _ignored(rules, rel, is_dir=False)
        if source:
            self.skip(rel, f"ignored: {source}")
            return False
        self.file(entry, rel, is_link)
        return False

    def file(self, entry: os.DirEntry[str], rel: str, is_link: bool) -> None:
        """Decide about one file (or file symlink) that no ignore rule left out."""
        try:
            info = os.stat(entry.path) if is_link else entry.stat(follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(rel, "symlink: loop")
            elif is_link:
                self.skip(rel, "symlink: broken")
            else:
                self.skip(rel, f"unreadable: {_why(exc)}")
            return
        if is_link:
            target = Path(os.path.realpath(entry.path))
            if not target.is_relative_to(self.root):
                self.skip(rel, "symlink: points outside the root")
                return
            if stat.S_ISDIR(info.st_mode):
                self.skip(rel, "symlink: directory not followed")
                return
        if not stat.S_ISREG(info.st_mode):
            self.skip(rel, "not a regular file")
            return
        reason = _by_name(rel)
        if reason is None and info.st_size > self.max_bytes:
            reason = f"too large: {info.st_size} bytes > {self.max_bytes}"
        if reason is None:
            try:
                with open(entry.path, "rb") as handle:
                    data = handle.read(self.max_bytes + 1)
            except OSError as exc:
                self.skip(rel, f"unreadable: {_why(exc)}")
                return
            if len(data) > self.max_bytes:
                reason = f"too large: more than {self.max_bytes} bytes"
            else:
                language = language_for(rel, data[:256]) or TEXT
                reason = _by_content(rel, language, data)
        if reason is not None:
            self.skip(rel, reason)
            return
        self.files.append(SourceFile(rel, language, info.st_size, info.st_mtime_ns))


def _load_spec(path: Path, source: str) -> tuple[tuple[str, GitIgnoreSpec], ...]:
    """The ignore rules in ``path`` (nothing if it is missing or unreadable)."""
    try:
        if not path.is_file():
            return ()
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return ()
    return ((source, GitIgnoreSpec.from_lines(lines)),)


def _ignored(rules: tuple[_Rules, ...], rel: str, *, is_dir: bool) -> str | None:
    """The ignore file that leaves ``rel`` out, or None: the deepest deciding rule wins."""
    for level in reversed(rules):
        sub = rel[len(level.prefix) :] + ("/" if is_dir else "")
        for source, spec in reversed(level.specs):
            include = spec.check_file(sub).include
            if include is not None:
                return source if include else None
    return None


def _is_virtualenv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def _why(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def _by_name(rel: str) -> str | None:
    """A reason to skip ``rel`` from its name alone."""
    name = PurePosixPath(rel).name
    lower = name.lower()
    suffix = PurePosixPath(lower).suffix
    if name in LOCKFILES:
        return "generated: lockfile"
    if suffix in BINARY_EXTENSIONS:
        return "binary"
    if suffix in DATA_EXTENSIONS:
        return "data file"
    if lower.endswith((".min.js", ".min.mjs", ".min.css", "-min.js")):
        return "minified"
    return None


def _by_content(rel: str, language: str, data: bytes) -> str | None:
    """A reason to skip a file from its bytes: binary, generated or minified."""
    if _is_binary(data[:_SNIFF]):
        return "binary"
    marker = _generated_marker(data[:_HEADER_BYTES])
    if marker:
        return f"generated: {marker}"
    if _is_minified(rel, language, data):
        return "minified"
    return None


def _is_binary(sample: bytes) -> bool:
    """A NUL byte, or mostly bytes that are neither valid UTF-8 nor text controls."""
    if not sample:
        return False
    if b"\0" in sample:
        return True
    controls = len(sample.translate(None, _TEXT_BYTES))
    try:
        sample.decode("utf-8")
        invalid = 0
    except UnicodeDecodeError:
        text = sample.decode("utf-8", errors="replace")
        invalid = text.count("\ufffd") - (1 if len(sample) == _SNIFF else 0)
    return controls + invalid > 0.3 * len(sample)


def _generated_marker(head: bytes) -> str | None:
    """The generated-file marker in a comment or docstring near the top, if any."""
    for raw in head.split(b"\n")[:_HEADER_LINES]:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith(_COMMENT_LEADS):
            continue
        match = _GENERATED_ANYWHERE.search(line) or _GENERATED_LEAD.match(line.lstrip(_LEAD_CHARS))
        if match:
            return match.group(0)
    return None


def _is_minified(rel: str, language: str, data: bytes) -> bool:
    suffix = PurePosixPath(rel.lower()).suffix
    if suffix in MINIFIABLE_EXTENSIONS and max(map(len, data.split(b"\n"))) > MAX_LINE:
        return True
    if language in (TEXT, "markdown") or len(data) < 2048:
        return False
    return len(data) / (data.count(b"\n") + 1) > MAX_AVERAGE_LINE

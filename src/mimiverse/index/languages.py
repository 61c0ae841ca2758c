"""Which language a file is in, and which languages have a tree-sitter grammar."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

TEXT = "text"
"""The language of a text file we cannot name (chunked by line windows)."""

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".cs": "c_sharp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".php": "php",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".json": "json",
    ".jsonc": "json",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala",
    ".sc": "scala",
    ".lua": "lua",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".sql": "sql",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "scss",
    ".xml": "xml",
    ".proto": "proto",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".hs": "haskell",
    ".zig": "zig",
    ".pl": "perl",
    ".pm": "perl",
    ".r": "r",
    ".vue": "vue",
    ".svelte": "svelte",
    ".tf": "hcl",
    ".hcl": "hcl",
    ".cmake": "cmake",
    ".mk": "make",
    ".rst": "rst",
    ".txt": TEXT,
    ".cfg": TEXT,
    ".ini": TEXT,
}
"""Lower-cased file extension → language."""

FILENAMES: dict[str, str] = {
    "Makefile": "make",
    "GNUmakefile": "make",
    "makefile": "make",
    "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby",
    "Gemfile": "ruby",
    "Vagrantfile": "ruby",
    "Jenkinsfile": "groovy",
    ".bashrc": "bash",
    ".bash_profile": "bash",
    ".zshrc": "bash",
    ".profile": "bash",
}
"""Exact file name → language, checked before the extension."""

INTERPRETERS: dict[str, str] = {
    "python": "python",
    "pypy": "python",
    "sh": "bash",
    "bash": "bash",
    "zsh": "bash",
    "dash": "bash",
    "ksh": "bash",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "tsx": "typescript",
    "bun": "javascript",
    "ruby": "ruby",
    "php": "php",
    "perl": "perl",
    "lua": "lua",
}
"""Shebang interpreter (version suffix stripped) → language."""

GRAMMARS: dict[str, str] = {
    "python": "python",
    "javascript": "javascript",
    "typescript": "typescript",
    "tsx": "tsx",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
    "c_sharp": "csharp",
    "ruby": "ruby",
    "php": "php",
    "markdown": "markdown",
    "bash": "bash",
    "json": "json",
    "kotlin": "kotlin",
    "swift": "swift",
    "scala": "scala",
    "lua": "lua",
}
"""Language → grammar name in ``tree-sitter-language-pack`` 0.13 (bundled, works offline)."""

TAG_QUERIES: dict[str, str] = {
    "python": "python",
    "javascript": "javascript",
    "typescript": "typescript",
    "tsx": "typescript",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
    "c_sharp": "c_sharp",
    "ruby": "ruby",
    "php": "php",
}
"""Language → stem of its ``queries/<stem>-tags.scm`` file (tsx shares typescript's)."""

LANGUAGES: frozenset[str] = frozenset(
    {TEXT, *EXTENSIONS.values(), *FILENAMES.values(), *INTERPRETERS.values()}
)
"""Every language name a scan can report."""

_SHEBANG = re.compile(rb"^#!\s*(\S+)(?:[ \t]+(\S+))?")
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def language_for(path: str, head: bytes = b"") -> str | None:
    """The language of ``path`` by name, else by the shebang in ``head``; None if unknown."""
    name = PurePosixPath(path).name
    if name in FILENAMES:
        return FILENAMES[name]
    suffix = PurePosixPath(name.lower()).suffix
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    return shebang_language(head)


def shebang_language(head: bytes) -> str | None:
    """The language named by a ``#!`` line (``/usr/bin/env python3`` → python), or None."""
    match = _SHEBANG.match(head)
    if match is None:
        return None
    program = match.group(1).decode("utf-8", "replace").rsplit("/", 1)[-1]
    if program == "env" and match.group(2):
        program = match.group(2).decode("utf-8", "replace")
        if program.startswith("-") and head.count(b" ") >= 2:
            # `env -S node --flags`: the interpreter is the next word.
            words = head.split(b"\n", 1)[0].split()
            program = words[2].decode("utf-8", "replace") if len(words) > 2 else ""
    program = _VERSION_SUFFIX.sub("", program)
    return INTERPRETERS.get(program)


def grammar_for(language: str) -> str | None:
    """The tree-sitter grammar name for ``language``, or None if it has none."""
    return GRAMMARS.get(language)


def tag_query_for(language: str) -> str | None:
    """The tag query file stem for ``language``, or None if it has none."""
    return TAG_QUERIES.get(language)

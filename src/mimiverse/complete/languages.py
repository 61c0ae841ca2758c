"""Per-language facts for completions (comment marker, block openers, definition starts).

Loaded from ``languages.toml``; unknown languages get the ``default`` entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Language:
    """What the completion engine knows about one language."""

    name: str
    comment: str
    openers: tuple[str, ...]
    defs: tuple[str, ...]

    def opens_block(self, line: str) -> bool:
        """Whether ``line`` ends with a block opener (``:`` in Python, ``{`` in C …)."""
        stripped = line.rstrip()
        return bool(stripped) and any(stripped.endswith(o) for o in self.openers)

    def starts_definition(self, line: str) -> bool:
        """Whether ``line`` (stripped of indentation) begins a new definition."""
        stripped = line.lstrip()
        return any(stripped.startswith(d) for d in self.defs)


@cache
def _table() -> dict[str, Language]:
    text = resources.files("mimiverse.complete").joinpath("languages.toml").read_text("utf-8")
    table: dict[str, Language] = {}
    for name, spec in tomllib.loads(text).items():
        language = Language(
            name, spec["comment"], tuple(spec["openers"]), tuple(spec.get("defs", ()))
        )
        table[name] = language
        for alias in spec.get("aliases", ()):
            table[alias] = language
    return table


def language_of(language: str = "", path: str = "") -> Language:
    """The language named by an editor id (``python``, ``typescriptreact``) or ``path``'s suffix."""
    table = _table()
    for key in (language.lower(), PurePosixPath(path).suffix.lstrip(".").lower()):
        if key and key in table:
            return table[key]
    return table["default"]

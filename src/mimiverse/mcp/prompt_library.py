"""Prompts served over MCP, kept as data: ``prompts/*.md`` with TOML front matter.

A file looks like::

    +++
    title = "Explain code"
    description = "Explain what a file does."
    [[arguments]]
    name = "path"
    description = "File to explain."
    required = true          # or: default = "text used when the argument is left out"
    +++
    Explain `{{path}}` to me …

``{{name}}`` in the body is replaced by the argument's value.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimiverse.errors import BadRequest, ConfigError, NotFound

PROMPTS_DIR = Path(__file__).with_name("prompts")
_FRONT = re.compile(r"\A\+\+\+\n(?P<meta>.*?)\n\+\+\+\n(?P<body>.*)\Z", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class PromptArgument:
    """One argument a prompt takes."""

    name: str
    description: str
    required: bool = False
    default: str = ""


@dataclass(frozen=True)
class PromptFile:
    """A prompt template: its name (the file's stem), metadata and body."""

    name: str
    title: str
    description: str
    arguments: tuple[PromptArgument, ...]
    body: str

    def render(self, values: Mapping[str, str] | None = None) -> str:
        """The body with ``values`` filled in; BadRequest names missing or unknown arguments."""
        values = dict(values or {})
        known = {arg.name: arg for arg in self.arguments}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise BadRequest(
                f"prompt {self.name!r} takes no argument {', '.join(map(repr, unknown))}; "
                f"its arguments are: {', '.join(known) or 'none'}"
            )
        filled: dict[str, str] = {}
        for arg in self.arguments:
            value = values.get(arg.name, "").strip()
            if not value and arg.required:
                raise BadRequest(
                    f"prompt {self.name!r} needs the argument {arg.name!r} ({arg.description})"
                )
            filled[arg.name] = value or arg.default
        return _PLACEHOLDER.sub(lambda m: filled.get(m.group(1), m.group(0)), self.body).strip()


def parse_prompt(name: str, text: str) -> PromptFile:
    """Read one prompt file's text; ConfigError says what is malformed."""
    match = _FRONT.match(text.replace("\r\n", "\n"))
    if match is None:
        raise ConfigError(
            f"prompt {name!r}: start the file with TOML front matter between '+++' lines"
        )
    try:
        meta: dict[str, Any] = tomllib.loads(match["meta"])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"prompt {name!r}: invalid front matter: {exc}") from exc
    arguments = tuple(
        PromptArgument(
            name=str(arg["name"]),
            description=str(arg.get("description", "")),
            required=bool(arg.get("required", False)),
            default=str(arg.get("default", "")),
        )
        for arg in meta.get("arguments", [])
    )
    declared = {arg.name for arg in arguments}
    stray = sorted(set(_PLACEHOLDER.findall(match["body"])) - declared)
    if stray:
        raise ConfigError(f"prompt {name!r}: {{{{{stray[0]}}}}} is used but not declared")
    return PromptFile(
        name=name,
        title=str(meta.get("title", name)),
        description=str(meta.get("description", "")),
        arguments=arguments,
        body=match["body"],
    )


def load_prompts(folder: Path = PROMPTS_DIR) -> dict[str, PromptFile]:
    """Every ``*.md`` prompt in ``folder``, by name, sorted."""
    return {
        path.stem: parse_prompt(path.stem, path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.md"))
    }


def get_prompt(prompts: Mapping[str, PromptFile], name: str) -> PromptFile:
    """The prompt called ``name``; NotFound lists the known ones."""
    try:
        return prompts[name]
    except KeyError:
        raise NotFound(f"no prompt named {name!r}; the prompts are: {', '.join(prompts)}") from None

"""FIM prompt templates per model family, loaded from ``templates/fim.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from mimiverse.errors import ConfigError


@dataclass(frozen=True)
class FimTemplate:
    """How one model family spells fill-in-the-middle."""

    family: str
    prompt: str
    stop: tuple[str, ...]
    match: tuple[str, ...]

    def render(self, prefix: str, suffix: str) -> str:
        """The raw prompt for ``prefix``/``suffix``."""
        # str.replace, not str.format: code is full of braces.
        return self.prompt.replace("{prefix}", prefix).replace("{suffix}", suffix)


@cache
def templates() -> dict[str, FimTemplate]:
    """All known families, in detection order."""
    text = resources.files("mimiverse.gateway").joinpath("templates/fim.toml").read_text("utf-8")
    data = tomllib.loads(text)
    return {
        family: FimTemplate(family, spec["prompt"], tuple(spec["stop"]), tuple(spec["match"]))
        for family, spec in data.items()
    }


def get(family: str) -> FimTemplate:
    """The template of ``family``; a clear error when unknown."""
    try:
        return templates()[family]
    except KeyError:
        known = ", ".join(templates())
        raise ConfigError(f"unknown FIM template '{family}': use one of {known}") from None


def detect(*names: str) -> FimTemplate | None:
    """The family whose ``match`` strings occur in any of ``names`` (model id, path, GGUF name)."""
    lowered = [n.lower() for n in names if n]
    for template in templates().values():
        if any(m in n for m in template.match for n in lowered):
            return template
    return None

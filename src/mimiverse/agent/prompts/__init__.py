"""Agent prompts, kept as data files beside this module."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_FIELD = re.compile(r"\{(\w+)\}")


@cache
def prompt(name: str) -> str:
    """The text of ``prompts/<name>.md``."""
    return resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")


def fill(name: str, **values: object) -> str:
    """``prompt(name)`` with each ``{key}`` of ``values`` replaced.

    Not ``str.format``: prompts show JSON examples whose braces must stay as written.
    """
    return _FIELD.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), prompt(name)
    )

"""FIM prompt templates per model family, loaded from ``templates/fim.toml``.

A family is found, in this order, from the configured ``fim_template``, from the model's
tokenizer (``detect_vocab``: its FIM control tokens, read from GGUF metadata), or from
names (``detect``: model id, file name, GGUF ``general.name``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from mimiverse.errors import ConfigError
from mimiverse.gateway.base import FimFile, FimRequest


def _fill(pattern: str, **values: str) -> str:
    # str.replace, not str.format: code is full of braces. One pass per name, and values
    # are never re-scanned, so a "{suffix}" inside the user's prefix stays as it is.
    out: list[str] = []
    rest = pattern
    while rest:
        start = rest.find("{")
        end = rest.find("}", start)
        if start < 0 or end < 0:
            out.append(rest)
            break
        name = rest[start + 1 : end]
        if name in values:
            out.append(rest[:start] + values[name])
        else:
            out.append(rest[: end + 1])
        rest = rest[end + 1 :]
    return "".join(out)


@dataclass(frozen=True)
class FimTemplate:
    """How one model family spells fill-in-the-middle."""

    family: str
    prompt: str
    stop: tuple[str, ...]
    match: tuple[str, ...]
    tokens: tuple[str, ...] = ()
    repo: str = ""
    file: str = "{header}\n{text}\n\n"
    current: str = ""

    @property
    def repo_level(self) -> bool:
        """Whether the family has its own tokens for related files (``<|file_sep|>`` …)."""
        return "{header}" not in self.file

    def render(
        self,
        prefix: str,
        suffix: str,
        files: Sequence[FimFile] = (),
        *,
        repo: str = "",
        path: str = "",
        middle: str = "",
    ) -> str:
        """The raw prompt: related files (if any), the FIM prompt, then the middle's start."""
        head = context_block(self, files, repo=repo, path=path)
        return head + _fill(self.prompt, prefix=prefix, suffix=suffix) + middle

    def render_request(self, request: FimRequest) -> str:
        """``render`` with everything a backend's FIM request carries."""
        return self.render(request.prefix, request.suffix, request.files, repo=request.repo,
                           path=request.path, middle=request.middle)  # fmt: skip


def context_block(
    template: FimTemplate | None, files: Sequence[FimFile], *, repo: str = "", path: str = ""
) -> str:
    """Related files as the family spells them (comment headers when ``template`` is None)."""
    if not files:
        return ""
    if template is None or not template.repo_level:
        pattern = template.file if template is not None else "{header}\n{text}\n\n"
        return "".join(_fill(pattern, path=f.path, text=f.text, header=f.header) for f in files)
    parts = [_fill(template.repo, repo=repo or "project")]
    parts += [_fill(template.file, path=f.path, text=f.text, header=f.header) for f in files]
    parts.append(_fill(template.current, path=path or "untitled"))
    return "".join(parts)


@cache
def templates() -> dict[str, FimTemplate]:
    """All known families, in detection order."""
    text = resources.files("mimiverse.gateway").joinpath("templates/fim.toml").read_text("utf-8")
    data = tomllib.loads(text)
    return {
        family: FimTemplate(
            family,
            spec["prompt"],
            tuple(spec["stop"]),
            tuple(spec["match"]),
            tuple(spec.get("tokens", ())),
            spec.get("repo", ""),
            spec.get("file", "{header}\n{text}\n\n"),
            spec.get("current", ""),
        )
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


def detect_vocab(tokens: Iterable[str]) -> FimTemplate | None:
    """The first family whose FIM tokens are all in the model's vocabulary; None if none are."""
    vocab = set(tokens)
    for template in templates().values():
        if template.tokens and all(t in vocab for t in template.tokens):
            return template
    return None


def no_fim_message(model: str, endpoint: str) -> str:
    """Why a model without FIM tokens is refused for the fim task, and what to do."""
    families = ", ".join(templates())
    return (
        f"model '{model}' (endpoint '{endpoint}') has no fill-in-the-middle tokens in its "
        f"tokenizer, so it cannot serve task 'fim': use a code model trained for FIM "
        f"(Qwen2.5-Coder, StarCoder2, DeepSeek-Coder, CodeLlama, Codestral), e.g. unset "
        f"MIMI_FIM_MODEL_FILE for the bundled Qwen2.5-Coder-0.5B, or set fim_template "
        f"({families}) on the endpoint if you know the model's format"
    )

"""The model backend interface: one narrow door per task, plus health and close.

A backend is one endpoint (an in-process model, an Ollama server, an OpenAI-compatible
server). It declares what it can do in ``Capabilities``; the router reads capabilities,
never model names. Streaming methods yield ``Delta`` objects and raise ``UpstreamError``
for failures; a failure after the first delta is the router's to turn into
``StreamInterrupted``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mimiverse.settings import Task


@dataclass(frozen=True)
class Capabilities:
    """What one endpoint can do."""

    chat: bool = False
    fim: bool = False
    embed: bool = False
    rerank: bool = False
    tools: bool = False
    context_length: int = 4096
    fim_template: str = ""
    """FIM template family used to build raw prompts; empty when the server takes a suffix."""

    def supports(self, task: Task) -> bool:
        """Whether this endpoint serves ``task``."""
        return bool(getattr(self, task))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "chat": self.chat,
            "fim": self.fim,
            "embed": self.embed,
            "rerank": self.rerank,
            "tools": self.tools,
            "context_length": self.context_length,
            "fim_template": self.fim_template,
        }


@dataclass
class ChatRequest:
    """An OpenAI-style chat request."""

    messages: list[dict[str, Any]]
    max_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class FimFile:
    """A related file or snippet shown to the model before the FIM prompt."""

    path: str
    text: str
    header: str = ""
    """A comment line naming ``path`` in the file's language, for families without repo tokens."""


@dataclass
class FimRequest:
    """Fill in the middle: the text between ``prefix`` and ``suffix``."""

    prefix: str
    suffix: str = ""
    max_tokens: int = 128
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)
    language: str = ""
    path: str = ""
    files: list[FimFile] = field(default_factory=list)
    """Repo-level context (related definitions, recently edited files), most relevant last."""
    repo: str = ""
    """Project name for families with a repo-level format (``<|repo_name|>``)."""
    n_indent: int = 0
    """llama.cpp servers stop a line indented less than this (0 = off); others ignore it."""
    middle: str = ""
    """Text the middle starts with, written after the FIM middle token; the model continues it.

    The user's own typing since an anchor goes here, so consecutive keystrokes only extend
    the prompt's end and the KV cache keeps everything before (prefix and suffix alike).
    """


@dataclass
class EmbedRequest:
    """Embed each input text."""

    inputs: list[str]
    kind: str = "passage"
    """``query`` or ``passage``: asymmetric models (e5, …) embed the two differently."""


@dataclass
class RerankRequest:
    """Score ``documents`` against ``query``."""

    query: str
    documents: list[str]
    top_n: int | None = None


@dataclass
class Usage:
    """Token counts of one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Delta:
    """One streamed piece of output."""

    text: str = ""
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: Usage | None = None


@dataclass
class RerankResult:
    """One document's relevance."""

    index: int
    score: float


@dataclass
class Health:
    """An endpoint's answer to a health check."""

    ok: bool
    detail: str = ""
    latency_ms: float = 0.0


class ModelBackend(abc.ABC):
    """One model endpoint. Subclasses implement the tasks their capabilities declare."""

    kind: str = "base"

    def __init__(self, name: str, model: str, capabilities: Capabilities) -> None:
        self.name = name
        self.model = model
        self.capabilities = capabilities

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream a chat answer."""
        raise self._unsupported("chat")

    def fim_stream(self, request: FimRequest) -> AsyncIterator[Delta]:
        """Stream a fill-in-the-middle completion."""
        raise self._unsupported("fim")

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """Embed a batch of texts, in order."""
        raise self._unsupported("embed")

    async def rerank(self, request: RerankRequest) -> list[RerankResult]:
        """Score documents against a query, best first."""
        raise self._unsupported("rerank")

    @abc.abstractmethod
    async def health(self) -> Health:
        """Cheap liveness probe."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and models."""

    def _unsupported(self, task: str) -> Exception:
        from mimiverse.errors import UpstreamError

        return UpstreamError(
            f"endpoint '{self.name}' does not serve task '{task}'",
            retryable=True,
            endpoint=self.name,
        )

    def describe(self) -> dict[str, Any]:
        """Name, kind, model and capabilities for listings."""
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            **self.capabilities.as_dict(),
        }

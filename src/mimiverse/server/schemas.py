"""Request bodies. OpenAI-compatible ones ignore unknown fields, as OpenAI clients send many."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Lenient):
    """One chat message."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: Any = None


class ChatCompletionBody(_Lenient):
    """POST /v1/chat/completions."""

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float = Field(default=0.2, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    cache: bool = Field(default=False, description="Mimiverse extension: cache this answer.")


class CompletionBody(_Lenient):
    """POST /v1/completions: prompt + optional suffix → fill in the middle."""

    model: str | None = None
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int = Field(default=128, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: str | list[str] | None = None
    stream: bool = False


class EmbeddingsBody(_Lenient):
    """POST /v1/embeddings."""

    model: str | None = None
    input: str | list[str]


class FimFileBody(BaseModel):
    """A file the editor offers as context (an open tab)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(max_length=1000)
    text: str = Field(max_length=20_000)


class FimBody(BaseModel):
    """POST /api/ai/fim and /api/ai/fim/stream."""

    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(default="", max_length=200_000)
    suffix: str = Field(default="", max_length=200_000)
    language: str = Field(default="", max_length=64)
    path: str = Field(default="", max_length=1000)
    model: str | None = None
    max_tokens: int | None = Field(
        default=None, ge=1, le=2048, description="Default: the line or block budget."
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: list[str] = Field(default_factory=list, max_length=16)
    session: str | None = Field(
        default=None,
        max_length=200,
        description="Editor id: requests of one editor cancel and reuse each other's work.",
    )
    files: list[FimFileBody] = Field(default_factory=list, max_length=8)
    multiline: bool | None = Field(
        default=None, description="Force one line (false) or a block (true); default: decided."
    )
    context: bool = Field(default=True, description="false: prefix and suffix only.")


class FimFeedbackBody(BaseModel):
    """POST /api/ai/fim/feedback."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100, description="The suggestion's id.")
    event: Literal["shown", "accepted", "rejected", "retained"]
    retained_chars: int | None = Field(
        default=None, ge=0, description="For event 'retained': accepted characters still there."
    )


def stops(value: str | list[str] | None) -> list[str]:
    """OpenAI's ``stop`` as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)

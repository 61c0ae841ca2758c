"""Request bodies, bounded by :data:`LIMITS`. OpenAI-compatible ones ignore unknown fields,
as OpenAI clients send many.

Every bound is in the OpenAPI schema too (``maxLength``, ``maxItems``, ``maximum``), so a
client sees what fits before it sends; an oversized field gets a 400 that names the field,
its size, the limit and how to fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class InputLimits:
    """How much one request may carry (the body as a whole: ``max_body_bytes``)."""

    message_chars: int = 10_000
    """Text of one chat message (its string, or its text parts together)."""
    turns: int = 50
    """Messages in one chat request."""
    content_parts: int = 32
    """Parts of one message's content (texts, images …)."""
    prompt_chars: int = 200_000
    """A prompt or suffix; a FIM prefix or suffix."""
    chat_max_tokens: int = 32_768
    completion_max_tokens: int = 8192
    fim_max_tokens: int = 2048
    stops: int = 16
    """Stop sequences in one request."""
    stop_chars: int = 200
    tools: int = 128
    """Tool definitions in a request, or tool calls in one message."""
    embed_inputs: int = 256
    """Texts in one embeddings request."""
    embed_chars: int = 32_000
    """One text to embed."""
    name_chars: int = 200
    """Model names, ids, editor sessions, tool names."""
    path_chars: int = 1000
    language_chars: int = 64
    fim_files: int = 8
    """Open files offered as FIM context."""
    fim_file_chars: int = 20_000
    count: int = 1_000_000_000
    """Any count a client reports (retained characters …)."""


LIMITS = InputLimits()
"""The one place input bounds are set."""

SEED_MAX = 2**32 - 1
"""Seeds are 32-bit in llama.cpp; -1 means random."""


def whole_number(value: Any) -> Any:
    """1.0 is an integer in JSON Schema: take it as 1 (strict models refuse floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(whole_number)]
"""An integer field of a strict model: JSON numbers without a fraction (1.0 is 1), not
strings or booleans. Bounds: ``x: Int = Field(ge=…)``; when optional, put them first
inside (``Annotated[int, Field(ge=…), BeforeValidator(whole_number)] | None``), else the
document shows them as ``ge``/``le`` instead of ``minimum``/``maximum``."""
ChatTokens = Annotated[int, Field(ge=1, le=LIMITS.chat_max_tokens), BeforeValidator(whole_number)]
CompletionTokens = Annotated[
    int, Field(ge=1, le=LIMITS.completion_max_tokens), BeforeValidator(whole_number)
]
FimTokens = Annotated[int, Field(ge=1, le=LIMITS.fim_max_tokens), BeforeValidator(whole_number)]
OneChoice = Annotated[
    int,
    Field(ge=1, le=1, description="Only one choice is generated."),
    BeforeValidator(whole_number),
]
Seed = Annotated[
    int, Field(ge=-1, le=SEED_MAX, description="-1: random."), BeforeValidator(whole_number)
]
Count = Annotated[int, Field(ge=0, le=LIMITS.count), BeforeValidator(whole_number)]
"""Bounded integers (the bounds before the validator, where the document shows them)."""


def bounded(fix: str, *, chars: int = 0, items: int = 0, what: str = "items") -> BeforeValidator:
    """Refuse a string over ``chars`` characters, or a list over ``items`` items (or with a
    string over ``chars``), with a message that says how to fit.

    It runs ahead of the ``maxLength`` / ``maxItems`` the schema shows, and outside
    ``str | list`` unions, so a caller gets one clear error instead of one per branch.
    """

    def check(value: Any) -> Any:
        if isinstance(value, str) and chars and len(value) > chars:
            _too_big(len(value), chars, "characters", fix)
        if isinstance(value, list):
            if items and len(value) > items:
                _too_big(len(value), items, what, fix)
            for index, item in enumerate(value):
                if isinstance(item, str) and chars and len(item) > chars:
                    _too_big(len(item), chars, f"characters in item {index}", fix)
        return value

    return BeforeValidator(check)


def _too_big(size: int, limit: int, what: str, fix: str) -> None:
    raise PydanticCustomError(
        "too_long",
        "{size} {what}; the limit is {limit}: {fix}",
        {"size": size, "what": what, "limit": limit, "fix": fix},
    )


def _content_fits(value: Any) -> Any:
    """A message's text (its string, or its text parts together) within ``message_chars``."""
    if isinstance(value, list):
        texts = [p.get("text") for p in value if isinstance(p, dict)]
        size = sum(len(t) for t in texts if isinstance(t, str))
        if len(value) > LIMITS.content_parts:
            _too_big(len(value), LIMITS.content_parts, "parts", "merge the text parts")
    elif isinstance(value, str):
        size = len(value)
    else:
        return value
    if size > LIMITS.message_chars:
        _too_big(size, LIMITS.message_chars, "characters", _SPLIT_MESSAGE)
    return value


_SPLIT_MESSAGE = "split the text over several messages or attach less of it"
Name = Annotated[
    str, Field(max_length=LIMITS.name_chars), bounded("shorten it", chars=LIMITS.name_chars)
]
ModelName = Annotated[
    str,
    Field(max_length=LIMITS.name_chars),
    bounded("send a model id from GET /v1/models", chars=LIMITS.name_chars),
]
FilePath = Annotated[
    str,
    Field(max_length=LIMITS.path_chars),
    bounded("send a path relative to the project", chars=LIMITS.path_chars),
]
_PROMPT_FIX = "send less text (the model sees far less of it anyway)"
_PROMPT = Annotated[str, Field(max_length=LIMITS.prompt_chars)]
PromptText = Annotated[_PROMPT, bounded(_PROMPT_FIX, chars=LIMITS.prompt_chars)]
_STOP = Annotated[str, Field(min_length=1, max_length=LIMITS.stop_chars)]
Stop = Annotated[
    _STOP | Annotated[list[_STOP], Field(max_length=LIMITS.stops)] | None,
    Field(description="A stop sequence or a list of them."),
    bounded(
        "send fewer, shorter stop sequences",
        chars=LIMITS.stop_chars,
        items=LIMITS.stops,
        what="stop sequences",
    ),
]
_EMBED_TEXT = Annotated[str, Field(min_length=1, max_length=LIMITS.embed_chars)]


class Body(BaseModel):
    """A Mimiverse request body: exact JSON types (no "1" for 1), no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Lenient(BaseModel):
    """An OpenAI-compatible body: exact JSON types; unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class ContentPart(_Lenient):
    """One part of a message's content: ``{"type": "text", "text": …}``, an image …"""

    model_config = ConfigDict(extra="allow")
    type: Name
    text: Annotated[str, Field(max_length=LIMITS.message_chars)] | None = None


class ChatMessage(_Lenient):
    """One chat message."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[
        Annotated[str, Field(max_length=LIMITS.message_chars)]
        | Annotated[list[ContentPart], Field(max_length=LIMITS.content_parts)]
        | None,
        Field(
            description=f"Text, or parts whose texts total at most {LIMITS.message_chars} "
            "characters."
        ),
        BeforeValidator(_content_fits),
    ] = None
    name: Name | None = None
    tool_call_id: Name | None = None
    tool_calls: list[dict[str, Any]] | None = Field(default=None, max_length=LIMITS.tools)


class ChatCompletionBody(_Lenient):
    """POST /v1/chat/completions."""

    model: ModelName | None = None
    messages: Annotated[
        list[ChatMessage],
        Field(min_length=1, max_length=LIMITS.turns),
        bounded("summarise or drop old turns", items=LIMITS.turns, what="turns"),
    ]
    max_tokens: ChatTokens | None = None
    max_completion_tokens: ChatTokens | None = None
    n: OneChoice = 1
    temperature: float = Field(default=0.2, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: Stop = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=LIMITS.tools)
    tool_choice: Name | dict[str, Any] | None = None
    seed: Seed | None = None
    response_format: dict[str, Any] | None = None
    cache: bool = Field(default=False, description="Mimiverse extension: cache this answer.")


_NON_EMPTY: dict[str, Any] = {"type": "string", "minLength": 1}


class CompletionBody(_Lenient):
    """POST /v1/completions: prompt + optional suffix → fill in the middle (not both empty)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "properties": {
                        "prompt": {"anyOf": [_NON_EMPTY, {"type": "array", "items": _NON_EMPTY}]}
                    }
                },
                {"required": ["suffix"], "properties": {"suffix": _NON_EMPTY}},
            ],
        },
    )
    model: ModelName | None = None
    prompt: Annotated[
        _PROMPT | Annotated[list[_PROMPT], Field(min_length=1, max_length=1)],
        Field(description="One prompt (a list of one is accepted; batches are not)."),
        bounded(
            _PROMPT_FIX,
            chars=LIMITS.prompt_chars,
            items=1,
            what="prompts (batches are not supported)",
        ),
    ]
    suffix: PromptText | None = None
    max_tokens: CompletionTokens = 128
    n: OneChoice = 1
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: Stop = None
    stream: bool = False

    @property
    def text(self) -> str:
        """The one prompt."""
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt


class EmbeddingsBody(_Lenient):
    """POST /v1/embeddings."""

    model: ModelName | None = None
    input: Annotated[
        _EMBED_TEXT
        | Annotated[list[_EMBED_TEXT], Field(min_length=1, max_length=LIMITS.embed_inputs)],
        Field(description="One text, or a list of texts."),
        bounded(
            "split long texts into chunks; send many texts over several requests",
            chars=LIMITS.embed_chars,
            items=LIMITS.embed_inputs,
            what="texts",
        ),
    ]

    @property
    def texts(self) -> list[str]:
        """The input as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class FimFileBody(Body):
    """A file the editor offers as context (an open tab)."""

    path: FilePath
    text: Annotated[
        str,
        Field(max_length=LIMITS.fim_file_chars),
        bounded("send the part of the file around what matters", chars=LIMITS.fim_file_chars),
    ]


class FimBody(Body):
    """POST /api/ai/fim and /api/ai/fim/stream (prefix and suffix not both empty)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prefix"], "properties": {"prefix": _NON_EMPTY}},
                {"required": ["suffix"], "properties": {"suffix": _NON_EMPTY}},
            ],
        },
    )
    prefix: PromptText = ""
    suffix: PromptText = ""
    language: Annotated[str, Field(max_length=LIMITS.language_chars)] = ""
    path: FilePath = ""
    model: ModelName | None = None
    max_tokens: FimTokens | None = Field(
        default=None, description="Default: the line or block budget."
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: Annotated[
        list[_STOP],
        Field(max_length=LIMITS.stops),
        bounded(
            "send fewer, shorter stop sequences",
            chars=LIMITS.stop_chars,
            items=LIMITS.stops,
            what="stop sequences",
        ),
    ] = Field(default_factory=list)
    session: Name | None = Field(
        default=None,
        description="Editor id: requests of one editor cancel and reuse each other's work.",
    )
    files: Annotated[
        list[FimFileBody],
        Field(max_length=LIMITS.fim_files),
        bounded("offer the most relevant open files", items=LIMITS.fim_files, what="files"),
    ] = Field(default_factory=list)
    multiline: bool | None = Field(
        default=None, description="Force one line (false) or a block (true); default: decided."
    )
    context: bool = Field(default=True, description="false: prefix and suffix only.")


class FimFeedbackBody(Body):
    """POST /api/ai/fim/feedback (event 'retained' needs retained_chars)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"event": {"enum": ["shown", "accepted", "rejected"]}}},
                {"required": ["retained_chars"], "properties": {"retained_chars": {"type": "integer"}}},
            ],
        },
    )  # fmt: skip
    id: Annotated[str, Field(min_length=1, max_length=100, description="The suggestion's id.")]
    event: Literal["shown", "accepted", "rejected", "retained"]
    retained_chars: Count | None = Field(
        default=None, description="For event 'retained': accepted characters still there."
    )


def stops(value: str | list[str] | None) -> list[str]:
    """OpenAI's ``stop`` as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)

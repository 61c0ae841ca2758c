"""The tool interface and the one registry shared by the agent runtime and MCP.

A tool declares its name, a one-line description, a pydantic ``Args`` model (its JSON
schema is what models and MCP clients see) and whether it changes anything (``mutates``).
Tools never raise for mistakes a model can fix: they raise ``ToolError`` (or a subclass),
and ``Registry.call`` turns that, and invalid arguments, into a failed ``ToolResult`` whose
text says what to do instead. Nothing is written when a call fails.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mimiverse.errors import MimiError, NotFound, ToolError

if TYPE_CHECKING:
    from mimiverse.agent.changes import ChangeManager
    from mimiverse.gateway.service import Gateway
    from mimiverse.index.indexer import Indexer
    from mimiverse.settings import Settings
    from mimiverse.workspace.paths import Workspace
    from mimiverse.workspace.sandbox import Sandbox

OBSERVATION_LIMIT = 12_000
"""Characters of a tool's text a model sees; the rest is cut with a note saying so."""


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ToolResult:
    """What a tool call produced.

    ``text`` is the observation a model reads; ``data`` is the structured form for the UI,
    the API and MCP clients. ``changeset_id`` names the proposal an edit added to.
    """

    text: str
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    changeset_id: str | None = None

    def observation(self, limit: int = OBSERVATION_LIMIT) -> str:
        """``text`` cut to ``limit`` characters, saying how much was left out."""
        if len(self.text) <= limit:
            return self.text
        head = self.text[: limit - 200]
        return f"{head}\n… [{len(self.text) - len(head)} more characters cut; ask for less]"


OutputSink = Callable[[str], Awaitable[None]]
"""Receives streamed command output (already redacted) while a tool runs."""


@dataclass
class ToolContext:
    """Everything a tool may use. Built once per agent session or MCP connection."""

    workspace: Workspace
    settings: Settings
    changes: ChangeManager
    sandbox: Sandbox | None = None
    """None when no sandbox can run here; command tools then explain how to install one."""
    indexer: Callable[[], Indexer | None] = lambda: None
    gateway: Gateway | None = None
    session_id: str = ""
    auto_approve: bool = False
    """Edits are applied at once (trusted session); otherwise they wait as proposals."""
    on_output: OutputSink | None = None
    redact: Callable[[str], str] = lambda text: text
    """Removes secrets (env values, tokens) from text before a model sees it."""


class Tool(abc.ABC):
    """One capability the agent (and MCP clients) can call."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[ToolArgs]]
    mutates: ClassVar[bool] = False
    """True when a call changes files, runs commands or writes git history."""

    @abc.abstractmethod
    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        """Do the work for validated ``args`` (an instance of ``Args``)."""

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The JSON schema of ``Args`` (inlined, no ``$defs`` references)."""
        return inline_schema(cls.Args.model_json_schema())

    @classmethod
    def spec(cls) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": cls.name,
                "description": cls.description,
                "parameters": cls.parameters(),
            },
        }


class Registry:
    """Tools by name. The agent and the MCP server read the same registry."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add ``tool``; a second tool with the same name is a programming error."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        """The tool called ``name``; NotFound lists the known names."""
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools))
            raise NotFound(f"no tool named {name!r}; the tools are: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Any:
        return iter(self._tools.values())

    def names(self) -> list[str]:
        """Registered tool names, in registration order."""
        return list(self._tools)

    def specs(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI ``tools`` entries for ``names`` (default: all)."""
        chosen = list(names) if names is not None else self.names()
        return [self.get(n).spec() for n in chosen]

    def validate(self, name: str, arguments: dict[str, Any]) -> ToolArgs:
        """Parse ``arguments`` for tool ``name``; ToolError says which fields are wrong."""
        tool = self.get(name)
        try:
            return tool.Args.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(explain_validation(name, exc, tool.parameters())) from None

    async def call(self, name: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate and run one call. Mistakes come back as a failed result, never raised."""
        try:
            tool = self.get(name)
            args = self.validate(name, arguments)
            result = await tool.run(args, ctx)
        except (ToolError, NotFound) as exc:
            return ToolResult(text=f"error: {exc.message}", ok=False, data=exc.to_dict()["error"])
        except MimiError as exc:
            return ToolResult(
                text=f"error: {name} failed: {exc.message}",
                ok=False,
                data=exc.to_dict()["error"],
            )
        result.text = ctx.redact(result.text)
        return result


def explain_validation(name: str, exc: ValidationError, schema: dict[str, Any]) -> str:
    """One message naming each bad field and the expected arguments."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    shape = ", ".join(
        f"{key}{'' if key in required else '?'}: {value.get('type', 'any')}"
        for key, value in props.items()
    )
    return f"invalid arguments for {name}: " + "; ".join(problems) + f". Expected {{{shape}}}"


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``$ref``s to ``$defs`` replaced by their targets and titles dropped.

    Small models and grammar converters handle flat schemas better.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].rsplit("/", 1)[-1]]
                return walk(target)
            return {
                k: walk(v)
                for k, v in node.items()
                if k != "$defs" and not (k == "title" and isinstance(v, str))
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]

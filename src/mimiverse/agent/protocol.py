"""How the agent asks a model for tool calls, and how it reads the answer.

Two modes:

* ``native``: OpenAI ``tools`` / ``tool_calls``, for backends that declare tool support.
* ``json``: one JSON object per step, ``{"thought", "action": {"tool", "args"}}``, with
  the reply constrained by a JSON schema (``response_format``) that lists every tool's
  arguments. Backends that honour it (llama.cpp, vLLM) cannot emit a malformed call;
  others are read by the lenient parser, which also accepts fenced blocks, Qwen-style
  ``<tool_call>`` tags and the other shapes small models produce.

A reply that cannot be read raises ``MalformedReply`` whose reason is fed back to the model.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from mimiverse.agent.tools.base import Registry
from mimiverse.errors import MimiError, NotFound, ToolError
from mimiverse.gateway.base import ChatRequest

Mode = Literal["native", "json"]
FINISH = "finish"
THOUGHT_MAX_CHARS = 300
PLAN_MAX_STEPS = 4
PLAN_STEP_MAX_CHARS = 100


class MalformedReply(MimiError):
    """The model's reply is not a readable tool call or answer."""

    code = "malformed_reply"


@dataclass
class ToolCall:
    """One call the model asked for."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass
class Step:
    """What one model reply asked for: tool calls, or a final answer."""

    calls: list[ToolCall] = field(default_factory=list)
    thought: str = ""
    plan: list[str] = field(default_factory=list)
    answer: str | None = None
    raw: str = ""


def finish_schema() -> dict[str, Any]:
    """Arguments of the pseudo-tool that ends the task with an answer."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "description": "What you did or found, for the user."}
        },
        "required": ["answer"],
        "additionalProperties": False,
    }


class ToolProtocol:
    """Builds requests and parses replies for one mode over one set of tools."""

    def __init__(self, mode: Mode, registry: Registry, tools: list[str] | None = None) -> None:
        self.mode = mode
        self.registry = registry
        self.tools = tools if tools is not None else registry.names()

    # --- requests -----------------------------------------------------------------------

    def request(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        first_step: bool = False,
        temperature: float = 0.1,
    ) -> ChatRequest:
        """The chat request for one step."""
        if self.mode == "native":
            specs = [
                *self.registry.specs(self.tools),
                {
                    "type": "function",
                    "function": {
                        "name": FINISH,
                        "description": "End the task and give the user your answer.",
                        "parameters": finish_schema(),
                    },
                },
            ]
            return ChatRequest(
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                tools=specs,
                tool_choice="auto",
            )
        schema = self.step_schema(first_step=first_step)
        return ChatRequest(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "agent_step", "strict": True, "schema": schema},
            },
        )

    def step_schema(self, *, first_step: bool = False) -> dict[str, Any]:
        """The JSON schema of one step in ``json`` mode (a plan on the first step)."""
        actions = []
        for name in [*self.tools, FINISH]:
            args = finish_schema() if name == FINISH else self.registry.get(name).parameters()
            actions.append(
                {
                    "type": "object",
                    "properties": {"tool": {"const": name}, "args": _strict(args)},
                    "required": ["tool", "args"],
                    "additionalProperties": False,
                }
            )
        properties: dict[str, Any] = {}
        required = []
        if first_step:
            properties["plan"] = {
                "type": "array",
                "items": {"type": "string", "maxLength": PLAN_STEP_MAX_CHARS},
                "minItems": 1,
                "maxItems": PLAN_MAX_STEPS,
            }
            required.append("plan")
        properties["thought"] = {"type": "string", "maxLength": THOUGHT_MAX_CHARS}
        properties["action"] = {"anyOf": actions}
        required += ["thought", "action"]
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def tool_guide(self) -> str:
        """The tools and their arguments, one line each, for the system prompt."""
        lines = []
        for name in self.tools:
            tool = self.registry.get(name)
            lines.append(
                f"- {name}({_signature(tool.parameters())}): {_first_sentence(tool.description)}"
            )
        lines.append(f"- {FINISH}(answer: string): end the task and tell the user the result.")
        return "\n".join(lines)

    # --- replies ------------------------------------------------------------------------

    def parse(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> Step:
        """The step a reply asks for. Raises MalformedReply saying what is wrong."""
        step = self._read(text, tool_calls or [])
        step.raw = text
        for call in step.calls:
            self.check(call)
        return step

    def check(self, call: ToolCall) -> None:
        """Refuse unknown tools and arguments that do not match the tool's schema."""
        if call.name == FINISH:
            if not isinstance(call.arguments.get("answer"), str):
                raise MalformedReply('finish needs {"answer": "<text for the user>"}')
            return
        if call.name not in self.tools:
            raise MalformedReply(
                f"there is no tool {call.name!r}; use one of: {', '.join(self.tools)}, {FINISH}"
            )
        try:
            self.registry.validate(call.name, call.arguments)
        except (ToolError, NotFound) as exc:
            raise MalformedReply(exc.message) from None

    def _read(self, text: str, tool_calls: list[dict[str, Any]]) -> Step:
        if tool_calls:
            calls = [_native_call(c) for c in tool_calls]
            return _finish_or_calls(calls, thought=text.strip())
        data = extract_json(text)
        if data is None:
            if self.mode == "native" and text.strip():
                return Step(answer=text.strip())
            raise MalformedReply(
                "your reply held no JSON object: answer with exactly one JSON object "
                '{"thought": "...", "action": {"tool": "<name>", "args": {...}}}'
            )
        return step_from_json(data)


def _finish_or_calls(
    calls: list[ToolCall], *, thought: str = "", plan: list[str] | None = None
) -> Step:
    for call in calls:
        if call.name == FINISH and isinstance(call.arguments.get("answer"), str):
            return Step(
                calls=[call], thought=thought, plan=plan or [], answer=call.arguments["answer"]
            )
    return Step(calls=calls, thought=thought, plan=plan or [])


def _native_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    name = str(function.get("name") or raw.get("name") or "")
    arguments = function.get("arguments", raw.get("arguments", {}))
    if isinstance(arguments, str):
        parsed = loads_lenient(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            raise MalformedReply(f"the arguments of {name or 'a tool call'} are not a JSON object")
        arguments = parsed
    if not name:
        raise MalformedReply("a tool call has no function name")
    return ToolCall(
        name=name,
        arguments=dict(arguments or {}),
        id=str(raw.get("id") or f"call_{uuid.uuid4().hex[:12]}"),
    )


def step_from_json(data: Any) -> Step:
    """A step from any of the JSON shapes models produce for a tool call."""
    if isinstance(data, list):
        calls = [c for item in data for c in step_from_json(item).calls]
        if not calls:
            raise MalformedReply("the JSON list holds no tool calls")
        return Step(calls=calls)
    if not isinstance(data, dict):
        raise MalformedReply("the JSON is not an object")
    thought = str(data.get("thought") or data.get("reasoning") or "")
    plan = (
        [str(p) for p in data.get("plan") or [] if str(p).strip()]
        if isinstance(data.get("plan"), list)
        else []
    )
    action = data.get("action", data)
    if isinstance(action, str) and "tool" not in data:
        action = {"tool": action, "args": data.get("args") or data.get("action_input") or {}}
    if isinstance(action, list):
        return Step(
            calls=[c for a in action for c in step_from_json(a).calls], thought=thought, plan=plan
        )
    if not isinstance(action, dict):
        raise MalformedReply('"action" must be an object {"tool": "<name>", "args": {...}}')
    if "function" in action and isinstance(action["function"], dict):
        call = _native_call(action)
    else:
        name = action.get("tool") or action.get("name") or action.get("tool_name")
        args = action.get("args", action.get("arguments", action.get("parameters", {})))
        if isinstance(args, str):
            args = (
                loads_lenient(args)
                if args.strip().startswith("{")
                else {"answer": args}
                if name == FINISH
                else None
            )
        if not name:
            if "answer" in data and isinstance(data["answer"], str):
                return Step(
                    answer=data["answer"],
                    thought=thought,
                    plan=plan,
                    calls=[ToolCall(FINISH, {"answer": data["answer"]})],
                )
            raise MalformedReply('no tool named: give "action": {"tool": "<name>", "args": {...}}')
        if not isinstance(args, dict):
            raise MalformedReply(f"the args of {name} must be a JSON object")
        call = ToolCall(name=str(name), arguments=args)
    return _finish_or_calls([call], thought=thought, plan=plan)


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.S)
_TOOL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def extract_json(text: str) -> Any | None:
    """The first JSON value in ``text``: whole, fenced, tagged, or the first balanced {...}."""
    stripped = text.strip()
    if not stripped:
        return None
    candidates = [stripped]
    candidates += [m.group(1) for m in _TOOL_TAG.finditer(text)]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    start = stripped.find("{")
    if start >= 0:
        end = _balanced_end(stripped, start)
        if end is not None:
            candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        value = loads_lenient(candidate)
        if isinstance(value, dict | list):
            return value
    return None


def loads_lenient(text: str) -> Any:
    """JSON, tolerating trailing commas and Python literals (``True``, single quotes)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    cleaned = re.sub(r",\s*([}\]])", r"\1", text.strip())
    try:
        return json.loads(cleaned)
    except ValueError:
        pass
    try:
        return ast.literal_eval(cleaned)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _balanced_end(text: str, start: int) -> int | None:
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """An args schema with ``additionalProperties: false`` so a grammar admits no extras."""
    out = dict(schema)
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    out["additionalProperties"] = False
    return out


def _first_sentence(text: str) -> str:
    """The description's first sentence: the grammar enforces the arguments, so less is enough."""
    match = re.search(r"(?<=[.!?])\s", text)
    return text[: match.start()] if match else text


def _signature(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        kind = (
            prop.get("type")
            or "/".join(
                str(p.get("type")) for p in prop.get("anyOf", []) if p.get("type") != "null"
            )
            or "any"
        )
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)

"""Reading tool calls from the shapes models produce, and the step schema."""

from __future__ import annotations

import pytest

from mimiverse.agent.protocol import FINISH, MalformedReply, ToolProtocol, extract_json
from mimiverse.agent.tools.base import Registry, Tool, ToolArgs, ToolContext, ToolResult


class ReadArgs(ToolArgs):
    path: str
    start_line: int | None = None


class Read(Tool):
    name = "read_file"
    description = "Read a file."
    Args = ReadArgs

    async def run(self, args: ReadArgs, ctx: ToolContext) -> ToolResult:
        return ToolResult(text=args.path)


@pytest.fixture
def proto() -> ToolProtocol:
    return ToolProtocol("json", Registry([Read()]))


@pytest.mark.parametrize(
    "text",
    [
        '{"thought": "x", "action": {"tool": "read_file", "args": {"path": "a.py"}}}',
        '```json\n{"tool": "read_file", "args": {"path": "a.py"}}\n```',
        'Sure! {"name": "read_file", "arguments": {"path": "a.py"}} hope that helps',
        '<tool_call>\n{"name": "read_file", "arguments": "{\\"path\\": \\"a.py\\"}"}\n</tool_call>',
        "{'tool': 'read_file', 'args': {'path': 'a.py',}}",
        '{"action": "read_file", "action_input": {"path": "a.py"}}',
        '{"action": {"function": {"name": "read_file", "arguments": {"path": "a.py"}}}}',
    ],
)
def test_lenient_shapes(proto: ToolProtocol, text: str) -> None:
    step = proto.parse(text)
    assert [(c.name, c.arguments) for c in step.calls] == [("read_file", {"path": "a.py"})]


def test_finish_and_plan(proto: ToolProtocol) -> None:
    step = proto.parse(
        '{"plan": ["a", "b"], "thought": "t", "action": {"tool": "finish", "args": {"answer": "done"}}}'
    )
    assert step.answer == "done" and step.plan == ["a", "b"]


def test_native_tool_calls(proto: ToolProtocol) -> None:
    calls = [{"id": "c1", "function": {"name": "read_file", "arguments": '{"path": "x"}'}}]
    step = proto.parse("", calls)
    assert step.calls[0].id == "c1" and step.calls[0].arguments == {"path": "x"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("no json here", "no JSON"),
        ('{"action": {"tool": "rm_rf", "args": {}}}', "no tool 'rm_rf'"),
        ('{"action": {"tool": "read_file", "args": {"paht": "a"}}}', "paht"),
        ('{"action": {"tool": "read_file", "args": {"path": 3}}}', "path"),
        ('{"action": {"tool": "finish", "args": {}}}', "answer"),
    ],
)
def test_malformed_replies_say_what_is_wrong(proto: ToolProtocol, text: str, says: str) -> None:
    with pytest.raises(MalformedReply) as info:
        proto.parse(text)
    assert says in info.value.message


def test_step_schema_lists_each_tool_with_its_args(proto: ToolProtocol) -> None:
    schema = proto.step_schema(first_step=True)
    assert schema["required"] == ["plan", "thought", "action"]
    actions = schema["properties"]["action"]["anyOf"]
    assert [a["properties"]["tool"]["const"] for a in actions] == ["read_file", FINISH]
    read_args = actions[0]["properties"]["args"]
    assert read_args["required"] == ["path"] and read_args["additionalProperties"] is False
    assert "$defs" not in str(schema)


def test_extract_json_prefers_whole_then_fenced() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('text {"a": {"b": "}"}} tail') == {"a": {"b": "}"}}
    assert extract_json("nothing") is None

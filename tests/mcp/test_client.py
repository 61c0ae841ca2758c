"""McpTools against a real stdio MCP server process (tests/mcp/servers/echo_server.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mimiverse.agent.toolkit import build_tool_context
from mimiverse.agent.tools.base import Registry
from mimiverse.mcp.client import McpTools, tool_name
from mimiverse.settings import McpServerSettings, Settings

ECHO_SERVER = Path(__file__).parent / "servers" / "echo_server.py"


def echo(name: str = "echo") -> McpServerSettings:
    return McpServerSettings(name=name, command=[sys.executable, str(ECHO_SERVER)], timeout_s=30)


async def test_external_tools_join_the_registry_and_forward_calls(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(mcp_servers=[echo()])
    ctx = build_tool_context(settings, tmp_path, session_id="t")
    registry = Registry()
    async with McpTools(settings) as external:
        assert external.unavailable == {}
        assert external.register(registry) == ["echo__echo", "echo__add", "echo__fail"]

        echo_tool, add_tool = registry.get("echo__echo"), registry.get("echo__add")
        assert not echo_tool.mutates  # the server marks it readOnlyHint
        assert add_tool.mutates  # no hint: assume it changes things
        assert echo_tool.description == "Say ``text`` back."
        assert add_tool.parameters()["required"] == ["a", "b"]
        assert registry.specs(["echo__add"])[0]["function"]["name"] == "echo__add"

        said = await registry.call("echo__echo", {"text": "hello"}, ctx)
        assert (said.ok, said.text) == (True, "hello")
        summed = await registry.call("echo__add", {"a": 2, "b": 40}, ctx)
        assert (summed.ok, summed.text) == (True, "42")
        assert summed.data["structured"] == {"result": 42}

        wrong = await registry.call("echo__add", {"a": "two"}, ctx)
        assert not wrong.ok
        assert wrong.text.startswith("error: add on the MCP server 'echo':")
        assert "b" in wrong.text and "Field required" in wrong.text

        failed = await registry.call("echo__fail", {"reason": "no"}, ctx)
        assert not failed.ok and "fail on the MCP server 'echo'" in failed.text
    closed = await registry.call("echo__echo", {"text": "late"}, ctx)
    assert not closed.ok and "unavailable" in closed.text


async def test_a_server_that_fails_is_reported_and_the_others_still_work(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    crash = "import sys; sys.stderr.write('config missing: set ECHO_KEY\\n'); sys.exit(3)"
    settings = make_settings(
        mcp_servers=[
            McpServerSettings(name="ghost", command=["/nonexistent/mcp-server"]),
            McpServerSettings(name="crash", command=[sys.executable, "-c", crash], timeout_s=20),
            McpServerSettings(name="nothing"),
            echo(),
            echo(),  # a second server with the same name
        ]
    )
    ctx = build_tool_context(settings, tmp_path, session_id="t")
    async with McpTools(settings) as external:
        assert set(external.unavailable) == {"ghost", "crash", "nothing", "echo"}
        assert "command not found: /nonexistent/mcp-server" in external.unavailable["ghost"]
        assert "config missing: set ECHO_KEY" in external.unavailable["crash"]
        assert "set command" in external.unavailable["nothing"]
        assert (
            "same name" in external.unavailable["echo"]
            or "has this name" in (external.unavailable["echo"])
        )
        registry = Registry()
        external.register(registry)
        assert registry.names() == ["echo__echo", "echo__add", "echo__fail"]
        assert (await registry.call("echo__echo", {"text": "ok"}, ctx)).text == "ok"


async def test_a_server_that_never_answers_times_out(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    settings = make_settings(
        mcp_servers=[McpServerSettings(name="silent", command=silent, timeout_s=1)]
    )
    async with McpTools(settings) as external:
        assert "no answer within 1 s" in external.unavailable["silent"]
        assert external.tools == []


def test_tool_names_are_safe_for_tool_calling_apis() -> None:
    assert tool_name("git hub", "create.issue") == "git_hub__create_issue"
    assert len(tool_name("s" * 40, "t" * 40)) == 64


async def test_an_error_in_the_body_is_not_wrapped(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(KeyError):
        async with McpTools(make_settings(mcp_servers=[echo()])):
            raise KeyError("mine")

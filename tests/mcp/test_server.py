"""The MCP server's handlers, driven in-process by the SDK's own client over a test registry."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from mcp import Client, MCPError
from mimiverse.agent.changes import ChangeManager
from mimiverse.agent.store import AgentStore
from mimiverse.agent.toolkit import STORE_FILE
from mimiverse.agent.tools.base import Registry, Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.mcp.server import create_server
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace

APP = "def greet(name):\n    return 'hello ' + name\n"


class Shout(Tool):
    """A read-only tool."""

    name: ClassVar[str] = "shout"
    description: ClassVar[str] = "Say the text back in capitals."

    class Args(ToolArgs):
        text: str = Field(description="What to shout.")
        times: int = Field(default=1, ge=1, description="How many times.")

    async def run(self, args: Shout.Args, ctx: ToolContext) -> ToolResult:
        loud = " ".join([args.text.upper()] * args.times)
        return ToolResult(text=loud, data={"loud": loud, "session": ctx.session_id})


class Rewrite(Tool):
    """A mutating edit tool: stages a whole-file write on the session's draft."""

    name: ClassVar[str] = "rewrite"
    description: ClassVar[str] = "Replace a file's content (staged as a proposal)."
    mutates: ClassVar[bool] = True

    class Args(ToolArgs):
        path: str = Field(description="File to rewrite.")
        content: str = Field(description="Its new content.")

    async def run(self, args: Rewrite.Args, ctx: ToolContext) -> ToolResult:
        ctx.changes.stage_write(args.path, args.content)
        draft = ctx.changes.draft()
        assert draft is not None
        return ToolResult(text=f"staged {args.path}", changeset_id=draft.id)


class Broken(Tool):
    """A tool with a bug."""

    name: ClassVar[str] = "broken"
    description: ClassVar[str] = "Always raises."

    class Args(ToolArgs):
        pass

    async def run(self, args: ToolArgs, ctx: ToolContext) -> ToolResult:
        raise RuntimeError("bug in the tool")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project with a source file, an ignored file and a binary file."""
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(APP)
    (root / "notes.md").write_text("# Notes\n")
    (root / ".gitignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("ignored\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (tmp_path / "outside.txt").write_text("not yours\n")
    return root


@pytest.fixture
def connect(project: Path, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """``async with connect(**settings) as client``: our server, in-process, over a test registry."""

    def factory(mode: str = "auto", **values: Any) -> Client:
        settings = make_settings(**values)
        registry = Registry([Shout(), Rewrite(), Broken()])
        return Client(create_server(settings, project, registry=registry), mode=mode)

    return factory


async def test_lists_every_tool_with_schema_and_read_only_hint(
    connect: Callable[..., Client],
) -> None:
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"shout", "rewrite", "broken"}
        assert tools["shout"].description == Shout.description
        assert tools["shout"].input_schema == Shout.parameters()
        assert tools["shout"].input_schema["properties"]["text"]["description"] == "What to shout."
        assert tools["shout"].annotations is not None
        assert tools["shout"].annotations.read_only_hint is True
        assert tools["rewrite"].annotations is not None
        assert tools["rewrite"].annotations.read_only_hint is False


async def test_calls_a_tool_and_returns_text_and_structured_content(
    connect: Callable[..., Client],
) -> None:
    async with connect() as client:
        result = await client.call_tool("shout", {"text": "hi", "times": 2})
        assert not result.is_error
        assert result.content[0].type == "text"
        assert result.content[0].text == "HI HI"
        assert result.structured_content is not None
        assert result.structured_content["loud"] == "HI HI"
        assert result.structured_content["session"].startswith("mcp-")


async def test_invalid_arguments_are_a_tool_error_naming_the_field(
    connect: Callable[..., Client],
) -> None:
    async with connect() as client:
        result = await client.call_tool("shout", {"times": 0, "loudness": 3})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("error: invalid arguments for shout:")
        assert "text: Field required" in text
        assert "times:" in text
        assert "loudness: Extra inputs are not permitted" in text
        assert "Expected {text: string, times?: integer}" in text


async def test_unknown_tool_lists_the_known_ones(connect: Callable[..., Client]) -> None:
    async with connect() as client:
        result = await client.call_tool("shuot", {})
        assert result.is_error
        assert "no tool named 'shuot'" in result.content[0].text  # type: ignore[union-attr]
        assert "shout" in result.content[0].text  # type: ignore[union-attr]


async def test_a_tool_bug_is_reported_and_the_server_keeps_serving(
    connect: Callable[..., Client],
) -> None:
    async with connect() as client:
        result = await client.call_tool("broken", {})
        assert result.is_error
        assert "bug in the tool" in result.content[0].text  # type: ignore[union-attr]
        assert not (await client.call_tool("shout", {"text": "still here"})).is_error


async def test_an_edit_comes_back_as_a_proposal_and_disk_is_unchanged(
    connect: Callable[..., Client], project: Path, make_settings: Callable[..., Settings]
) -> None:
    async with connect() as client:
        result = await client.call_tool("rewrite", {"path": "src/app.py", "content": "x = 1\n"})
        assert not result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "proposed changeset" in text and "(not applied" in text
        assert (project / "src" / "app.py").read_text() == APP
        assert result.structured_content is not None
        changeset_id = result.structured_content["changeset"]["id"]
        assert f"/api/agent/changesets/{changeset_id}/approve" in text
        assert result.structured_content["changeset"]["status"] == "proposed"
        store = AgentStore(make_settings().data_dir / STORE_FILE)
        try:
            changeset = ChangeManager(Workspace(project), store).get(changeset_id)
            assert changeset.status == "proposed"
            assert changeset.session_id.startswith("mcp-")
            assert [f.path for f in changeset.files] == ["src/app.py"]
        finally:
            store.close()


async def test_auto_approve_applies_the_edit(connect: Callable[..., Client], project: Path) -> None:
    async with connect(agent_auto_approve=True) as client:
        result = await client.call_tool("rewrite", {"path": "src/app.py", "content": "x = 1\n"})
    assert not result.is_error
    assert "applied changeset" in result.content[0].text  # type: ignore[union-attr]
    assert (project / "src" / "app.py").read_text() == "x = 1\n"


async def test_project_files_are_resources_honouring_gitignore(
    connect: Callable[..., Client],
) -> None:
    async with connect() as client:
        listed = {r.name: r for r in (await client.list_resources()).resources}
        assert "src/app.py" in listed and "notes.md" in listed
        assert "secret.txt" not in listed and "logo.png" not in listed
        assert listed["src/app.py"].uri == "mimiverse://files/src/app.py"
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["mimiverse://files/{+path}"]

        read = await client.read_resource("mimiverse://files/src/app.py")
        assert read.contents[0].text == APP  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mimiverse://files/../outside.txt", "outside the project"),
        ("mimiverse://files/logo.png", "binary"),
        ("mimiverse://files/missing.py", "no file or directory 'missing.py'"),
        ("mimiverse://files/src", "not a file"),
        ("https://example.com/x", "unknown resource URI"),
    ],
)
async def test_reading_a_bad_resource_is_an_mcp_error(
    connect: Callable[..., Client], uri: str, message: str
) -> None:
    async with connect() as client:
        with pytest.raises(MCPError, match=message):
            await client.read_resource(uri)


async def test_prompts_come_from_the_data_files(connect: Callable[..., Client]) -> None:
    async with connect() as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert {"fix_failing_tests", "explain_code", "review_changes"} <= set(prompts)
        explain_args = {a.name: a.required for a in prompts["explain_code"].arguments or []}
        assert explain_args == {"path": True, "symbol": False}

        got = await client.get_prompt("explain_code", {"path": "src/app.py"})
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert "`src/app.py`" in text and "the whole file" in text

        with pytest.raises(MCPError, match="needs the argument 'path'"):
            await client.get_prompt("explain_code", {})


async def test_the_handshake_era_works_too(connect: Callable[..., Client]) -> None:
    async with connect(mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "mimiverse"
        assert (await client.call_tool("shout", {"text": "old"})).content[0].text == "OLD"  # type: ignore[union-attr]

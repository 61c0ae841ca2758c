"""External MCP servers' tools for the agent: ``<server>__<tool>`` in the tool registry.

``McpTools(settings)`` connects to every ``[[mcp_servers]]`` entry at once (a stdio command
or a streamable-HTTP URL), lists its tools and wraps each as a ``Tool`` whose calls are
forwarded with the server's timeout. A server that fails to start or answer is logged and
listed in ``unavailable``; the others work as usual::

    async with McpTools(settings) as external:
        external.register(registry)
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO, cast

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict

from mcp import Client
from mimiverse.agent.tools.base import Registry, Tool, ToolArgs, ToolContext, ToolResult
from mimiverse.errors import ToolError
from mimiverse.settings import McpServerSettings, Settings

log = logging.getLogger(__name__)

SEPARATOR = "__"
"""Between a server's name and its tool's name in the names the agent sees."""
STDERR_TAIL = 2000
"""Characters of a failed stdio server's stderr quoted in its ``unavailable`` reason."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """``<server>__<tool>``, limited to the characters and length tool-calling APIs accept."""
    return _UNSAFE.sub("_", f"{server}{SEPARATOR}{tool}")[:64]


class RemoteArgs(ToolArgs):
    """Arguments of a remote tool: passed through as given; the server validates them."""

    model_config = ConfigDict(extra="allow")


class RemoteTool(Tool):
    """Base of the tools that forward to an external MCP server (one subclass per tool)."""

    Args: ClassVar[type[ToolArgs]] = RemoteArgs
    server: ClassVar[str]
    remote_name: ClassVar[str]
    schema: ClassVar[dict[str, Any]]

    def __init__(self, connection: McpConnection) -> None:
        self.connection = connection

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The server's JSON schema, as it sent it."""
        return cls.schema

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        arguments = args.model_dump() if isinstance(args, ToolArgs) else dict(args)
        return await self.connection.call(self.remote_name, arguments)


def remote_tool(connection: McpConnection, remote: types.Tool) -> RemoteTool:
    """A ``Tool`` for ``remote``, served by ``connection``."""
    annotations = remote.annotations
    read_only = annotations is not None and annotations.read_only_hint is True
    schema = dict(remote.input_schema) or {"type": "object"}
    name = tool_name(connection.name, remote.name)
    cls = type(
        f"Remote_{name}",
        (RemoteTool,),
        {
            "name": name,
            "description": remote.description
            or remote.title
            or f"{remote.name} (from the MCP server {connection.name})",
            "mutates": not read_only,
            "server": connection.name,
            "remote_name": remote.name,
            "schema": schema,
        },
    )
    tool: RemoteTool = cls(connection)
    return tool


@dataclass
class McpConnection:
    """One external server: its session while connected, its tools, or why it is unavailable."""

    config: McpServerSettings
    client: Client | None = None
    tools: list[RemoteTool] = field(default_factory=list)
    error: str = ""
    ready: anyio.Event = field(default_factory=anyio.Event)
    closing: anyio.Event = field(default_factory=anyio.Event)

    @property
    def name(self) -> str:
        """The server's name from settings (its tools' namespace)."""
        return self.config.name

    async def serve(self) -> None:
        """Connect, list the tools, and hold the connection open until ``closing`` is set.

        Runs in its own task, so the SDK's task groups are entered and left in one task.
        Never raises (except cancellation): failures become ``error``.
        """
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stderr:
            try:
                with anyio.fail_after(self.config.timeout_s) as deadline:
                    async with contextlib.AsyncExitStack() as stack:
                        client = await stack.enter_async_context(
                            self._client(stack, cast(TextIO, stderr))
                        )
                        listed = await _list_all(client)
                        deadline.deadline = math.inf  # connected: no limit from here on
                        self.client = client
                        self.tools = [remote_tool(self, t) for t in listed]
                        log.info("MCP server %r: %d tools", self.name, len(self.tools))
                        self.ready.set()
                        await self.closing.wait()
            except Exception as exc:
                self.error = _explain(self.config, exc, _tail(cast(TextIO, stderr)))
                log.warning("MCP server %r is unavailable: %s", self.name, self.error)
            finally:
                self.client = None
                self.ready.set()

    def _client(self, stack: contextlib.AsyncExitStack, stderr: TextIO) -> Client:
        cfg = self.config
        if cfg.command and cfg.url:
            raise ValueError("set either command or url, not both")
        if cfg.command:
            params = StdioServerParameters(
                command=cfg.command[0], args=cfg.command[1:], env=cfg.env
            )
            return Client(stdio_client(params, errlog=stderr), read_timeout_seconds=cfg.timeout_s)
        if cfg.url:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(
                headers=cfg.headers, timeout=httpx2.Timeout(30.0, read=max(cfg.timeout_s, 30.0))
            )
            stack.push_async_callback(http.aclose)
            transport = streamable_http_client(cfg.url, http_client=http)
            return Client(transport, read_timeout_seconds=cfg.timeout_s)
        raise ValueError("set command (a stdio server) or url (a streamable-HTTP server)")

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call the server's tool ``name``; transport failures raise ToolError."""
        where = f"{name} on the MCP server {self.name!r}"
        if self.client is None:
            raise ToolError(f"{where} is unavailable: {self.error or 'not connected'}")
        try:
            result = await self.client.call_tool(
                name, arguments, read_timeout_seconds=self.config.timeout_s
            )
        except MCPError as exc:
            raise ToolError(f"{where} failed: {exc.message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            raise ToolError(f"{where} failed: the connection is closed ({exc!r})") from None
        text = _text(result.content)
        data: dict[str, Any] = {"server": self.name, "tool": name}
        if result.structured_content is not None:
            data["structured"] = result.structured_content
        if result.is_error:
            return ToolResult(text=f"error: {where}: {text}", ok=False, data=data)
        return ToolResult(text=text, data=data)


class McpTools:
    """Connections to every configured MCP server, open while the ``async with`` lasts."""

    def __init__(self, settings: Settings | list[McpServerSettings]) -> None:
        configs = settings if isinstance(settings, list) else settings.mcp_servers
        self.connections: list[McpConnection] = []
        self.unavailable: dict[str, str] = {}
        """Server name → why its tools are missing."""
        seen: set[str] = set()
        for config in configs:
            if config.name in seen:
                self.unavailable[config.name] = "a second server has this name; rename one"
                continue
            seen.add(config.name)
            self.connections.append(McpConnection(config))
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> McpTools:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        try:
            for connection in self.connections:
                self._group.start_soon(connection.serve, name=f"mcp:{connection.name}")
            for connection in self.connections:
                await connection.ready.wait()
                if connection.error:
                    self.unavailable[connection.name] = connection.error
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for connection in self.connections:
            connection.closing.set()
        group, self._group = self._group, None
        if group is None:
            return
        if isinstance(exc_info[1], Exception):
            # The connections close on their own: let the caller's error through unwrapped.
            await group.__aexit__(None, None, None)
        else:
            await group.__aexit__(*exc_info)

    @property
    def tools(self) -> list[RemoteTool]:
        """The tools of every connected server."""
        return [tool for connection in self.connections for tool in connection.tools]

    def register(self, registry: Registry) -> list[str]:
        """Add the tools to ``registry``; returns their names (clashing names are skipped)."""
        added = []
        for tool in self.tools:
            if tool.name in registry:
                log.warning("MCP tool %r clashes with a registered tool; skipped", tool.name)
                continue
            registry.register(tool)
            added.append(tool.name)
        return added


async def _list_all(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose cursor never ends cannot hang us
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _text(content: list[types.ContentBlock]) -> str:
    """A tool result's content as the text a model reads."""
    parts = []
    for block in content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            body = res.text if isinstance(res, types.TextResourceContents) else "(binary)"
            parts.append(f"[resource {res.uri}]\n{body}")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{block.type} content, {getattr(block, 'mime_type', '')}]")
    return "\n".join(parts)


def _tail(stream: TextIO) -> str:
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
        stream.seek(0)
        return stream.read()[-STDERR_TAIL:].strip()
    return ""


def _explain(config: McpServerSettings, exc: BaseException, stderr: str) -> str:
    """Why a server could not be used, naming what to check."""
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {config.timeout_s:g} s"
    elif isinstance(exc, FileNotFoundError):
        reason = f"command not found: {config.command[0] if config.command else exc}"
    else:
        reason = "; ".join(_messages(exc)) or type(exc).__name__
    what = " ".join(config.command) if config.command else config.url
    message = f"{reason} (server {what!r})"
    return f"{message}; its stderr ends:\n{stderr}" if stderr else message


def _messages(exc: BaseException) -> Iterator[str]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _messages(inner)
    else:
        yield str(exc) or type(exc).__name__

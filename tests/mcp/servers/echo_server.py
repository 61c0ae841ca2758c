"""A tiny real MCP server on stdio, built with the SDK's server API: ``echo`` and ``add``.

Run as a script (``python echo_server.py``); the client tests start it as a subprocess.
"""

from __future__ import annotations

import mcp_types as types
from mcp.server.mcpserver import MCPServer

server = MCPServer("echo", version="1.0")


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Say ``text`` back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers (annotated as not read-only, to check the mutates flag)."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fail with ``reason``."""
    raise ValueError(reason)


if __name__ == "__main__":
    server.run("stdio")

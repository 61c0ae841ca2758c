"""Project files as MCP resources: ``mimiverse://files/<path>``, listed from the index scan."""

from __future__ import annotations

import mimetypes
import urllib.parse
from collections.abc import Callable

import anyio
import mcp_types as types

from mcp import UriTemplate
from mimiverse.errors import BadRequest
from mimiverse.index.scan import scan
from mimiverse.workspace.files import is_binary, read_bytes
from mimiverse.workspace.paths import Workspace

URI_TEMPLATE = "mimiverse://files/{+path}"
"""RFC 6570 template of a project file's URI; the path is relative to the project root."""
MAX_LISTED = 2000
"""Most files ``resources/list`` returns (the scan's order: sorted by path)."""
MAX_READ_BYTES = 2_000_000
"""Largest file ``resources/read`` returns."""

_TEMPLATE = UriTemplate.parse(URI_TEMPLATE)


def file_uri(path: str) -> str:
    """The resource URI of a project file given by its relative path."""
    return _TEMPLATE.expand({"path": path})


def mime_type(path: str) -> str:
    """A MIME type for ``path``: guessed from its name, text/plain otherwise."""
    return mimetypes.guess_type(path)[0] or "text/plain"


def template() -> types.ResourceTemplate:
    """The one resource template: any project file by path."""
    return types.ResourceTemplate(
        name="project-file",
        title="Project file",
        uri_template=URI_TEMPLATE,
        description="A text file of the project, by its path relative to the project root.",
    )


async def list_files(workspace: Workspace, limit: int = MAX_LISTED) -> list[types.Resource]:
    """The project's text files the index would read (.gitignore honoured), up to ``limit``."""
    result = await anyio.to_thread.run_sync(lambda: scan(workspace.root))
    return [
        types.Resource(
            name=f.path,
            uri=file_uri(f.path),
            mime_type=mime_type(f.path),
            size=f.size,
        )
        for f in result.files[:limit]
    ]


def path_of(workspace: Workspace, uri: str) -> str:
    """The relative path a resource URI names; BadRequest for other URIs."""
    match = _TEMPLATE.match(uri)
    if match is not None and isinstance(match.get("path"), str):
        raw = str(match["path"])
    elif uri.startswith("file://"):
        raw = urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    else:
        raise BadRequest(
            f"unknown resource URI {uri!r}: use mimiverse://files/<path relative to the project root>"
        )
    return workspace.relative(workspace.resolve(raw))


def read_file(
    workspace: Workspace, uri: str, redact: Callable[[str], str]
) -> types.TextResourceContents:
    """A project file's text; refuses paths outside the project, folders, big or binary files."""
    rel = path_of(workspace, uri)
    full = workspace.resolve(rel, must_exist=True)
    if not full.is_file():
        raise BadRequest(f"{rel!r} is not a file: list the resources to see the project's files")
    size = full.stat().st_size
    if size > MAX_READ_BYTES:
        raise BadRequest(
            f"{rel!r} is {size} bytes; resources are served up to {MAX_READ_BYTES}: "
            "read a part of it with a tool instead"
        )
    data = read_bytes(full, beneath=workspace.root)
    if is_binary(data):
        raise BadRequest(f"{rel!r} is a binary file; only text files are served as resources")
    text = redact(data.decode("utf-8", errors="replace"))
    return types.TextResourceContents(uri=file_uri(rel), text=text, mime_type=mime_type(rel))

"""The project's files for the browser IDE: tree, content, create, rename, delete, upload,
and a WebSocket of changes on disk.

Every route takes a ``project`` reference like the codebase routes (a query parameter,
or a body field for JSON bodies; none = the caller's default project); one the caller may
not use is "not found". Paths are relative to the project root and follow the documented
rule (``RELATIVE_PATH_PATTERN``); ``.git`` is hidden. The work is in
:mod:`mimiverse.workspace.project_files`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, UploadFile, WebSocket
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect

from mimiverse.errors import BadRequest, MimiError
from mimiverse.server.openapi import ErrorBody
from mimiverse.server.routes.projects import resolve_project
from mimiverse.workspace.paths import RELATIVE_PATH_PATTERN, check_documented
from mimiverse.workspace.project_files import ProjectFiles
from mimiverse.workspace.watchers import Watchers

router = APIRouter(prefix="/api/files", tags=["files"])
PATH_CHARS = 1000
_RULES = RELATIVE_PATH_PATTERN[: RELATIVE_PATH_PATTERN.rindex("[^")]
_EXCLUDED = RELATIVE_PATH_PATTERN[len(_RULES) + 2 : -3]
_ASCII_NAME = r"[\x20-\x24\x26-\x2e0-9\x3b-\x5b\x5d-\x7e]{0,255}"
_ANY_NAME = "[^/" + _EXCLUDED + "]{0,63}"
_NAME = f"(?:{_ASCII_NAME}|{_ANY_NAME})"
PATH_PATTERN = f"{_RULES}{_NAME}(?:/{_NAME})*$"
"""What a path field accepts: ``RELATIVE_PATH_PATTERN``, with names a file system takes
(255 bytes: up to 255 ASCII characters, or 63 of any kind). '' and '.' are the root."""
_PATH = re.compile(PATH_PATTERN)
PROJECT_HELP = "A project reference ('alice/app', 'team:core/app'); default: your default one."
SHA256_PATTERN = r"^[0-9a-f]{64}$"


def _errors(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=``: statuses answered with the error body, with this route's meaning."""
    return {s: {"model": ErrorBody, "description": text} for s, text in described.items()}


_NOT_FOUND = "No such project (or one you may not use), file or folder."


def check_path(text: str) -> str:
    """``text`` if it follows PATH_PATTERN; else a 400 that says what to change."""
    check_documented(text)
    if not _PATH.fullmatch(text):
        raise BadRequest(
            f"a name in {text[:200]!r} is too long: file systems take names up to 255 "
            "bytes (255 ASCII characters, or 63 with others among them); shorten it"
        )
    return text


def _documented(value: str) -> str:
    try:
        return check_path(value) if value else value
    except MimiError as exc:
        raise ValueError(exc.message) from None


ProjectPath = Annotated[
    str,
    AfterValidator(_documented),
    Field(
        min_length=1,
        max_length=PATH_CHARS,
        description="Relative to the project root, e.g. 'src/app.py'.",
        json_schema_extra={"pattern": PATH_PATTERN},
    ),
]
ProjectRef = Annotated[str | None, Field(default=None, max_length=200, description=PROJECT_HELP)]


def _path_query(description: str) -> Any:
    return Query(min_length=1, max_length=PATH_CHARS, description=description,
                 json_schema_extra={"pattern": PATH_PATTERN})  # fmt: skip


ProjectQuery = Query(default=None, max_length=200, description=PROJECT_HELP)
UploadParam = File(min_length=1, description="The files; their names may hold subfolders.")


class ContentBody(BaseModel):
    """PUT /api/files/content."""

    model_config = ConfigDict(extra="forbid", strict=True)
    project: ProjectRef = None
    path: ProjectPath
    content: str = Field(description="The whole file, UTF-8 text.")
    base_sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="The sha256 the file had when it was opened: when the file on disk has "
        "another, nothing is written and the answer is 409 with current_sha256.",
    )


ONLY_FILES_HAVE_CONTENT: dict[str, Any] = {
    "anyOf": [
        {"properties": {"kind": {"const": "file"}}},
        {"properties": {"content": {"anyOf": [{"type": "null"}, {"maxLength": 0}]}}},
    ]
}
"""CreateBody's schema states the rule ``ProjectFiles.create`` holds it to (a 400 otherwise):
a folder (kind 'dir') comes with no content, or empty content."""


class CreateBody(BaseModel):
    """POST /api/files."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=ONLY_FILES_HAVE_CONTENT
    )
    project: ProjectRef = None
    path: ProjectPath
    kind: Literal["file", "dir"] = "file"
    content: str | None = Field(
        default=None, description="A new file's text (kind 'file'; a folder takes none)."
    )


class RenameBody(BaseModel):
    """POST /api/files/rename."""

    model_config = ConfigDict(extra="forbid", strict=True)
    project: ProjectRef = None
    path: ProjectPath
    to: ProjectPath


def files_of(request: Request, project: str | None) -> ProjectFiles:
    """The files of the project ``project`` names, if the caller may use it (404 otherwise)."""
    found = resolve_project(request, project)
    return ProjectFiles(found.root, max_file_bytes=request.app.state.settings.max_file_bytes)


def _checked(path: str) -> str:
    return check_path(path) if path else path


@router.get("/tree", responses=_errors({404: _NOT_FOUND}))
async def tree(
    request: Request,
    path: str = Query(
        default="",
        max_length=PATH_CHARS,
        description="The folder to list; '' is the project root.",
        json_schema_extra={"pattern": PATH_PATTERN},
    ),
    project: str | None = ProjectQuery,
) -> dict[str, Any]:
    """One folder's entries, folders first, then by name (``.git`` hidden)."""
    files = files_of(request, project)
    rel, entries, truncated = await asyncio.to_thread(files.listing, _checked(path))
    return {"path": rel, "entries": [e.as_dict() for e in entries], "truncated": truncated}


@router.get(
    "/content",
    responses=_errors(
        {
            404: _NOT_FOUND,
            413: "The file is larger than the max_file_bytes setting.",
            415: "The file is binary or not UTF-8 text.",
        }
    ),
)
async def read_content(
    request: Request,
    path: str = _path_query("The file to open."),
    project: str | None = ProjectQuery,
) -> dict[str, Any]:
    """A text file: ``{path, content, sha256, language, size}`` (language: a Monaco id)."""
    files = files_of(request, project)
    found = await asyncio.to_thread(files.read, _checked(path))
    return found.as_dict()


@router.put(
    "/content",
    responses=_errors(
        {
            404: _NOT_FOUND,
            409: "The file changed on disk since it was opened (current_sha256 says to what), "
            "or a folder is in the way; nothing was written.",
            413: "The content is larger than the max_file_bytes setting.",
        }
    ),
)
async def write_content(body: ContentBody, request: Request) -> dict[str, Any]:
    """Save a file atomically (made, with its folders, when missing): ``{path, sha256}``."""
    files = files_of(request, body.project)
    rel, sha = await asyncio.to_thread(files.write, body.path, body.content, body.base_sha256)
    return {"path": rel, "sha256": sha}


@router.post(
    "",
    status_code=201,
    responses=_errors(
        {
            404: _NOT_FOUND,
            409: "Something exists at that path already, or a file is in the way.",
            413: "The content is larger than the max_file_bytes setting.",
        }
    ),
)
async def create(body: CreateBody, request: Request) -> dict[str, Any]:
    """A new file or folder (missing folders on the way are made): ``{path, kind, sha256?}``."""
    files = files_of(request, body.project)
    return await asyncio.to_thread(files.create, body.path, body.kind, body.content)


@router.post(
    "/rename",
    responses=_errors(
        {404: _NOT_FOUND, 409: "Something exists at 'to' already, or a file is in the way."}
    ),
)
async def rename(body: RenameBody, request: Request) -> dict[str, Any]:
    """Move a file or folder: ``{path, to}``."""
    files = files_of(request, body.project)
    rel, to = await asyncio.to_thread(files.rename, body.path, body.to)
    return {"path": rel, "to": to}


@router.delete(
    "",
    responses=_errors({404: _NOT_FOUND, 409: "The folder is not empty: send recursive=true."}),
)
async def delete(
    request: Request,
    path: str = _path_query("The file or folder to delete."),
    recursive: bool = Query(default=False, description="Delete a folder with its contents."),
    project: str | None = ProjectQuery,
) -> dict[str, Any]:
    """Delete a file, link or folder: ``{path}``."""
    files = files_of(request, project)
    rel = await asyncio.to_thread(files.delete, _checked(path), recursive=recursive)
    return {"path": rel}


@router.post(
    "/upload",
    status_code=201,
    responses=_errors(
        {
            404: _NOT_FOUND,
            409: "A file of that name exists (nothing was uploaded): send overwrite=true.",
        }
    ),
)
async def upload(
    request: Request,
    files: list[UploadFile] = UploadParam,
    dir: str = Query(
        default="",
        max_length=PATH_CHARS,
        description="The folder to put them in; '' is the project root.",
        json_schema_extra={"pattern": PATH_PATTERN},
    ),
    overwrite: bool = Query(default=False, description="Replace files that exist."),
    project: str | None = ProjectQuery,
) -> dict[str, Any]:
    """Store uploaded files (the request is bounded by max_body_bytes): ``{paths}``."""
    target = files_of(request, project)
    folder = _checked(dir)
    uploads = []
    for item in files:
        if not item.filename:
            raise BadRequest("an uploaded part has no file name: send each file with its name")
        uploads.append((item.filename, await item.read()))
    paths = await asyncio.to_thread(target.upload, folder, uploads, overwrite=overwrite)
    return {"paths": paths}


# --- changes on disk ---------------------------------------------------------------------------


def watchers_of(app: Any) -> Watchers:
    """The app's watchers, in the running event loop (made on first use)."""
    watchers: Watchers | None = getattr(app.state, "file_watchers", None)
    if watchers is None or watchers.loop is not asyncio.get_running_loop():
        watchers = Watchers()
        app.state.file_watchers = watchers
    return watchers


@contextlib.asynccontextmanager
async def watch_lifespan(app: Any) -> Any:
    """Stop the file watches when the app stops."""
    try:
        yield
    finally:
        watchers: Watchers | None = getattr(app.state, "file_watchers", None)
        app.state.file_watchers = None
        if watchers is not None and watchers.loop is asyncio.get_running_loop():
            await watchers.close()


@router.websocket("/watch")
async def watch(websocket: WebSocket, project: str | None = ProjectQuery) -> None:
    """Changes on disk as ``{"type": "changes", "changes": [{"change", "path"}]}``;
    ``{"type": "resync"}`` when too many came at once to list (reload the tree).

    A project the caller may not use gets the not-found error and close code 4404.
    """
    await websocket.accept()
    try:
        found = resolve_project(websocket, project)
    except MimiError as exc:
        await websocket.send_json(exc.to_dict())
        await websocket.close(code=4404)
        return
    async with watchers_of(websocket.app).subscribe(found.root) as subscriber:
        reader = asyncio.create_task(_drain(websocket))
        try:
            while True:
                changes = asyncio.ensure_future(subscriber.next())
                await asyncio.wait({changes, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    changes.cancel()
                    return
                try:
                    batch = changes.result()
                except EOFError:
                    await websocket.close(code=1001)
                    return
                if batch is None:
                    await websocket.send_json({"type": "resync"})
                else:
                    await websocket.send_json(
                        {"type": "changes", "changes": [c.as_dict() for c in batch]}
                    )
        except WebSocketDisconnect:
            return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

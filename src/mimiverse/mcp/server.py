"""The MCP server: the agent's tool registry, the project's files and our prompts.

One ``Server`` (the SDK's low-level server) serves stdio (``mimiverse mcp``: one project,
the ``root`` it is built for) and streamable HTTP (``/mcp`` on ``mimiverse serve``: the
project the endpoint chose for each HTTP request and left in its scope state under
``PROJECT_STATE``, with the caller under ``"principal"``). Each MCP session gets its own
``ToolContext`` and session id, so drafts never mix; edits come back as proposed
changesets that a person approves in Mimiverse, unless ``agent_auto_approve`` is on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from starlette.requests import Request

from mimiverse import __version__
from mimiverse.accounts.principal import LOCAL_USER_ID, Principal
from mimiverse.agent.tools.base import Registry, ToolContext, ToolResult
from mimiverse.errors import BadRequest, Forbidden, MimiError
from mimiverse.mcp import prompt_library, resources
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace
from mimiverse.workspace.roots import LOCAL_OWNER, Project

if TYPE_CHECKING:
    from mimiverse.agent.changes import Changeset
    from mimiverse.agent.store import AgentStore
    from mimiverse.gateway.service import Gateway
    from mimiverse.index.indexer import Indexer

log = logging.getLogger(__name__)

ContextFactory = Callable[[str, Path], ToolContext]
"""Builds the ToolContext of one MCP session from its session id and project root."""
IndexerFor = Callable[[Path], "Indexer | None"]
"""The code index of a project root, if the server keeps one for it."""

MAX_SESSIONS = 256
"""MCP sessions whose ToolContext is kept; the least recently used beyond this is dropped."""
SESSION_HEADER = "mcp-session-id"
PROJECT_STATE = "mcp_project"
"""Key of the chosen :class:`Project` in an HTTP request's ``scope["state"]``."""

_RULES = (
    "Paths are relative to the project root. Edits are not written at once: each edit tool "
    "call returns a proposed changeset that a person approves in Mimiverse. Command tools "
    "run in a sandbox without network."
)
INSTRUCTIONS = "Mimiverse tools for the project at {root}. " + _RULES
HTTP_INSTRUCTIONS = (
    "Mimiverse tools for one of your projects: the one named by ?project=<owner>/<name> on "
    "the MCP URL or the X-Mimi-Project header, else your default project. " + _RULES
)


@dataclass(frozen=True)
class _Where:
    """The project and caller one MCP request works for."""

    root: Path
    user_id: str
    username: str
    project: str
    """The project's reference: ``alice/app``, ``local/<folder>``."""


@dataclass
class _Session:
    context: ToolContext
    where: _Where
    title: str = "MCP"
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    """Held by mutating calls, so an edit and its proposal are never interleaved."""
    recorded: bool = False
    """Whether the agent store has a session row (needed to approve its changesets)."""


class McpServer:
    """Our handlers around the SDK's low-level ``Server`` (``.server``)."""

    def __init__(
        self,
        settings: Settings,
        root: str | Path | None,
        *,
        registry: Registry | None = None,
        make_context: ContextFactory | None = None,
        gateway: Gateway | None = None,
        indexer: IndexerFor | None = None,
        prompts: Mapping[str, prompt_library.PromptFile] | None = None,
    ) -> None:
        self.settings = settings
        self.workspace = Workspace(root) if root is not None else None
        """The project of connections without HTTP requests (stdio); None serves HTTP only."""
        self._registry = registry
        self._make_context = make_context
        self._gateway = gateway
        self._indexer = indexer
        self._store: AgentStore | None = None
        self.prompts = dict(prompts) if prompts is not None else prompt_library.load_prompts()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._own_key = uuid.uuid4().hex[:12]
        """The session of a connection without an HTTP session (stdio, in-process)."""
        self.server: Server[None] = Server(
            "mimiverse",
            version=__version__,
            title="Mimiverse",
            instructions=INSTRUCTIONS.format(root=self.workspace.root)
            if self.workspace is not None
            else HTTP_INSTRUCTIONS,
            lifespan=self._lifespan,
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_resource_templates,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )

    @property
    def registry(self) -> Registry:
        """The tools served: the given registry, else the default one (built on first use)."""
        if self._registry is None:
            from mimiverse.agent.tools import default_registry

            self._registry = default_registry()
        return self._registry

    # --- sessions -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _server: Server[None]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            self._sessions.clear()
            if self._store is not None:
                self._store.close()
                self._store = None

    def _where(self, ctx: ServerRequestContext[None, Any]) -> _Where:
        """The project this request works on: the one the HTTP endpoint chose, else ours.

        An HTTP request without a chosen project is refused, never served from ``root``.
        """
        if isinstance(ctx.request, Request):
            state = ctx.request.scope.get("state", {})
            project: Project | None = state.get(PROJECT_STATE)
            principal: Principal | None = state.get("principal")
            if project is None or principal is None:
                raise Forbidden(
                    "no project was chosen for this MCP request: connect through /mcp "
                    "(?project=<owner>/<name> or the X-Mimi-Project header)"
                )
            root = project.root.resolve()
            return _Where(root, principal.user_id, principal.username, project.ref)
        if self.workspace is None:
            raise Forbidden("this MCP server serves HTTP requests only: connect to /mcp")
        root = self.workspace.root
        return _Where(root, LOCAL_USER_ID, LOCAL_USER_ID, f"{LOCAL_OWNER}/{root.name}")

    def _session(self, ctx: ServerRequestContext[None, Any]) -> _Session:
        """This request's MCP session: the HTTP session, else the connection's own."""
        where = self._where(ctx)
        if isinstance(ctx.request, Request):
            key = ctx.request.headers.get(SESSION_HEADER, "")
            if not key:  # a sessionless HTTP request stands alone
                key = uuid.uuid4().hex[:12]
                return _Session(self._new_context(f"mcp-{key}", where.root), where, _title(ctx))
        else:
            key = self._own_key
        session = self._sessions.get(key)
        if session is not None and session.where != where:
            # The endpoint refuses this first; a session never changes hands or projects.
            raise Forbidden(
                "this MCP session belongs to another caller or project: start a new session"
            )
        if session is None:
            session = _Session(self._new_context(f"mcp-{key}", where.root), where, _title(ctx))
            self._sessions[key] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        return session

    def _new_context(self, session_id: str, root: Path) -> ToolContext:
        if self._make_context is not None:
            return self._make_context(session_id, root)
        from mimiverse.agent.toolkit import build_tool_context, open_store

        if self._store is None:
            self._store = open_store(self.settings)
        indexer_for = self._indexer
        return build_tool_context(
            self.settings,
            root,
            store=self._store,
            gateway=self._gateway,
            indexer=(lambda: indexer_for(root)) if indexer_for is not None else None,
            session_id=session_id,
        )

    # --- tools ----------------------------------------------------------------------------

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        return self.registry.get(name).parameters() if name in self.registry else None

    async def _list_tools(
        self, ctx: ServerRequestContext[None, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.parameters(),
                    annotations=types.ToolAnnotations(read_only_hint=not tool.mutates),
                )
                for tool in self.registry
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[None, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name, arguments = params.name, params.arguments or {}
        try:
            session = self._session(ctx)
            mutates = name in self.registry and self.registry.get(name).mutates
            async with session.lock if mutates else contextlib.nullcontext():
                result = await self.registry.call(name, arguments, session.context)
                if result.ok and result.changeset_id is not None:
                    result = self._propose(session, name, result)
        except MimiError as exc:
            result = ToolResult(text=f"error: {name} failed: {exc.message}", ok=False)
        except Exception as exc:  # a bug in a tool: report it, keep serving
            log.exception("MCP tool %r raised", name)
            result = ToolResult(text=f"error: {name} failed unexpectedly: {exc!r}", ok=False)
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)],
            structured_content=_jsonable(result.data),
            is_error=not result.ok,
        )

    def _propose(self, session: _Session, name: str, result: ToolResult) -> ToolResult:
        """Turn the session's draft into a proposal (and apply it when auto-approve is on)."""
        context = session.context
        changes = context.changes
        if not session.recorded:  # so Mimiverse can list, approve and apply its changesets
            store = changes.store
            if store.session(context.session_id) is None:
                where = session.where
                store.create_session(
                    context.session_id,
                    str(context.workspace.root),
                    session.title,
                    {"auto_approve": context.auto_approve, "origin": "mcp"},
                    owner=where.username,
                    project=where.project,
                )
            session.recorded = True
        changeset = changes.propose(title=f"MCP {name}")
        if changeset is None:
            return result
        data = dict(result.data)
        if context.auto_approve:
            changes.decide(changeset.id, all=True)
            applied = changes.apply(changeset.id)
            data["changeset"] = {"id": applied.id, "status": applied.status}
            note = f"applied changeset {applied.id} ({applied.status}) to the files on disk."
        else:
            data["changeset"] = {"id": changeset.id, "status": changeset.status}
            note = _proposal_note(changeset)
        return ToolResult(
            text=f"{result.text}\n\n{note}".strip(),
            ok=True,
            data=data,
            changeset_id=changeset.id,
        )

    # --- resources ------------------------------------------------------------------------

    async def _list_resources(
        self, ctx: ServerRequestContext[None, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        try:
            files = await resources.list_files(Workspace(self._where(ctx).root))
        except MimiError as exc:
            raise _mcp_error(exc) from None
        return types.ListResourcesResult(resources=files)

    async def _list_resource_templates(
        self, ctx: ServerRequestContext[None, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[resources.template()])

    async def _read_resource(
        self, ctx: ServerRequestContext[None, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            context = self._session(ctx).context
            contents = await anyio.to_thread.run_sync(
                resources.read_file, context.workspace, params.uri, context.redact
            )
        except MimiError as exc:
            raise _mcp_error(exc, uri=params.uri) from None
        return types.ReadResourceResult(contents=[contents])

    # --- prompts --------------------------------------------------------------------------

    async def _list_prompts(
        self, ctx: ServerRequestContext[None, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name=p.name,
                    title=p.title,
                    description=p.description,
                    arguments=[
                        types.PromptArgument(
                            name=a.name, description=a.description, required=a.required
                        )
                        for a in p.arguments
                    ],
                )
                for p in self.prompts.values()
            ]
        )

    async def _get_prompt(
        self, ctx: ServerRequestContext[None, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        try:
            prompt = prompt_library.get_prompt(self.prompts, params.name)
            text = prompt.render(params.arguments)
        except MimiError as exc:
            raise _mcp_error(exc, prompt=params.name) from None
        return types.GetPromptResult(
            description=prompt.description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
        )


def create_server(
    settings: Settings,
    root: str | Path | None,
    *,
    registry: Registry | None = None,
    make_context: ContextFactory | None = None,
    gateway: Gateway | None = None,
    indexer: IndexerFor | None = None,
) -> Server[None]:
    """The SDK ``Server`` serving ``registry`` (default: every built-in tool).

    ``root`` is the project of stdio and in-process connections; HTTP requests work on
    the project in their scope state (``PROJECT_STATE``), and ``root=None`` serves those
    only. ``make_context`` builds each session's ToolContext from its session id and
    project root; by default ``build_tool_context`` with one agent store in the data dir.
    """
    return McpServer(
        settings,
        root,
        registry=registry,
        make_context=make_context,
        gateway=gateway,
        indexer=indexer,
    ).server


async def run_stdio(settings: Settings, root: str | Path) -> None:
    """Serve MCP on stdin/stdout until the client closes them (``mimiverse mcp``)."""
    from mcp.server.stdio import stdio_server

    if not Path(root).expanduser().is_dir():
        raise BadRequest(
            f"project root {str(root)!r} is not a folder: pass --root <project folder>"
        )
    server = create_server(settings, root)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _title(ctx: ServerRequestContext[None, Any]) -> str:
    """A session title naming the MCP client, when it said who it is."""
    params = ctx.session.client_params
    return f"MCP: {params.client_info.name}" if params is not None else "MCP"


def _proposal_note(changeset: Changeset) -> str:
    base = f"/api/agent/changesets/{changeset.id}"
    files = ", ".join(f.path for f in changeset.files)
    return (
        f"proposed changeset {changeset.id} (not applied; {changeset.hunk_count} hunks in "
        f"{files}): the files on disk are unchanged until a person approves it in Mimiverse "
        f"(the review panel, or POST {base}/approve then POST {base}/apply)."
    )


def _jsonable(data: dict[str, Any]) -> dict[str, Any] | None:
    """``data`` when it is non-empty and JSON-able (the structured content), else None."""
    if not data:
        return None
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return None
    return data


def _mcp_error(exc: MimiError, **data: str) -> MCPError:
    """A Mimiverse error as the MCP error a client sees (invalid params for caller mistakes)."""
    code = INVALID_PARAMS if exc.status < 500 else INTERNAL_ERROR
    return MCPError(code=code, message=exc.message, data=data or None)

"""Agent sessions for the API and the CLI: create, run, follow, and decide changesets.

``AgentService`` owns the live sessions of one server. Runs happen in background tasks
(one at a time per session); their events go to the session's ``EventLog``. Changeset
decisions from the API (or the CLI's prompt) go through here, which wakes a run waiting
for them. Sessions and changesets survive a restart through the ``AgentStore``.

Every method that finds a session or a changeset takes an :class:`Access`: the API passes
the caller's, so a session on a project the caller may not use is "not found" (the same
answer as for one that does not exist); the CLI passes none and sees everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimiverse.agent.context import History
from mimiverse.agent.events import EventLog
from mimiverse.agent.runtime import AgentRuntime, Outcome, Probe
from mimiverse.agent.session import AgentSession, Usage
from mimiverse.agent.toolkit import build_tool_context, open_store
from mimiverse.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from mimiverse.agent.changes import Changeset
    from mimiverse.agent.store import AgentStore
    from mimiverse.agent.tools.base import Registry
    from mimiverse.gateway.service import Gateway
    from mimiverse.index.indexer import Indexer
    from mimiverse.mcp.client import McpTools
    from mimiverse.settings import Settings

log = logging.getLogger("mimiverse.agent")

IndexerFor = Callable[[Path], "Indexer | None"]


@dataclass(frozen=True)
class Access:
    """Which project folders a caller may use; ``Access()`` allows every one."""

    under: tuple[str, ...] | None = None
    """Folder prefixes holding every root the caller may use (a pre-filter for listings)."""
    rule: Callable[[Path], bool] | None = None
    """The access rule itself, asked of each session's root."""

    def allows(self, root: str | Path) -> bool:
        """Whether the caller may use the project at ``root``."""
        return self.rule is None or self.rule(Path(root))


EVERYONE = Access()
"""No restriction (the CLI, benchmarks, auth=local)."""


def _no_session(session_id: str) -> NotFound:
    return NotFound(f"no agent session {session_id!r}: create one with POST /api/agent/sessions")


def _no_changeset(changeset_id: str) -> NotFound:
    return NotFound(
        f"no changeset {changeset_id!r}: GET /api/agent/changesets lists the ones you may see"
    )


LISTED_FILES = 40
"""Files named in the prompt of a project without an index (small projects: all of them)."""


def _file_listing(root: Path) -> str:
    """The project's files (gitignore-aware), for a model that has not looked around yet."""
    from mimiverse.index.scan import scan

    try:
        files = [f.path for f in scan(root).files]
    except Exception:  # a listing is a help, never a reason to fail a run
        log.exception("listing %s failed", root)
        return ""
    if not files:
        return "The project has no source files yet."
    shown = ", ".join(files[:LISTED_FILES])
    more = (
        f" … and {len(files) - LISTED_FILES} more (use list_dir)"
        if len(files) > LISTED_FILES
        else ""
    )
    return f"Project files: {shown}{more}"


class AgentService:
    """The live agent sessions of one process."""

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway,
        store: AgentStore | None = None,
        *,
        registry: Registry | None = None,
        indexer_for: IndexerFor | None = None,
    ) -> None:
        from mimiverse.agent.tools import default_registry

        self.settings = settings
        self.gateway = gateway
        self.store = store if store is not None else open_store(settings)
        self.registry = registry or default_registry()
        self.indexer_for = indexer_for or (lambda root: None)
        self.sessions: dict[str, AgentSession] = {}
        self.projects: dict[str, str] = {}
        """Session id → the reference of its project ('' for sessions made by path)."""
        self.mcp: McpTools | None = None
        self.mcp_tool_names: list[str] = []
        self.on_applied: Callable[[str, Changeset], None] | None = None
        """Told ``(session id, changeset)`` when a run applies a changeset (the audit log)."""

    async def connect(self) -> None:
        """Connect the external MCP servers in ``mcp_servers`` and add their tools.

        Call ``close()`` from the same task (the SDK's connections are task-bound).
        A server that fails is logged and left out; the others still work.
        """
        if not self.settings.mcp_servers or self.mcp is not None:
            return
        from mimiverse.mcp.client import McpTools

        self.mcp = McpTools(self.settings)
        await self.mcp.__aenter__()
        self.mcp_tool_names = self.mcp.register(self.registry)
        for name, why in self.mcp.unavailable.items():
            log.warning("MCP server %r is unavailable: %s", name, why)

    # --- sessions -----------------------------------------------------------------------

    def create(
        self,
        root: str | Path | None = None,
        title: str = "",
        auto_approve: bool | None = None,
        *,
        owner: str = "",
        project: str = "",
    ) -> AgentSession:
        """A new session on ``root`` (default: the server's project).

        ``owner`` (a user name) and ``project`` (the root's reference) are recorded with it.
        """
        folder = Path(root or self.settings.project_root).expanduser().resolve()
        if not folder.is_dir():
            raise BadRequest(
                f"project folder {str(folder)!r} does not exist: create it or fix the path"
            )
        session_id = f"ses_{uuid.uuid4().hex[:16]}"
        trusted = self.settings.agent_auto_approve if auto_approve is None else auto_approve
        session = self._assemble(session_id, folder, title, trusted)
        self.store.create_session(
            session_id, str(folder), title, session.state(), owner=owner, project=project
        )
        self.sessions[session_id] = session
        self.projects[session_id] = project
        return session

    def _assemble(
        self, session_id: str, root: Path, title: str, auto_approve: bool
    ) -> AgentSession:
        eventlog = EventLog(session_id, self.store)
        ctx = build_tool_context(
            self.settings,
            root,
            store=self.store,
            gateway=self.gateway,
            indexer=lambda: self.indexer_for(root),
            session_id=session_id,
        )
        ctx.auto_approve = auto_approve

        async def on_output(text: str) -> None:
            eventlog.emit("output", text=text)

        ctx.on_output = on_output
        return AgentSession(
            id=session_id,
            root=root,
            title=title,
            log=eventlog,
            changes=ctx.changes,
            ctx=ctx,
            auto_approve=auto_approve,
        )

    def get(self, session_id: str, access: Access = EVERYONE) -> AgentSession:
        """A live session, or one loaded from the store (after a restart).

        NotFound, too, when ``access`` does not allow the session's project.
        """
        live = self.sessions.get(session_id)
        if live is not None:
            if not access.allows(live.root):
                raise _no_session(session_id)
            return live
        row = self.store.session(session_id)
        if row is None or not access.allows(row["root"]):
            raise _no_session(session_id)
        state = row["state"]
        session = self._assemble(
            session_id, Path(row["root"]), row["title"], bool(state.get("auto_approve"))
        )
        session.history = History.from_dict(state.get("history", {}))
        usage = state.get("usage", {})
        session.usage = Usage(
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            int(usage.get("steps", 0)),
            float(usage.get("model_ms", 0.0)),
        )
        session.status = (
            "idle" if row["status"] in ("running", "waiting_approval") else row["status"]
        )
        session.created_at = row["created_at"]
        self.sessions[session_id] = session
        self.projects[session_id] = row["project"]
        return session

    def project_of(self, session_id: str) -> str:
        """The project reference a session was created on ('' when made by path)."""
        if session_id not in self.projects:
            row = self.store.session(session_id)
            self.projects[session_id] = row["project"] if row else ""
        return self.projects[session_id]

    def list_sessions(
        self, access: Access = EVERYONE, limit: int | None = 100
    ) -> list[dict[str, Any]]:
        """Sessions ``access`` allows, newest first (live ones with their current status)."""
        fetch = limit if access.rule is None else None
        rows = self.store.sessions(fetch, under=access.under)
        rows = [r for r in rows if access.allows(r["root"])][:limit]
        for row in rows:
            live = self.sessions.get(row["id"])
            if live is not None:
                row["status"] = live.status
            row.pop("state", None)
        return rows

    # --- runs ---------------------------------------------------------------------------

    def runtime(self, session: AgentSession) -> AgentRuntime:
        """A runtime for one run of ``session``."""
        facts = self._facts(session)
        return AgentRuntime(
            session,
            gateway=self.gateway,
            registry=self.registry,
            settings=self.settings,
            store=self.store,
            facts=facts,
            on_applied=self.on_applied,
        )

    def _facts(self, session: AgentSession) -> str:
        lines = []
        indexer = self.indexer_for(session.root)
        if indexer is not None:
            try:
                repo_map = indexer.symbol_map().repo_map(budget_tokens=600)
            except Exception:  # the map is a help, never a reason to fail a run
                log.exception("repo map failed")
                repo_map = ""
            if repo_map:
                lines.append("Repository map (most referenced definitions):\n" + repo_map)
        else:
            lines.append(_file_listing(session.root))
        memory = self.store.recall(str(session.root))
        if memory:
            lines.append(
                "Known about this project: " + "; ".join(f"{k}: {v}" for k, v in memory.items())
            )
        return "\n\n".join(lines)

    async def run(self, session_id: str, message: str) -> Outcome:
        """Run ``message`` to the end and return how it ended."""
        task = self.start(session_id, message)
        return await task

    def start(
        self, session_id: str, message: str, access: Access = EVERYONE
    ) -> asyncio.Task[Outcome]:
        """Start a run in the background; 409 while one is in progress."""
        session = self.get(session_id, access)
        if not message.strip():
            raise BadRequest("the message is empty: say what the agent should do")
        if session.running:
            raise Conflict(
                f"session {session_id} is still working on its last message: wait for its "
                "session_finished event, or cancel it (POST …/cancel)"
            )
        if not session.title:
            session.title = message.strip().splitlines()[0][:80]
        runtime = self.runtime(session)
        session.task = asyncio.create_task(runtime.run(message), name=f"agent-{session_id}")
        return session.task

    async def cancel(self, session_id: str, access: Access = EVERYONE) -> bool:
        """Cancel the running run, if any."""
        session = self.get(session_id, access)
        task = session.task
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return True

    async def probe_step(self, session_id: str, message: str) -> Probe:
        """One parsed model step for ``message``, executing nothing (benchmarks)."""
        return await self.runtime(self.get(session_id)).probe(message)

    # --- changesets ---------------------------------------------------------------------

    def session_of(self, changeset_id: str, access: Access = EVERYONE) -> AgentSession:
        """The session a changeset belongs to (NotFound as for a missing changeset when
        ``access`` does not allow its project)."""
        data = self.store.get_changeset(changeset_id)
        if data is None:
            raise _no_changeset(changeset_id)
        try:
            return self.get(str(data.get("session_id", "")), access)
        except NotFound:
            raise _no_changeset(changeset_id) from None

    def changeset(self, changeset_id: str, access: Access = EVERYONE) -> Changeset:
        """One changeset."""
        return self.session_of(changeset_id, access).changes.get(changeset_id)

    def changesets(
        self, session_id: str | None = None, access: Access = EVERYONE
    ) -> list[Changeset]:
        """Changesets of one session, or of every session ``access`` allows."""
        if session_id is not None:
            return self.get(session_id, access).changes.list()
        from mimiverse.agent.changes import Changeset

        items = self.store.list_changesets()
        if access is not EVERYONE:
            visible = {r["id"] for r in self.list_sessions(access, limit=None)}
            items = [d for d in items if d.get("session_id") in visible]
        return [Changeset.from_dict(d) for d in items]

    def decide(
        self,
        changeset_id: str,
        *,
        approve: list[str] | None = None,
        reject: list[str] | None = None,
        all: bool | None = None,
        access: Access = EVERYONE,
    ) -> Changeset:
        """Approve or reject hunks; wakes the run waiting for them once all are decided."""
        session = self.session_of(changeset_id, access)
        changeset = session.changes.decide(changeset_id, approve=approve, reject=reject, all=all)
        decided = {h.id: h.status for f in changeset.files for h in f.hunks}
        session.log.emit("changeset_decided", id=changeset_id, hunks=decided, by="user")
        pending = [h for h, status in decided.items() if status == "pending"]
        future = session.decisions.get(changeset_id)
        if not pending and future is not None and not future.done():
            future.set_result(None)
        return changeset

    def apply(self, changeset_id: str, access: Access = EVERYONE) -> Changeset:
        """Apply a decided changeset nobody is waiting on (from MCP or an earlier run)."""
        session = self.session_of(changeset_id, access)
        if changeset_id in session.decisions:
            raise Conflict(
                f"the agent applies {changeset_id} itself once every hunk is decided: "
                "approve or reject the remaining hunks instead"
            )
        changeset = session.changes.apply(changeset_id)
        session.log.emit(
            "changeset_applied", id=changeset_id, status=changeset.status,
            files=[f.path for f in changeset.files],
        )  # fmt: skip
        return changeset

    def undo(self, changeset_id: str, access: Access = EVERYONE) -> Changeset:
        """Undo an applied changeset."""
        session = self.session_of(changeset_id, access)
        changeset = session.changes.undo(changeset_id)
        session.log.emit(
            "changeset_undone", id=changeset_id, files=[f.path for f in changeset.files]
        )
        return changeset

    async def close(self) -> None:
        """Cancel running sessions; disconnect MCP servers."""
        for session in list(self.sessions.values()):
            if session.running:
                await self.cancel(session.id)
        if self.mcp is not None:
            mcp, self.mcp = self.mcp, None
            await mcp.__aexit__(None, None, None)

"""Build the ``ToolContext`` a session's tool calls run in (agent sessions, MCP connections)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mimiverse.agent.store import AgentStore
from mimiverse.agent.tools.base import ToolContext
from mimiverse.errors import SandboxError
from mimiverse.settings import Settings
from mimiverse.workspace.paths import Workspace

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway
    from mimiverse.index.indexer import Indexer

log = logging.getLogger(__name__)

STORE_FILE = "mimiverse.sqlite3"
"""The agent store's database, inside the data dir."""


def open_store(settings: Settings) -> AgentStore:
    """The agent store in the data dir."""
    return AgentStore(settings.data_dir / STORE_FILE)


def build_tool_context(
    settings: Settings,
    root: str | Path,
    *,
    store: AgentStore | None = None,
    gateway: Gateway | None = None,
    indexer: Callable[[], Indexer | None] | None = None,
    session_id: str = "",
) -> ToolContext:
    """Everything a tool needs for ``root``: workspace, changes, sandbox, redaction.

    A sandbox that cannot run here (bubblewrap missing) leaves ``sandbox`` None, so the
    command tools explain the fix instead of the session failing to start.
    """
    from mimiverse.agent.changes import ChangeManager
    from mimiverse.workspace.redact import Redactor
    from mimiverse.workspace.sandbox import Sandbox

    workspace = Workspace(root)
    try:
        sandbox: Sandbox | None = Sandbox.from_settings(settings, workspace.root)
    except SandboxError as exc:
        log.warning("commands are disabled: %s", exc.message)
        sandbox = None
    return ToolContext(
        workspace=workspace,
        settings=settings,
        changes=ChangeManager(workspace, store or open_store(settings), session_id),
        sandbox=sandbox,
        indexer=indexer or (lambda: None),
        gateway=gateway,
        session_id=session_id,
        auto_approve=settings.agent_auto_approve,
        redact=Redactor(),
    )

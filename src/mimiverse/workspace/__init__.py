"""The user's project on disk: safe paths, atomic writes, git, sandboxed commands."""

from mimiverse.workspace.paths import Workspace

__all__ = ["Workspace"]

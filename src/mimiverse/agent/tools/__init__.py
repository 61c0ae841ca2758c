"""The agent's tools, one module per family; ``default_registry`` builds the shared registry."""

from __future__ import annotations

import importlib

from mimiverse.agent.tools.base import Registry, Tool, ToolContext, ToolResult

TOOL_MODULES = ("files", "search", "edit", "run", "git")
"""Modules under ``agent/tools`` that each export ``TOOLS``, a tuple of Tool classes."""


def default_registry() -> Registry:
    """Every built-in tool, registered exactly as third-party tools would be."""
    registry = Registry()
    for name in TOOL_MODULES:
        module = importlib.import_module(f"mimiverse.agent.tools.{name}")
        for tool_class in module.TOOLS:
            registry.register(tool_class())
    return registry


__all__ = ["Registry", "Tool", "ToolContext", "ToolResult", "default_registry"]

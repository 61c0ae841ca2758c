"""Streamable-HTTP MCP at /mcp, behind a bearer token."""

from __future__ import annotations

from fastapi import FastAPI


def mount_mcp(app: FastAPI) -> None:
    """Mount the MCP endpoint on ``app`` (filled in by the MCP work)."""

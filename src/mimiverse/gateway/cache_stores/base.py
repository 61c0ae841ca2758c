"""The cache store interface: bytes in, bytes out, with a TTL, grouped by task.

Keys look like ``mimi:v1:<task>:<sha256hex>``; a store clears and counts one task's
entries by the ``mimi:v1:<task>:`` prefix. Stores may raise anything: ``ResponseCache``
catches store failures and degrades, so stores stay simple.
"""

from __future__ import annotations

import abc

KEY_PREFIX = "mimi:v1:"


def task_prefix(task: str | None = None) -> str:
    """The key prefix shared by every entry of ``task`` (of every task when ``None``)."""
    return f"{KEY_PREFIX}{task}:" if task else KEY_PREFIX


def task_of(key: str) -> str:
    """The task named in ``key``; empty when the key is not in the ``mimi:v1:`` form."""
    if not key.startswith(KEY_PREFIX):
        return ""
    task, sep, _ = key[len(KEY_PREFIX) :].partition(":")
    return task if sep else ""


class CacheStore(abc.ABC):
    """Where cached responses live. ``ttl_s <= 0`` means the entry never expires."""

    name: str = "base"

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None`` when absent or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds."""

    @abc.abstractmethod
    async def clear(self, task: str | None = None) -> int:
        """Delete the entries of ``task`` (all ``mimi:v1:`` entries when ``None``); how many."""

    @abc.abstractmethod
    async def count(self, task: str | None = None) -> int:
        """Live entries of ``task`` (of every task when ``None``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""


class NullStore(CacheStore):
    """The store of a disabled cache: every get misses, every set is dropped."""

    name = "off"

    async def get(self, key: str) -> bytes | None:
        """Always a miss."""
        return None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Drop the value."""

    async def clear(self, task: str | None = None) -> int:
        """Nothing to clear."""
        return 0

    async def count(self, task: str | None = None) -> int:
        """Always empty."""
        return 0

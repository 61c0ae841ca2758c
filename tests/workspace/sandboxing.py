"""Markers shared by the sandbox and terminal tests."""

from __future__ import annotations

import pytest

from mimiverse.workspace.limits import cgroup_parents

needs_cgroups = pytest.mark.skipif(
    cgroup_parents() is None, reason="cgroup v1 memory/pids controllers are not writable here"
)

"""Fixtures shared by the sandbox and terminal tests (both start real bubblewrap)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from mimiverse.workspace.limits import cgroup_parents


@pytest.fixture
def bwrap_installed() -> None:
    """Fail (not skip) without bubblewrap: scripts/setup installs it."""
    if shutil.which("bwrap") is None:
        pytest.fail("bwrap not found: run `apt-get install bubblewrap`", pytrace=False)


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A private parent for this test's cgroups, checked empty and removed after."""
    name = f"mimiverse-test-{uuid.uuid4().hex[:8]}"
    yield name
    for base in (cgroup_parents(name) or {}).values():
        assert not [p for p in base.iterdir() if p.is_dir()], f"cgroups left behind in {base}"
        base.rmdir()

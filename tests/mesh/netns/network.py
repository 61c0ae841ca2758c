"""A small LAN of Linux network namespaces for mesh tests: hosts on a bridge, partitions
made with nftables.

Layout (nothing is added to the host's own network namespace)::

    <lab>-sw   the "switch": bridge br0 with one port p<i> per host
    <lab>-h<i> host i: lo up, eth0 = 10.73.1.<i>/24 (the other end of the veth p<i>)

Namespace names start with ``mvmesh<pid>-`` so a run only ever touches its own, and a run
that died without cleaning up (a SIGKILLed pytest) is found and removed by the next one
(``remove_stale``). ``partition`` and ``drop_one_way`` load one nftables table, ``mvmesh``,
inside the hosts' namespaces; ``heal`` deletes it. Needs root, iproute2 and nftables
(``scripts/setup --dev``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence

PREFIX = "mvmesh"
SUBNET = "10.73.1"
TABLE = "mvmesh"
_OURS = re.compile(rf"^{PREFIX}(\d+)-")


class NetnsError(RuntimeError):
    """An ``ip`` or ``nft`` command failed."""


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a command; its stdout, or NetnsError with its stderr."""
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list``)."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line]


def unavailable() -> str | None:
    """Why namespace tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (CI runs them as root)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: run scripts/setup --dev (iproute2, nftables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        run(["ip", "netns", "add", probe])
        try:  # everything a lab needs: a bridge, a veth pair, an nftables table
            run(["ip", "-n", probe, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", probe, "link", "add", "vp0", "type", "veth", "peer", "name", "vp1"])
            script = f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
            run(["ip", "netns", "exec", probe, "nft", "-f", "-"], stdin=script)
        finally:
            run(["ip", "netns", "del", probe])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot use network namespaces or nftables here: {exc}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone; returns their names."""
    removed = []
    for name in namespaces():
        match = _OURS.match(name)
        if match and not _alive(int(match.group(1))):
            run(["ip", "netns", "del", name])
            removed.append(name)
    return removed


class Lab:
    """``hosts`` namespaces on one bridge; use as a context manager (always torn down)."""

    def __init__(self, hosts: int) -> None:
        if not 1 <= hosts <= 250:
            raise ValueError("a lab has 1 to 250 hosts")
        self.hosts = hosts
        self.name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.switch = f"{self.name}-sw"
        self._made: list[str] = []

    def ns(self, host: int) -> str:
        """The namespace of host ``host`` (1-based)."""
        self._check(host)
        return f"{self.name}-h{host}"

    def address(self, host: int) -> str:
        self._check(host)
        return f"{SUBNET}.{host}"

    def exec_argv(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside host ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def _check(self, host: int) -> None:
        if not 1 <= host <= self.hosts:
            raise ValueError(f"host {host} is not in 1..{self.hosts}")

    # -- lifecycle --------------------------------------------------------------------------

    def up(self) -> Lab:
        """Create the switch and the hosts (removing stale labs of dead runs first)."""
        remove_stale()
        try:
            self._add(self.switch)
            sw = ["ip", "-n", self.switch]
            run([*sw, "link", "set", "lo", "up"])
            run([*sw, "link", "add", "br0", "type", "bridge"])
            run([*sw, "link", "set", "br0", "up"])
            for host in range(1, self.hosts + 1):
                ns = self.ns(host)
                self._add(ns)
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
                port = f"p{host}"
                run([*sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
                run([*sw, "link", "set", port, "master", "br0"])
                run([*sw, "link", "set", port, "up"])
                run(["ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0"])
                run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        except BaseException:
            self.down()
            raise
        return self

    def _add(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        self._made.append(ns)

    def down(self) -> None:
        """Delete every namespace of this lab (their veths and rules go with them)."""
        errors = []
        for ns in reversed(self._made):
            try:
                run(["ip", "netns", "del", ns])
            except NetnsError as exc:
                errors.append(str(exc))
        self._made.clear()
        if errors:
            raise NetnsError("; ".join(errors))

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # -- faults -----------------------------------------------------------------------------

    def _load(self, host: int, input_from: Iterable[int], output_to: Iterable[int]) -> None:
        """Replace host's ``mvmesh`` table: drop packets from / to those hosts."""
        sources = ", ".join(self.address(h) for h in sorted(set(input_from)))
        targets = ", ".join(self.address(h) for h in sorted(set(output_to)))
        rules = [f"add table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
        rules.append("  chain input { type filter hook input priority 0; policy accept;")
        if sources:
            rules.append(f"    ip saddr {{ {sources} }} drop")
        rules.append("  }")
        rules.append("  chain output { type filter hook output priority 0; policy accept;")
        if targets:
            rules.append(f"    ip daddr {{ {targets} }} drop")
        rules.append("  }")
        rules.append("}")
        run(self.exec_argv(host, ["nft", "-f", "-"]), stdin="\n".join(rules) + "\n")

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every host off from the hosts outside its group, both ways, at both ends."""
        sides = [set(g) for g in groups]
        placed = [h for side in sides for h in side]
        if sorted(placed) != list(range(1, self.hosts + 1)):
            raise ValueError("a partition places every host in exactly one group")
        for side in sides:
            others = [h for h in placed if h not in side]
            for host in side:
                self._load(host, others, others)

    def drop_one_way(self, source: int, target: int) -> None:
        """Packets from ``source`` to ``target`` are lost; the other way still works."""
        self._load(source, [], [target])

    def heal(self) -> None:
        """Remove every drop rule."""
        for host in range(1, self.hosts + 1):
            script = f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
            run(self.exec_argv(host, ["nft", "-f", "-"]), stdin=script)

    def rules(self, host: int) -> str:
        """Host's current nftables ruleset (for failure messages)."""
        return run(self.exec_argv(host, ["nft", "list", "ruleset"]))

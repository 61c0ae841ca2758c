"""LAN discovery over mDNS / DNS-SD (zeroconf): announce our node, find the mesh's others.

A device announces ``_mimiverse-mesh._tcp.local.`` with a TXT record of public facts only:
the protocol version, its device id and the mesh id. Discovery only suggests addresses;
trust comes from the handshake, which proves the device key against the roster. Anyone on
the LAN can read (or fake) these records, so they never carry secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import ifaddr
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mimiverse.mesh.transport.node import PATH
from mimiverse.mesh.transport.reports import log

SERVICE_TYPE = "_mimiverse-mesh._tcp.local."
TXT_VERSION = b"1"
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class Announcement:
    """One mesh node on the LAN: who it says it is and where it listens."""

    device_id: str
    mesh_id: str
    port: int
    addresses: tuple[str, ...] = ()

    @property
    def urls(self) -> list[str]:
        """The URLs to dial it at (one per address)."""
        return [f"ws://{f'[{a}]' if ':' in a else a}:{self.port}{PATH}" for a in self.addresses]


def _check_id(kind: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(
            f"{kind} '{value}' cannot go in a TXT record: use 1-64 letters, digits or ._:-"
        )
    return value


def build_properties(device_id: str, mesh_id: str) -> dict[bytes, bytes]:
    """The TXT record: version, device id and mesh id (public facts, never secrets)."""
    return {
        b"v": TXT_VERSION,
        b"dev": _check_id("device id", device_id).encode(),
        b"mesh": _check_id("mesh id", mesh_id).encode(),
    }


def parse_properties(properties: dict[bytes, bytes | None]) -> tuple[str, str] | None:
    """``(device_id, mesh_id)`` from a TXT record, or None if it is not a valid one of ours."""
    if properties.get(b"v") != TXT_VERSION:
        return None
    try:
        device = (properties.get(b"dev") or b"").decode("ascii")
        mesh = (properties.get(b"mesh") or b"").decode("ascii")
    except UnicodeDecodeError:
        return None
    if not (_ID.fullmatch(device) and _ID.fullmatch(mesh)):
        return None
    return device, mesh


def service_name(device_id: str) -> str:
    """Our DNS-SD instance name (a DNS label holds at most 63 bytes)."""
    return f"mimi-{_check_id('device id', device_id)[:48]}.{SERVICE_TYPE}"


def service_info(announcement: Announcement) -> AsyncServiceInfo:
    """The zeroconf record that announces ``announcement``."""
    name = service_name(announcement.device_id)
    return AsyncServiceInfo(
        SERVICE_TYPE,
        name,
        port=announcement.port,
        properties=build_properties(announcement.device_id, announcement.mesh_id),
        addresses=[ipaddress.ip_address(a).packed for a in announcement.addresses],
        server=f"{name.split('.')[0]}.local.",
    )


def announcement_of(info: AsyncServiceInfo) -> Announcement | None:
    """What a resolved record says, or None if it is not a valid mesh record."""
    ids = parse_properties(info.properties)
    if ids is None or not info.port:
        return None
    return Announcement(ids[0], ids[1], info.port, tuple(info.parsed_addresses()))


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (what we announce by default)."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return found


class Discovery:
    """Announce this node and report the same mesh's other nodes as they come and go."""

    def __init__(
        self,
        device_id: str,
        mesh_id: str,
        port: int,
        *,
        on_found: Callable[[Announcement], None],
        on_lost: Callable[[str], None] | None = None,
        interfaces: list[str] | None = None,
        timeout_ms: int = 3000,
    ) -> None:
        self.me = Announcement(
            _check_id("device id", device_id),
            _check_id("mesh id", mesh_id),
            port,
            tuple(interfaces) if interfaces else tuple(lan_addresses()),
        )
        self.on_found = on_found
        self.on_lost = on_lost
        self.interfaces = interfaces  # IPv4 addresses to use; None: every interface
        self.timeout_ms = timeout_ms
        self.found: dict[str, Announcement] = {}
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Register our record and start browsing."""
        self._loop = asyncio.get_running_loop()
        if self.interfaces:
            self._zc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
        else:
            self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        try:
            # a stale record of ours may linger on the LAN after a crash: take a new name
            await self._zc.async_register_service(service_info(self.me), allow_name_change=True)
        except BaseException:
            await self._zc.async_close()
            self._zc = None
            raise
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change]
        )

    async def close(self) -> None:
        """Withdraw our record and stop browsing (idempotent)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        browser, zc, self._browser, self._zc = self._browser, self._zc, None, None
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            await zc.async_unregister_all_services()
            await zc.async_close()

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if self._loop is None:
            return
        if state_change is ServiceStateChange.Removed:
            self._loop.call_soon_threadsafe(self._lost, name)
        else:
            self._loop.call_soon_threadsafe(self._spawn_resolve, name)

    def _spawn_resolve(self, name: str) -> None:
        task = asyncio.create_task(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        if self._zc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        with contextlib.suppress(OSError):
            if not await info.async_request(self._zc.zeroconf, self.timeout_ms):
                return
        found = announcement_of(info)
        if found is None or found.mesh_id != self.me.mesh_id:
            return
        if found.device_id == self.me.device_id or self.found.get(name) == found:
            return
        self.found[name] = found
        try:
            self.on_found(found)
        except Exception:
            log.exception("mesh discovery on_found failed for %s", name)

    def _lost(self, name: str) -> None:
        found = self.found.pop(name, None)
        if found is not None and self.on_lost is not None:
            try:
                self.on_lost(found.device_id)
            except Exception:
                log.exception("mesh discovery on_lost failed for %s", name)

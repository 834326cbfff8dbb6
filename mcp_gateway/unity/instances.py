"""Which Editors exist and how to reach each: discovery over both transports.

stdio: status files (or a pinned host/port) and the TCP bridge. http: the official
MCP for Unity server, which lists the Editors whose plugin registered with its hub. With
`transport: auto` both are looked at; when neither finds an Editor, the error says exactly
what to set in the Editor or in the config.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

from mcp_gateway.unity.answers import UnityError
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.discovery import (
    FRESH_STATUS_S,
    RELOADING_KEEP_S,
    UnityInstance,
    read_status_file,
    resolve_status_dir,
    status_files,
)
from mcp_gateway.unity.operations import Transport
from mcp_gateway.unity.wire import ping


class Finder:
    """Finds Editors and keeps one transport per Editor."""

    def __init__(self, config: UnityConfig) -> None:
        self.config = config
        self.status_dir = resolve_status_dir(config.status_dir)
        self.server_error: Optional[str] = None
        self._transports: dict[str, Transport] = {}
        self._seen_http: dict[str, tuple[float, UnityInstance]] = {}

    async def instances(self) -> list[UnityInstance]:
        """Every Editor found, stdio ones first, one entry per instance id."""
        found: list[UnityInstance] = []
        self.server_error = None
        if self.config.transport in ('auto', 'stdio'):
            found += await self._stdio_instances()
        if self.config.transport in ('auto', 'http'):
            found += await self._http_instances()
        unique: dict[str, UnityInstance] = {}
        for instance in found:
            unique.setdefault(instance.instance_id, instance)
        return list(unique.values())

    def nothing_found_message(self) -> str:
        """What to set so that an Editor is found: the answer when there is none."""
        parts = []
        if self.config.transport in ('auto', 'stdio'):
            where = (f'{self.config.host}:{self.config.port}' if self.config.port
                     else f'no status file in {self.status_dir}')
            parts.append(
                f'stdio: {where} (in the Editor: Window > MCP for Unity, set the transport '
                'to stdio; batch mode also needs UNITY_MCP_ALLOW_BATCH=1; or set '
                'unity.status_dir / unity.port)')
        if self.config.transport in ('auto', 'http'):
            why = self.server_error or 'no Editor registered with it'
            parts.append(
                f'http: {self.config.server_url}: {why} (start the official server: '
                '`mcp-for-unity --transport http --http-url http://127.0.0.1:8080` from PyPI '
                "mcpforunityserver, keep the Editor's transport on HTTP pointing at it, or "
                'set unity.server_url)')
        return 'no Unity Editor found. ' + '; '.join(parts)

    async def transport_for(self, instance: UnityInstance) -> Transport:
        """One transport per Editor; a new one if it moved (port or server changed)."""
        key = instance.instance_id
        current = self._transports.get(key)
        if current is not None and getattr(current, 'instance', None) is not None:
            old = current.instance  # type: ignore[attr-defined]
            if (old.transport, old.host, old.port, old.server_url) != (
                    instance.transport, instance.host, instance.port, instance.server_url):
                await current.aclose()
                current = None
        if current is None:
            if instance.transport == 'http':
                from mcp_gateway.unity.http import HttpUnity
                current = HttpUnity(instance)
            else:
                current = UnityBridge(instance)
            self._transports[key] = current
        return current

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()

    async def _http_instances(self) -> list[UnityInstance]:
        """The server's Editors, plus those seen under RELOADING_KEEP_S ago and now away:
        a domain reload takes the plugin off the hub for a while (shown as `reconnecting`,
        so an operation waits for it instead of failing).
        """
        from mcp_gateway.unity.http import list_server_instances
        now = time.monotonic()
        try:
            listed = await list_server_instances(self.config.server_url)
        except UnityError as exc:
            self.server_error = exc.message
            listed = []
        for instance in listed:
            self._seen_http[instance.instance_id] = (now, instance)
        present = {instance.instance_id for instance in listed}
        for key, (seen, instance) in list(self._seen_http.items()):
            if key in present:
                continue
            if now - seen < RELOADING_KEEP_S:
                listed.append(replace(instance, reason='reconnecting',
                                      status_age_s=now - seen))
            else:
                del self._seen_http[key]
        return listed

    async def _stdio_instances(self) -> list[UnityInstance]:
        if self.config.port is not None:
            return [self._pinned_instance()]
        by_port: dict[int, UnityInstance] = {}
        for path in status_files(self.status_dir):
            instance = read_status_file(path, self.config.host)
            if instance is None or instance.port is None or not await _still_there(instance):
                continue
            known = by_port.get(instance.port)
            if known is None or (instance.status_age_s or 0) < (known.status_age_s or 0):
                by_port[instance.port] = instance
        return sorted(by_port.values(), key=lambda found: found.status_age_s or 0)

    def _pinned_instance(self) -> UnityInstance:
        """The configured host:port, named like discovery names it when a status file matches
        (gateways that find the same Editor in different ways must take the same lease).
        """
        port = self.config.port
        for path in status_files(self.status_dir):
            found = read_status_file(path, self.config.host)
            if found is not None and found.port == port:
                return found
        return UnityInstance(instance_id=self.config.instance or f'{self.config.host}:{port}',
                             transport='stdio', host=self.config.host, port=port)


async def _still_there(instance: UnityInstance) -> bool:
    """A fresh status file is trusted without connecting (connecting would close the
    Editor's current client); an old one only while reloading, or if it answers a ping.
    """
    age = instance.status_age_s or 0.0
    if age < FRESH_STATUS_S:
        return True
    if instance.reloading:
        return age < RELOADING_KEEP_S
    assert instance.host is not None and instance.port is not None
    return await ping(instance.host, instance.port)

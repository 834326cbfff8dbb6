"""The stdio transport: commands to one Editor over its TCP bridge, aware of reloads.

What the Editor does that shapes this (CoplayDev/unity-mcp `StdioBridgeHost.cs`):

- It serves one client at a time: a new connection closes the others. So we keep one
  connection per Editor, reconnect on the next command when it was closed (also after the
  Editor's 30 s idle close), and never probe a healthy Editor just to list it.
- A script compile reloads the Editor's domain: the connection drops and its status file
  says `reloading` (or is missing). Re-sending a refresh can start another reload
  (unity-mcp #555, #577), so commands that change state are never re-sent once out.
- `before_send` runs right before a command's bytes go out: the lease check, so a holder
  that stalled and lost its lease never acts on the Editor.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from mcp_gateway.unity.answers import (
    UnityCommandError,
    UnityConnectionLost,
    UnityError,
    UnityReloading,
)
from mcp_gateway.unity.discovery import RELOADING_KEEP_S, UnityInstance, read_status_file
from mcp_gateway.unity.wire import UnityConnection

COMMAND_TIMEOUT_S = 30.0
STATUS_POLL_S = 0.25
RELOADING_RETRY_AFTER_MS = 2000

BeforeSend = Callable[[], None]


@dataclass
class RefreshOutcome:
    """What a refresh request did. `dropped`: the connection went away after the send."""

    result: dict[str, Any] = field(default_factory=dict)
    dropped: bool = False


def unwrap(name: str, response: dict[str, Any]) -> dict[str, Any]:
    """The tool result inside a bridge envelope; UnityCommandError for any failure."""
    if response.get('status') == 'success':
        result = response.get('result')
        if not isinstance(result, dict):
            return {'success': True, 'data': result}
        if result.get('success') is False:
            raise UnityCommandError(name, result)
        return result
    raise UnityCommandError(name, response)


class UnityBridge:
    """The stdio transport for one Editor: one reused connection."""

    transport = 'stdio'

    def __init__(self, instance: UnityInstance, *,
                 command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        assert instance.host is not None and instance.port is not None
        self.instance = instance
        self.command_timeout_s = command_timeout_s
        self._connection: Optional[UnityConnection] = None
        self._lock = asyncio.Lock()

    async def command(self, name: str, params: Optional[dict[str, Any]] = None, *,
                      idempotent: bool = True, reload_wait_s: float = 0.0,
                      timeout_s: Optional[float] = None,
                      before_send: Optional[BeforeSend] = None) -> dict[str, Any]:
        """Run one Editor command and return its tool result (`{"success": true, ...}`).

        While the Editor reloads, waits up to `reload_wait_s` before sending, else raises
        UnityReloading. An idempotent command whose connection drops is sent once more on
        a fresh connection; any other raises UnityConnectionLost (outcome unknown).
        """
        request = {'type': name, 'params': params or {}}
        timeout_s = timeout_s or self.command_timeout_s
        async with self._lock:
            attempts = 2 if idempotent else 1
            for attempt in range(attempts):
                await self._wait_while_reloading(reload_wait_s)
                connection = await self._connect(verify=not idempotent)
                if before_send is not None:
                    before_send()
                try:
                    response = await connection.request(request, timeout_s)
                except UnityConnectionLost:
                    self._connection = None
                    if attempt + 1 == attempts:
                        raise
                    continue
                return unwrap(name, response)
            raise AssertionError('unreachable')

    async def refresh(self, params: dict[str, Any], reload_wait_s: float,
                      before_send: Optional[BeforeSend] = None) -> RefreshOutcome:
        """Send one `refresh_unity`. Never re-sent, except after a reloading rejection
        (the refresh never ran). A drop after a compile request is that compile's reload.
        """
        for attempt in range(2):
            try:
                result = await self.command('refresh_unity', params, idempotent=False,
                                            reload_wait_s=reload_wait_s,
                                            before_send=before_send)
                return RefreshOutcome(result=result)
            except UnityConnectionLost:
                if params.get('compile') == 'request':
                    return RefreshOutcome(dropped=True)  # the reload it asked for
                raise  # outcome unknown: never re-sent, reported as such
            except UnityCommandError as exc:
                if not exc.is_reloading_rejection or attempt == 1:
                    raise
        raise AssertionError('unreachable')

    async def editor_state(self, timeout_s: float) -> dict[str, Any]:
        """`get_editor_state`'s data; raises UnityUnavailable/UnityReloading while away."""
        if self.reloading_now():
            raise UnityReloading(f'the Editor {self.instance.instance_id} is reloading',
                                 retry_after_ms=RELOADING_RETRY_AFTER_MS)
        result = await self.command('get_editor_state', timeout_s=timeout_s)
        data = result.get('data')
        return data if isinstance(data, dict) else {}

    def reloading_now(self) -> bool:
        """The status file says reloading (a missing file is not evidence either way)."""
        status = self._current_status()
        return status.reloading and (status.status_age_s or 0) < RELOADING_KEEP_S

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _current_status(self) -> UnityInstance:
        if self.instance.status_file is None:
            return self.instance
        return read_status_file(self.instance.status_file, self.instance.host or '127.0.0.1'
                                ) or self.instance

    async def _wait_while_reloading(self, budget_s: float) -> None:
        deadline = time.monotonic() + budget_s
        while True:
            status = self._current_status()
            if not status.reloading or (status.status_age_s or 0) >= RELOADING_KEEP_S:
                self.instance = status
                return
            if time.monotonic() >= deadline:
                raise UnityReloading(
                    f'the Editor {status.instance_id} is reloading ({status.reason})',
                    retry_after_ms=RELOADING_RETRY_AFTER_MS)
            await asyncio.sleep(STATUS_POLL_S)

    async def _connect(self, verify: bool) -> UnityConnection:
        """The open connection, or a new one if the Editor closed it.

        `verify` pings first: a command that must not be re-sent should only go out on a
        connection known to be alive a moment ago (the Editor closes idle ones at 30 s).
        """
        connection = self._connection
        if connection is not None and connection.closed:
            await connection.close()
            connection = self._connection = None
        if connection is not None and verify:
            try:
                await connection.request(b'ping', 5.0)
            except UnityError:
                connection = self._connection = None
        if connection is None:
            assert self.instance.host is not None and self.instance.port is not None
            connection = await UnityConnection.open(self.instance.host, self.instance.port)
            self._connection = connection
        return connection

"""Client for the "MCP for Unity" Editor bridge (TCP, length-framed JSON), reload-aware.

What the Editor does that shapes this client (see CoplayDev/unity-mcp):

- It announces itself with `WELCOME UNITY-MCP 1 FRAMING=1\\n`, then every message both
  ways is an 8-byte big-endian length and UTF-8 JSON. It may send zero-length frames as
  heartbeats; a client must never send one.
- It serves one client at a time: a new connection closes the others. So we keep one
  connection per Editor, reconnect on the next command when it was closed, and never probe
  a healthy Editor just to list it (a probe would cut off another agent mid-command).
- A script compile reloads the Editor's domain: the connection drops and its status file
  says `reloading`. A dropped connection after a `refresh_unity` with `compile: request`
  means the refresh worked. Re-sending a refresh can start another reload (unity-mcp
  #555, #577), so commands that change state are never re-sent after they went out.

Errors are exceptions with a `to_dict()`; the MCP tools turn them into structured results.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

STATUS_DIR_ENV = 'UNITY_MCP_STATUS_DIR'
STATUS_FILE_PREFIX = 'unity-mcp-status-'
DEFAULT_PORT = 6400
HANDSHAKE_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 30.0
MAX_FRAME_BYTES = 64 * 1024 * 1024
# Discovery: a status file younger than this is a live Editor (it is rewritten every 0.5 s,
# slower when the Editor is busy or unfocused); an older one is kept only if the Editor
# says it is reloading and the file is under RELOADING_KEEP_S old, or if it answers a ping.
FRESH_STATUS_S = 30.0
RELOADING_KEEP_S = 60.0
STATUS_POLL_S = 0.25
RELOADING_RETRY_AFTER_MS = 2000
WAIT_REPORT_S = 1.0

ReadyWaitCallback = Callable[[str], Awaitable[None]]


class UnityError(Exception):
    """Base of every bridge failure. `to_dict()` is the structured answer for a caller."""

    code = 'unity_error'
    retryable = False

    def __init__(self, message: str, *, retry_after_ms: Optional[int] = None,
                 data: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.data = data or {}

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {'success': False, 'error': self.code, 'message': self.message}
        if self.retryable:
            answer['hint'] = 'retry'
        data = dict(self.data)
        if self.retry_after_ms is not None:
            data['retry_after_ms'] = self.retry_after_ms
        if data:
            answer['data'] = data
        return answer


class UnityUnavailable(UnityError):
    """No Editor answers (not running, port closed, handshake failed)."""

    code = 'unity_unavailable'
    retryable = True


class UnityConnectionLost(UnityUnavailable):
    """The connection dropped after a command was sent: its outcome is unknown."""

    code = 'unity_connection_lost'


class UnityReloading(UnityError):
    """The Editor is reloading (or compiling) for longer than the caller's wait budget."""

    code = 'unity_reloading'
    retryable = True


class UnityProtocolError(UnityError):
    """The peer does not speak the bridge protocol (bad handshake, bad frame)."""

    code = 'unity_protocol_error'


class UnityCommandError(UnityError):
    """The Editor answered with an error. `data` holds the Editor's own error fields."""

    code = 'unity_command_failed'

    def __init__(self, command: str, response: dict[str, Any]) -> None:
        token = response.get('code') or response.get('error') or 'error'
        detail = response.get('message') or response.get('error') or 'no details'
        data = response.get('data') if isinstance(response.get('data'), dict) else {}
        super().__init__(f'{command} failed in the Editor: {detail}',
                         retry_after_ms=data.get('retry_after_ms'),
                         data={'editor_error': token, **data})
        self.editor_error = str(token)
        self.retryable = self.retry_after_ms is not None or response.get('hint') == 'retry'

    @property
    def is_reloading_rejection(self) -> bool:
        """The Editor refused because it is reloading: the command never ran."""
        return self.data.get('reason') == 'reloading'


# --------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class UnityInstance:
    """One Editor: where to reach it and what its status file last said."""

    instance_id: str
    host: str
    port: int
    project_name: Optional[str] = None
    project_hash: Optional[str] = None
    project_path: Optional[str] = None
    unity_version: Optional[str] = None
    status_file: Optional[Path] = None
    reloading: bool = False
    reason: Optional[str] = None
    status_age_s: Optional[float] = None

    @property
    def state(self) -> str:
        return 'reloading' if self.reloading else (self.reason or 'ready')

    def summary(self) -> dict[str, Any]:
        return {
            'instance_id': self.instance_id,
            'project_name': self.project_name,
            'project_path': self.project_path,
            'unity_version': self.unity_version,
            'host': self.host,
            'port': self.port,
            'state': self.state,
            'status_age_s': (None if self.status_age_s is None
                             else round(self.status_age_s, 1)),
        }


def resolve_status_dir(configured: Optional[str] = None) -> Path:
    """The configured folder, else `$UNITY_MCP_STATUS_DIR`, else `~/.unity-mcp`."""
    chosen = configured or os.environ.get(STATUS_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / '.unity-mcp'


def _project_name(project_path: Any, fallback: Any) -> str:
    if isinstance(project_path, str) and project_path.strip('/\\'):
        root = project_path.rstrip('/\\')
        if root.endswith('Assets'):
            root = root[:-len('Assets')].rstrip('/\\')
        name = root.replace('\\', '/').rsplit('/', 1)[-1]
        if name:
            return name
    return fallback if isinstance(fallback, str) and fallback else 'Unknown'


def _status_age_s(payload: dict[str, Any], mtime: float, now: float) -> float:
    """Age of the Editor's last heartbeat (its ISO timestamp, else the file's mtime)."""
    stamp = payload.get('last_heartbeat')
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.replace('Z', '+00:00'))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return max(0.0, now - moment.timestamp())
        except ValueError:
            pass
    return max(0.0, now - mtime)


def read_status_file(path: Path, host: str = '127.0.0.1',
                     now: Optional[float] = None) -> Optional[UnityInstance]:
    """Parse one status file; None for anything unreadable, corrupt or incomplete."""
    now = time.time() if now is None else now
    try:
        mtime = path.stat().st_mtime
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    port = payload.get('unity_port', DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    project_hash = path.stem[len(STATUS_FILE_PREFIX):]
    if not project_hash:
        return None
    name = _project_name(payload.get('project_path'), payload.get('project_name'))

    def text(key: str) -> Optional[str]:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    return UnityInstance(
        instance_id=f'{name}@{project_hash}', host=host, port=port, project_name=name,
        project_hash=project_hash, project_path=text('project_path'),
        unity_version=text('unity_version'), status_file=path,
        reloading=payload.get('reloading') is True, reason=text('reason'),
        status_age_s=_status_age_s(payload, mtime, now))


async def discover_instances(status_dir: Path, host: str = '127.0.0.1') -> list[UnityInstance]:
    """Editors that announced themselves in `status_dir`, freshest first, one per port.

    A file with a fresh heartbeat is trusted without connecting (connecting would close
    the Editor's current client). An old one is kept while the Editor says it is reloading
    (under RELOADING_KEEP_S), else only if the Editor answers a ping.
    """
    try:
        paths = sorted(status_dir.glob(f'{STATUS_FILE_PREFIX}*.json'))
    except OSError:
        return []
    by_port: dict[int, UnityInstance] = {}
    for path in paths:
        instance = read_status_file(path, host)
        if instance is None or not await _still_there(instance):
            continue
        known = by_port.get(instance.port)
        if known is None or (instance.status_age_s or 0) < (known.status_age_s or 0):
            by_port[instance.port] = instance
    return sorted(by_port.values(), key=lambda found: found.status_age_s or 0)


async def _still_there(instance: UnityInstance) -> bool:
    age = instance.status_age_s or 0.0
    if age < FRESH_STATUS_S:
        return True
    if instance.reloading:
        return age < RELOADING_KEEP_S
    return await ping(instance.host, instance.port)


async def ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether a bridge answers `ping` on host:port (closes that Editor's other client)."""
    try:
        connection = await UnityConnection.open(host, port, connect_timeout_s=timeout_s)
    except UnityError:
        return False
    try:
        response = await connection.request(b'ping', timeout_s)
        return (response.get('result') or {}).get('message') == 'pong'
    except UnityError:
        return False
    finally:
        await connection.close()


# --------------------------------------------------------------------------- wire

class UnityConnection:
    """One framed TCP connection to an Editor. One request at a time (no request ids)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int, *,
                   connect_timeout_s: float = CONNECT_TIMEOUT_S) -> 'UnityConnection':
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UnityUnavailable(f'cannot connect to the Unity Editor at {host}:{port}: '
                                   f'{_describe(exc)}', retry_after_ms=2000) from None
        connection = cls(reader, writer)
        try:
            line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            await connection.close()
            raise UnityUnavailable(f'no bridge handshake from {host}:{port} within '
                                   f'{HANDSHAKE_TIMEOUT_S:.0f} s ({_describe(exc)})',
                                   retry_after_ms=2000) from None
        if b'FRAMING=1' not in line:
            await connection.close()
            if not line:
                raise UnityUnavailable(f'{host}:{port} closed the connection before the '
                                       'handshake', retry_after_ms=2000)
            raise UnityProtocolError(
                f'{host}:{port} is not an MCP for Unity bridge (handshake {line[:60]!r})')
        return connection

    @property
    def closed(self) -> bool:
        """True once the peer closed or the connection failed (checked before reuse)."""
        return self._writer.is_closing() or self._reader.at_eof()

    async def request(self, payload: bytes | dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one frame and wait for the next non-heartbeat frame, as a JSON object.

        Raises UnityConnectionLost if the connection drops after the frame was written.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if not body or len(body) > MAX_FRAME_BYTES:
            raise UnityProtocolError(f'refusing to send a frame of {len(body)} bytes')
        try:
            self._writer.write(struct.pack('>Q', len(body)) + body)
            await self._writer.drain()
        except OSError as exc:
            await self.close()
            raise UnityUnavailable(f'connection to the Editor failed: {_describe(exc)}',
                                   retry_after_ms=1000) from None
        try:
            raw = await asyncio.wait_for(self._read_frame(), timeout_s)
        except (asyncio.CancelledError, UnityProtocolError):
            # A late answer or the rest of a bad frame must never be read as the next
            # command's answer: this connection is done.
            self._writer.close()
            raise
        except asyncio.TimeoutError:
            await self.close()
            raise UnityConnectionLost(f'no answer from the Editor within {timeout_s:.0f} s',
                                      retry_after_ms=2000) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise UnityConnectionLost(f'the Editor closed the connection ({_describe(exc)})',
                                      retry_after_ms=1000) from None
        try:
            response = json.loads(raw)
        except ValueError:
            response = None
        if not isinstance(response, dict):
            await self.close()
            raise UnityProtocolError('the Editor sent a frame that is not a JSON object')
        return response

    async def _read_frame(self) -> bytes:
        while True:
            (length,) = struct.unpack('>Q', await self._reader.readexactly(8))
            if length == 0:
                continue  # heartbeat
            if length > MAX_FRAME_BYTES:
                raise UnityProtocolError(f'the Editor announced a frame of {length} bytes')
            return await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return 'timed out'
    if isinstance(exc, asyncio.IncompleteReadError):
        return 'connection closed'
    return getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- bridge

@dataclass
class RefreshOutcome:
    """What a refresh request did. `reloaded`: the Editor dropped us to reload its domain."""

    result: dict[str, Any] = field(default_factory=dict)
    reloaded: bool = False


class UnityBridge:
    """Commands to one Editor over one reused connection, aware of domain reloads."""

    def __init__(self, instance: UnityInstance, *,
                 command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.instance = instance
        self.command_timeout_s = command_timeout_s
        self._connection: Optional[UnityConnection] = None
        self._lock = asyncio.Lock()

    # ----------------------------------------------------------------- commands

    async def command(self, name: str, params: Optional[dict[str, Any]] = None, *,
                      idempotent: bool = True, reload_wait_s: float = 0.0,
                      timeout_s: Optional[float] = None) -> dict[str, Any]:
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
                try:
                    response = await connection.request(request, timeout_s)
                except UnityConnectionLost:
                    self._connection = None
                    if attempt + 1 == attempts:
                        raise
                    continue
                return self._unwrap(name, response)
            raise AssertionError('unreachable')

    async def refresh(self, mode: str, scope: str, compile: str,
                      reload_wait_s: float) -> RefreshOutcome:
        """Ask for one asset refresh. Never re-sent: each send can trigger a reload.

        Waits up to `reload_wait_s` for a reload already under way before sending. A
        dropped connection after `compile: request` is the domain reload the refresh
        started, so it counts as success. If the Editor refused because it was reloading,
        the refresh never ran, so it is sent once more after the reload.
        """
        params = {'mode': mode, 'scope': scope, 'compile': compile, 'wait_for_ready': False}
        for attempt in range(2):
            try:
                result = await self.command('refresh_unity', params, idempotent=False,
                                            reload_wait_s=reload_wait_s)
                return RefreshOutcome(result=result)
            except UnityConnectionLost:
                if compile == 'request':
                    return RefreshOutcome(reloaded=True)
                raise
            except UnityCommandError as exc:
                if not exc.is_reloading_rejection or attempt == 1:
                    raise
        raise AssertionError('unreachable')

    async def wait_until_ready(self, budget_s: float,
                               on_wait: Optional[ReadyWaitCallback] = None) -> dict[str, Any]:
        """Wait until the Editor neither reloads, compiles nor refreshes; return its state.

        Dropped connections and reload rejections while waiting are expected. `on_wait`
        hears why we are still waiting, at least every WAIT_REPORT_S, so that a caller can
        keep its own client from timing out. Raises UnityReloading when `budget_s` runs out.
        """
        deadline = time.monotonic() + budget_s
        reason, reported, reported_at = 'waiting for the Editor', None, 0.0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UnityReloading(
                    f'the Editor was not ready within {budget_s:.0f} s ({reason})',
                    retry_after_ms=RELOADING_RETRY_AFTER_MS)
            try:
                state = await self.command('get_editor_state',
                                           timeout_s=max(0.5, min(remaining, 10.0)))
            except (UnityUnavailable, UnityReloading) as exc:
                reason = exc.message
            except UnityCommandError as exc:
                if not exc.retryable:
                    raise
                reason = exc.message
            else:
                busy = editor_busy_reasons(state.get('data') or {})
                if not busy:
                    return state.get('data') or {}
                reason = ', '.join(busy)
            now = time.monotonic()
            if on_wait is not None and (reason != reported or now - reported_at >= WAIT_REPORT_S):
                reported, reported_at = reason, now
                await on_wait(reason)
            await asyncio.sleep(min(STATUS_POLL_S, max(0.0, deadline - time.monotonic())))

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # ----------------------------------------------------------------- internals

    def _current_status(self) -> UnityInstance:
        """The instance as its status file says now (unchanged when it has none)."""
        if self.instance.status_file is None:
            return self.instance
        return read_status_file(self.instance.status_file, self.instance.host) or self.instance

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
        """The open connection, or a new one if the Editor closed it (it keeps one client).

        `verify` pings first: a command that must not be re-sent should only go out on a
        connection known to be alive a moment ago.
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
            connection = await UnityConnection.open(self.instance.host, self.instance.port)
            self._connection = connection
        return connection

    @staticmethod
    def _unwrap(name: str, response: dict[str, Any]) -> dict[str, Any]:
        if response.get('status') == 'success':
            result = response.get('result')
            if not isinstance(result, dict):
                return {'success': True, 'data': result}
            if result.get('success') is False:
                raise UnityCommandError(name, result)
            return result
        raise UnityCommandError(name, response)


def editor_busy_reasons(state: dict[str, Any]) -> list[str]:
    """Why an Editor state snapshot is not ready for a new operation (empty: ready)."""
    def section(key: str) -> dict[str, Any]:
        value = state.get(key)
        return value if isinstance(value, dict) else {}

    compilation, assets = section('compilation'), section('assets')
    refresh = assets.get('refresh') if isinstance(assets.get('refresh'), dict) else {}
    reasons = []
    if compilation.get('is_compiling') is True:
        reasons.append('compiling')
    if compilation.get('is_domain_reload_pending') is True:
        reasons.append('domain_reload')
    if assets.get('is_updating') is True or refresh.get('is_refresh_in_progress') is True:
        reasons.append('asset_refresh')
    return reasons

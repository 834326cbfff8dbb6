"""The http transport: the Editor's default mode, reached through the official server.

Since v8 the Editor opens no TCP port: its plugin dials out to the WebSocket hub of the
official MCP for Unity server (PyPI `mcpforunityserver`, `/hub/plugin`), which serves MCP
over streamable HTTP at `/mcp`. We do not fight that server for the Editor; we are one of
its MCP clients: its `refresh_unity`, `run_tests` and `get_test_job` tools, its
`mcpforunity://instances` and `mcpforunity://editor/state` resources. Each tool call names
the Editor (`unity_instance`), so several Editors behind one server work.

One short MCP session per request: the gateway's calls run in different tasks and an
anyio-scoped client must be opened and closed by one task.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Optional

import anyio
import mcp_types as types
from mcp import Client

from mcp_gateway.unity.answers import (
    UnityCommandError,
    UnityConnectionLost,
    UnityError,
    UnityProtocolError,
    UnityUnavailable,
)
from mcp_gateway.unity.bridge import BeforeSend, RefreshOutcome
from mcp_gateway.unity.discovery import UnityInstance

class _SessionClosedNoise(logging.Filter):
    """Drop the SDK's error log for a server notification that arrives as we close a
    finished session (the official server logs to us after its answer): not a failure.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        cause = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage().startswith('Error parsing SSE message')
                    and isinstance(cause, (anyio.BrokenResourceError,
                                           anyio.ClosedResourceError)))


logging.getLogger('mcp.client.streamable_http').addFilter(_SessionClosedNoise())

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
# What the server answers when the Editor's plugin is away (reloading, not connected):
# `{success: false, error: <text>, hint: "retry"}` with one of these in the text.
_AWAY_WORDS = ('no unity plugins', 'no plugin session', 'disconnected', 'superseded',
               'not connected', 'did not respond', 'timeouterror', 'timed out')
_TOOL_ARGUMENTS = {'testNames': 'test_names', 'groupNames': 'group_names',
                   'categoryNames': 'category_names', 'assemblyNames': 'assembly_names',
                   'includeFailedTests': 'include_failed_tests', 'initTimeout': 'init_timeout',
                   'job_id': 'job_id', 'mode': 'mode', 'scope': 'scope', 'compile': 'compile',
                   'wait_for_ready': 'wait_for_ready'}


def _body(result: types.CallToolResult | types.ReadResourceResult) -> dict[str, Any]:
    """The JSON object a server answer carries (structured content, else its text)."""
    structured = getattr(result, 'structured_content', None)
    if isinstance(structured, dict):
        if set(structured) == {'result'} and isinstance(structured['result'], dict):
            return structured['result']
        return structured
    items = getattr(result, 'content', None) or getattr(result, 'contents', None) or []
    for item in items:
        text = getattr(item, 'text', None)
        if isinstance(text, str):
            try:
                value = json.loads(text)
            except ValueError:
                if getattr(result, 'is_error', False):  # e.g. a tool the Editor disabled
                    return {'success': False, 'error': text[:300]}
                raise UnityProtocolError(f'the Unity server answered non-JSON text: '
                                         f'{text[:120]!r}') from None
            if isinstance(value, dict):
                return value
    raise UnityProtocolError('the Unity server answered without a JSON object')


def _is_away(body: dict[str, Any]) -> bool:
    text = f'{body.get("error") or ""} {body.get("message") or ""}'.lower()
    return body.get('hint') == 'retry' and any(word in text for word in _AWAY_WORDS)


async def _request(url: str, body: Callable[[Client], Awaitable[Any]], timeout_s: float,
                   what: str, sent: Optional[list[bool]] = None) -> Any:
    """Run `body` in one fresh MCP session with the server, all of it within `timeout_s`.

    Any failure becomes a UnityError: UnityUnavailable before `sent` was set (nothing
    reached the Editor), UnityConnectionLost after (the outcome is unknown).
    """
    sent = [] if sent is None else sent
    try:
        with anyio.fail_after(timeout_s):
            async with Client(url) as client:
                return await body(client)
    except UnityError:
        raise
    except BaseException as exc:  # noqa: BLE001 - httpx, MCP, OS errors and their groups
        if isinstance(exc, anyio.get_cancelled_exc_class()) or not isinstance(exc, Exception):
            raise
        cause = _describe(exc)
        if sent:
            raise UnityConnectionLost(f'the Unity server connection broke during {what}: '
                                      f'{cause}', retry_after_ms=2000) from None
        raise UnityUnavailable(f'no MCP for Unity server answers at {url} ({cause})',
                               retry_after_ms=2000) from None


def _describe(exc: BaseException) -> str:
    """The innermost cause of an (exception-group-wrapped) failure, in one short line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, UnityError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return 'timed out'
    return f'{type(exc).__name__}: {exc}'[:200]


async def list_server_instances(url: str) -> list[UnityInstance]:
    """The Editors registered with the server's hub (`mcpforunity://instances`)."""
    async def read(client: Client) -> dict[str, Any]:
        return _body(await client.read_resource('mcpforunity://instances'))
    body = await _request(url, read, CONNECT_TIMEOUT_S, 'listing the Editors')
    found = []
    for item in body.get('instances') or []:
        if not isinstance(item, dict) or not isinstance(item.get('id'), str):
            continue
        found.append(UnityInstance(
            instance_id=item['id'], transport='http', server_url=url,
            project_name=item.get('name') if isinstance(item.get('name'), str) else None,
            project_hash=item.get('hash') if isinstance(item.get('hash'), str) else None,
            unity_version=(item.get('unity_version')
                           if isinstance(item.get('unity_version'), str) else None)))
    return found


class HttpUnity:
    """The http transport for one Editor behind the official server."""

    transport = 'http'

    def __init__(self, instance: UnityInstance) -> None:
        assert instance.server_url is not None
        self.instance = instance

    async def command(self, name: str, params: Optional[dict[str, Any]] = None, *,
                      idempotent: bool = True, reload_wait_s: float = 0.0,
                      timeout_s: Optional[float] = None,
                      before_send: Optional[BeforeSend] = None) -> dict[str, Any]:
        """Call the server's tool of the same name; the Editor's result or an error."""
        arguments = {_TOOL_ARGUMENTS.get(key, key): value
                     for key, value in (params or {}).items() if value not in ([], None)}
        arguments['unity_instance'] = self.instance.instance_id
        sent: list[bool] = []

        async def call(client: Client) -> types.CallToolResult:
            if before_send is not None:
                before_send()
            sent.append(True)
            return await client.call_tool(name, arguments)
        result = await _request(self.instance.server_url or '', call,
                                timeout_s or COMMAND_TIMEOUT_S, name, sent)
        body = _body(result)
        if body.get('success') is False:
            if _is_away(body):
                cls = UnityUnavailable if idempotent else UnityConnectionLost
                raise cls(f'{name}: the Editor is away ({body.get("error")})',
                          retry_after_ms=2000)
            raise UnityCommandError(name, body)
        return body

    async def refresh(self, params: dict[str, Any], reload_wait_s: float,
                      before_send: Optional[BeforeSend] = None) -> RefreshOutcome:
        """The server's refresh_unity (never re-sent). It reports a reload that dropped the
        plugin as `recovered_from_disconnect`.
        """
        try:
            result = await self.command('refresh_unity', params, idempotent=False,
                                        before_send=before_send)
        except UnityConnectionLost:
            return RefreshOutcome(dropped=True)
        data = result.get('data') if isinstance(result.get('data'), dict) else {}
        return RefreshOutcome(result=result, dropped=data.get('recovered_from_disconnect') is True)

    async def editor_state(self, timeout_s: float) -> dict[str, Any]:
        """`mcpforunity://editor/state` for this Editor (selected for the session first)."""
        async def read(client: Client) -> dict[str, Any]:
            await client.call_tool('set_active_instance',
                                   {'instance': self.instance.instance_id})
            return _body(await client.read_resource('mcpforunity://editor/state'))
        body = await _request(self.instance.server_url or '', read, max(timeout_s, 2.0),
                              'reading the Editor state')
        if body.get('success') is False:
            if _is_away(body) or body.get('hint') == 'retry':
                raise UnityUnavailable(f'the Editor is away ({body.get("error")})',
                                       retry_after_ms=1000)
            raise UnityCommandError('get_editor_state', body)
        data = body.get('data')
        return data if isinstance(data, dict) else {}

    async def aclose(self) -> None:
        """Nothing held between requests."""

"""The Unity bridge client against a fake Editor and against hand-made misbehaving peers."""
from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from fake_unity_editor import FakeUnityEditor
from mcp_gateway.unity.answers import (
    UnityCommandError,
    UnityConnectionLost,
    UnityError,
    UnityProtocolError,
    UnityReloading,
    UnityUnavailable,
    error_answer,
)
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.discovery import UnityInstance
from mcp_gateway.unity.instances import Finder
from mcp_gateway.unity.operations import wait_until_ready
from mcp_gateway.unity.wire import UnityConnection


async def discover_instances(status_dir: Path) -> list[UnityInstance]:
    return await Finder(UnityConfig(status_dir=str(status_dir), transport='stdio')).instances()


def to_dict(exc: UnityError) -> dict[str, Any]:
    return error_answer(exc).structured_content


async def no_progress(*_: Any) -> None:
    pass


async def reload_announced(editor: FakeUnityEditor) -> None:
    """Until the Editor's status file says `reloading` (it is deleted first, then written)."""
    for _ in range(200):
        try:
            if json.loads(editor.status_path.read_text()).get('reloading') is True:
                return
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.01)
    raise AssertionError('the fake Editor never announced its reload')

WELCOME = b'WELCOME UNITY-MCP 1 FRAMING=1\n'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def frame(payload: dict[str, Any] | bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return struct.pack('>Q', len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack('>Q', await reader.readexactly(8))
    return await reader.readexactly(length)


class RawPeer:
    """A TCP peer scripted by the test, for behaviour the fake Editor never shows."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> 'RawPeer':
        self.server = await asyncio.start_server(self._serve, '127.0.0.1', 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def instance(self) -> UnityInstance:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return UnityInstance(instance_id=f'raw:{port}', host='127.0.0.1', port=port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def editor(tmp_path: Path):
    with FakeUnityEditor(tmp_path / 'status', 'Game',
                         reload_duration_s=0.4, status_interval_s=0.05) as fake:
        yield fake


async def _bridge_for(fake: FakeUnityEditor) -> UnityBridge:
    (instance,) = await discover_instances(fake.status_dir)
    return UnityBridge(instance)


def test_handshake_framing_and_one_reused_connection_with_the_fake_editor(editor) -> None:
    async def scenario() -> None:
        bridge = await _bridge_for(editor)
        assert bridge.instance.instance_id == editor.instance_id
        for _ in range(20):
            state = await bridge.command('get_editor_state')
            assert state['success'] is True
            await asyncio.sleep(0.003)
        await bridge.aclose()
    asyncio.run(scenario())
    assert editor.connections == 1
    assert editor.zero_length_frames_received == 0


def test_requests_are_framed_json_and_split_answers_are_reassembled() -> None:
    seen: list[bytes] = []

    async def peer(reader, writer, _):
        writer.write(WELCOME)
        seen.append(await reader.readexactly(8))
        (length,) = struct.unpack('>Q', seen[0])
        seen.append(await reader.readexactly(length))
        answer = frame({'status': 'success', 'result': {'success': True, 'data': 'x' * 5000}})
        writer.write(frame(b'') + frame(b''))  # heartbeats first
        for start in range(0, len(answer), 700):
            writer.write(answer[start:start + 700])
            await writer.drain()
            await asyncio.sleep(0.001)
        await asyncio.sleep(1)

    async def scenario() -> None:
        async with RawPeer(peer) as raw:
            result = await UnityBridge(raw.instance).command('get_editor_state', {'a': 1})
        assert result['data'] == 'x' * 5000
        assert json.loads(seen[1]) == {'type': 'get_editor_state', 'params': {'a': 1}}
    asyncio.run(scenario())


def test_bad_or_missing_handshake_and_oversized_frames_fail_cleanly() -> None:
    async def silent(reader, writer, _):
        await asyncio.sleep(60)  # never greets: only the client's own limit ends the wait

    async def stranger(reader, writer, _):
        writer.write(b'SSH-2.0-OpenSSH\r\n')
        await asyncio.sleep(1)

    async def huge(reader, writer, _):
        writer.write(WELCOME)
        await read_frame(reader)
        writer.write(struct.pack('>Q', 64 * 1024 * 1024 + 1))
        await asyncio.sleep(1)

    async def scenario() -> None:
        async with RawPeer(silent) as raw:
            with pytest.raises(UnityUnavailable, match='no bridge handshake .* within 1 s'):
                await UnityConnection.open('127.0.0.1', raw.instance.port)
        async with RawPeer(stranger) as raw:
            with pytest.raises(UnityProtocolError):
                await UnityBridge(raw.instance).command('get_editor_state')
        async with RawPeer(huge) as raw:
            with pytest.raises(UnityProtocolError):
                await UnityBridge(raw.instance).command('get_editor_state', idempotent=False)
        with pytest.raises(UnityUnavailable) as refused:
            gone = UnityInstance('gone', host='127.0.0.1', port=_free_port())
            await UnityBridge(gone).command('x')
        assert to_dict(refused.value)['hint'] == 'retry'
    asyncio.run(scenario())


def test_never_sends_a_zero_length_frame() -> None:
    async def peer(reader, writer, _):
        writer.write(WELCOME)
        await asyncio.sleep(1)

    async def scenario() -> None:
        async with RawPeer(peer) as raw:
            connection = await UnityConnection.open('127.0.0.1', raw.instance.port)
            with pytest.raises(UnityProtocolError):
                await connection.request(b'', 1.0)
            await connection.close()
    asyncio.run(scenario())


def test_reconnects_on_the_next_command_after_the_editor_closed_us(editor) -> None:
    async def scenario() -> None:
        bridge = await _bridge_for(editor)
        await bridge.command('get_editor_state')
        editor.kick_clients()  # as when another client connects
        await asyncio.sleep(0.05)
        assert (await bridge.command('get_editor_state'))['success']
        editor.kick_clients()
        started = await bridge.command('run_tests', {'mode': 'EditMode'}, idempotent=False)
        assert started['data']['status'] == 'running'
        await bridge.aclose()
    asyncio.run(scenario())
    assert editor.connections == 3
    assert editor.commands.count('run_tests') == 1


def test_a_dropped_request_is_resent_only_when_idempotent() -> None:
    received: list[str] = []

    async def drops_first_request(reader, writer, connection_number):
        writer.write(WELCOME)
        while True:
            request = json.loads(await read_frame(reader))
            received.append(request['type'])
            if connection_number == 1:
                return  # close without answering
            writer.write(frame({'status': 'success', 'result': {'success': True}}))

    async def scenario() -> None:
        async with RawPeer(drops_first_request) as raw:
            assert (await UnityBridge(raw.instance).command('get_test_job'))['success']
        assert received == ['get_test_job', 'get_test_job']
        received.clear()
        async with RawPeer(drops_first_request) as raw:
            with pytest.raises(UnityConnectionLost):
                await UnityBridge(raw.instance).command('run_tests', idempotent=False)
        assert received == ['run_tests']
    asyncio.run(scenario())


def test_refresh_with_compile_counts_the_drop_as_success_and_is_sent_once(editor) -> None:
    async def scenario() -> None:
        bridge = await _bridge_for(editor)
        params = {'mode': 'force', 'scope': 'all', 'compile': 'request'}
        outcome = await bridge.refresh(params, reload_wait_s=5)
        # As the Editor does: answered at once, compile and reload a tick later.
        assert outcome.result['success'] and not outcome.dropped and editor.reloads == 0
        waits: list[str] = []

        async def on_wait(value: float, total: Any, message: str) -> None:
            waits.append(message)
        await asyncio.sleep(editor.compile_delay_s + 0.05)
        state = await wait_until_ready(bridge, 10, on_wait)
        assert state['compilation']['is_compiling'] is False
        assert waits and editor.reloads == 1  # it did wait for the compile and reload
        await bridge.aclose()
    asyncio.run(scenario())
    assert editor.commands.count('refresh_unity') == 1
    assert editor.reloads == 1


def test_refresh_without_compile_is_not_resent_after_a_drop() -> None:
    received: list[str] = []

    async def drops_refresh(reader, writer, _):
        writer.write(WELCOME)
        while True:
            body = await read_frame(reader)
            if body == b'ping':
                writer.write(frame({'status': 'success', 'result': {'message': 'pong'}}))
                continue
            received.append(json.loads(body)['type'])
            return

    async def scenario() -> None:
        async with RawPeer(drops_refresh) as raw:
            with pytest.raises(UnityConnectionLost):
                await UnityBridge(raw.instance).refresh({'compile': 'none'}, 1.0)
    asyncio.run(scenario())
    assert received == ['refresh_unity']


def test_waits_for_a_reload_within_budget_else_answers_retryable(editor) -> None:
    async def scenario() -> None:
        bridge = await _bridge_for(editor)
        editor.begin_reload(0.6)
        await reload_announced(editor)
        with pytest.raises(UnityReloading) as reloading:
            await bridge.command('get_editor_state', reload_wait_s=0.1)
        answer = to_dict(reloading.value)
        assert answer['error'] == 'unity_reloading' and answer['hint'] == 'retry'
        assert answer['data']['retry_after_ms'] > 0
        assert (await bridge.command('get_editor_state', reload_wait_s=5))['success']
        with pytest.raises(UnityReloading):
            editor.begin_reload(2.0)
            await reload_announced(editor)
            await wait_until_ready(bridge, 0.5, no_progress)
        await bridge.aclose()
    asyncio.run(scenario())


def test_editor_errors_become_structured_exceptions(editor) -> None:
    async def scenario() -> None:
        bridge = await _bridge_for(editor)
        await bridge.command('run_tests', {'mode': 'EditMode'}, idempotent=False)
        with pytest.raises(UnityCommandError) as busy:
            await bridge.refresh({'compile': 'none'}, 1.0)
        answer = to_dict(busy.value)
        assert answer['data']['editor_error'] == 'tests_running'
        assert answer['data']['retry_after_ms'] == 5000 and answer['hint'] == 'retry'
        with pytest.raises(UnityCommandError) as unknown:
            await bridge.command('no_such_command')
        assert 'Unknown command' in unknown.value.message
        await bridge.aclose()
    asyncio.run(scenario())


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_a_cancelled_request_never_leaves_its_answer_for_the_next_one() -> None:
    async def slow_then_fast(reader, writer, _):
        writer.write(WELCOME)
        while True:
            request = json.loads(await read_frame(reader))
            if request['params'].get('slow'):
                await asyncio.sleep(0.3)
            writer.write(frame({'status': 'success',
                                'result': {'success': True, 'data': request['params']}}))

    async def scenario() -> None:
        async with RawPeer(slow_then_fast) as raw:
            bridge = UnityBridge(raw.instance)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(bridge.command('get_editor_state', {'slow': 1}), 0.1)
            await asyncio.sleep(0.4)
            answer = await bridge.command('get_editor_state', {'n': 2})
            assert answer['data'] == {'n': 2}
            await bridge.aclose()
    asyncio.run(scenario())


def test_the_editor_closing_an_idle_connection_costs_nothing(tmp_path: Path) -> None:
    with FakeUnityEditor(tmp_path / 'status', 'Idle', idle_close_s=0.3) as fake:
        async def scenario() -> None:
            bridge = await _bridge_for(fake)
            assert (await bridge.command('get_editor_state'))['success']
            await asyncio.sleep(0.6)  # the Editor closes us meanwhile (30 s in reality)
            assert (await bridge.command('get_editor_state'))['success']
            await asyncio.sleep(0.6)
            await bridge.refresh({'compile': 'none'}, 1.0)  # not re-sendable: pinged first
            await bridge.aclose()
        asyncio.run(scenario())
        assert fake.connections >= 3 and fake.commands.count('refresh_unity') == 1

"""A fake Unity Editor in HTTP mode: its MCP for Unity plugin dialling the official hub.

Since v8 the Editor's default transport is HTTP: the plugin connects OUT to the official
server's WebSocket hub (`ws://127.0.0.1:8080/hub/plugin`, `WebSocketTransportClient.cs`):
it gets `welcome`, sends `register` (project name, hash, version, path), gets `registered`
with a session id, sends `register_tools`, answers `ping` with `pong` and every
`execute {id, name, params, timeout}` with `command_result {id, result}`, where `result`
is the same `{"status": "success", "result": ...}` envelope the TCP bridge sends. A domain
reload closes the socket; the plugin reconnects and registers again after it. No TCP port,
no status file.

The Editor side (commands, compile timing, test jobs, overlap counting) is the same as the
stdio fake's (`fake_unity_core.py`). Runs with the interpreter of `.venv-unity` (it needs
`websockets`, which the official server's environment has):

    python test/fake_unity_plugin.py --hub ws://127.0.0.1:PORT/hub/plugin --record FILE

prints `FAKE_UNITY_PLUGIN_READY instance=<Name@hash>` once registered.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_unity_core import FakeEditorCore  # noqa: E402

TOOLS = [  # what the plugin registers (group decides what the server exposes)
    {'name': 'refresh_unity', 'description': 'Refresh assets', 'group': 'core'},
    {'name': 'run_tests', 'description': 'Run tests', 'group': 'testing'},
    {'name': 'get_test_job', 'description': 'Poll a test job', 'group': 'testing'},
    {'name': 'read_console', 'description': 'Read the console', 'group': 'core'},
]


class FakeUnityPlugin(FakeEditorCore):
    """The HTTP-mode front-end: one WebSocket to the hub, re-dialled after each reload."""

    writes_status = False

    def __init__(self, hub_url: str, project_name: str = 'FakeProject', **options: Any) -> None:
        super().__init__(tempfile.mkdtemp(prefix='fake-plugin-'), project_name, **options)
        self.hub_url = hub_url
        self.session_id: Optional[str] = None
        self.registrations = 0
        self._socket: Any = None
        self._reader: Optional[asyncio.Task[Any]] = None

    async def _come_up(self) -> None:
        for _ in range(100):  # the Editor keeps retrying while the server is not up
            try:
                socket = await websockets.connect(self.hub_url, max_size=None)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f'no hub at {self.hub_url}')
        welcome = json.loads(await socket.recv())
        assert welcome.get('type') == 'welcome', welcome
        await socket.send(json.dumps({
            'type': 'register', 'project_name': self.project_name,
            'project_hash': self.project_hash, 'unity_version': '6000.0.0f1',
            'project_path': self.project_path.removesuffix('/Assets')}))
        while True:
            message = json.loads(await socket.recv())
            if message.get('type') == 'registered':
                break
        self.session_id = message['session_id']
        self.registrations += 1
        await socket.send(json.dumps({'type': 'register_tools', 'tools': TOOLS}))
        self._socket = socket
        self._reader = self._spawn(self._read(socket))

    async def _go_down(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read(self, socket: Any) -> None:
        try:
            async for raw in socket:
                message = json.loads(raw)
                if message.get('type') == 'ping':
                    await socket.send(json.dumps({'type': 'pong',
                                                  'session_id': self.session_id}))
                elif message.get('type') == 'execute':
                    self._spawn(self._execute_command(socket, message))
        except websockets.ConnectionClosed:
            pass

    async def _execute_command(self, socket: Any, message: dict[str, Any]) -> None:
        params = message.get('params') if isinstance(message.get('params'), dict) else {}
        result = await self.handle(str(message.get('name')), params)
        if result is None:
            return  # the reload took the socket away before the answer
        envelope = {'status': 'success', 'result': result}
        try:
            await socket.send(json.dumps({'type': 'command_result', 'id': message.get('id'),
                                          'result': envelope}))
        except websockets.ConnectionClosed:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hub', required=True)
    parser.add_argument('--project-name', default='FakeProject')
    parser.add_argument('--tests', type=int, default=5)
    parser.add_argument('--failing', type=int, default=0, help='the last N tests fail')
    parser.add_argument('--test-duration', type=float, default=0.05)
    parser.add_argument('--refresh-duration', type=float, default=0.05)
    parser.add_argument('--reload-duration', type=float, default=0.5)
    parser.add_argument('--compile-delay', type=float, default=0.2)
    parser.add_argument('--compile-duration', type=float, default=0.3)
    parser.add_argument('--record', help='JSON file kept up to date with the counters')
    args = parser.parse_args()
    tests = [f'Fake.Tests.Test{i}' for i in range(args.tests)]
    plugin = FakeUnityPlugin(
        args.hub, args.project_name, tests=tests,
        failing_tests=tuple(tests[len(tests) - args.failing:] if args.failing else ()),
        test_duration_s=args.test_duration, refresh_duration_s=args.refresh_duration,
        reload_duration_s=args.reload_duration, compile_delay_s=args.compile_delay,
        compile_duration_s=args.compile_duration, record_path=args.record)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    plugin.start()
    plugin._write_record()
    print(f'FAKE_UNITY_PLUGIN_READY instance={plugin.instance_id}', flush=True)
    while not stop.wait(0.5):
        pass
    plugin.stop()


if __name__ == '__main__':
    main()

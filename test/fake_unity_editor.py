"""A fake Unity Editor that speaks the real "MCP for Unity" bridge protocol (test fixture).

Not a mock: it listens on TCP, sends the `WELCOME UNITY-MCP 1 FRAMING=1` handshake, uses
8-byte big-endian length framing, closes its other clients when a new one connects and
idle ones after 30 s, answers `ping` with the compact pong bytes, and writes its status
file in place (not atomically; deleted at a reload) the way the Editor does.

What the Editor does with commands (timing, compile, reload, test jobs) lives in
`fake_unity_core.py`, shared with the HTTP-mode plugin fake.

It records what matters to the tests: how many times two operations (a refresh or a test
run) were in progress at once (`overlaps`; a refresh arriving during a test run counts),
and whether a client ever sent a zero-length frame.

In-process: `with FakeUnityEditor(status_dir, 'Proj') as editor:` (runs its own event loop
in a thread). As a process, so that several gateway processes can share one:
`python test/fake_unity_editor.py --status-dir D --project-name P --record FILE` prints
`FAKE_UNITY_READY port=<port> instance=<id>` and keeps FILE (JSON counters) up to date.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import threading
from typing import Any, Optional

from fake_unity_core import FakeEditorCore

WELCOME = b'WELCOME UNITY-MCP 1 FRAMING=1\n'
PONG = b'{"status":"success","result":{"message":"pong"}}'
MAX_FRAME_BYTES = 64 * 1024 * 1024


class FakeUnityEditor(FakeEditorCore):
    """The stdio bridge front-end: TCP, framing, one client at a time, status files."""

    def kick_clients(self) -> None:
        """Close every client connection, as the Editor does when another client connects."""
        self._call(self._close_clients)

    async def _come_up(self) -> None:
        await self._listen()

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_clients()

    async def _shut_down(self) -> None:
        await self._go_down()
        if self._client_tasks:  # they end on their own once their connection closed
            await asyncio.wait(list(self._client_tasks), timeout=2)

    # ----------------------------------------------------------------- network

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve_client, '127.0.0.1', self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _close_clients(self) -> None:
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        self._close_clients()  # one bridge client at a time
        self._clients.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._client_tasks.add(task)
        self.connections += 1
        try:
            writer.write(WELCOME)
            await writer.drain()
            while True:  # the Editor never sends zero-length frames itself
                try:
                    header = await asyncio.wait_for(reader.readexactly(8), self.idle_close_s)
                except asyncio.TimeoutError:
                    break  # the Editor closes a client idle for 30 s
                (length,) = struct.unpack('>Q', header)
                if length == 0:
                    self.zero_length_frames_received += 1
                    break
                if length > MAX_FRAME_BYTES:
                    break
                response = await self._dispatch(await reader.readexactly(length))
                if response is None:
                    break  # the connection went away with a domain reload
                body = (response if isinstance(response, bytes)
                        else json.dumps(response, separators=(',', ':')).encode())
                writer.write(struct.pack('>Q', len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            self._client_tasks.discard(task)
            writer.close()

    async def _dispatch(self, payload: bytes) -> Optional[dict[str, Any] | bytes]:
        if payload.strip() == b'ping':
            return PONG
        try:
            request = json.loads(payload)
            command, params = request['type'], request.get('params') or {}
        except (ValueError, KeyError, TypeError):
            return {'status': 'error', 'error': 'invalid request'}
        result = await self.handle(command, params)
        return None if result is None else {'status': 'success', 'result': result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--status-dir', required=True)
    parser.add_argument('--project-name', default='FakeProject')
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--tests', type=int, default=5, help='number of fake tests')
    parser.add_argument('--test-duration', type=float, default=0.05)
    parser.add_argument('--refresh-duration', type=float, default=0.05)
    parser.add_argument('--reload-duration', type=float, default=0.5)
    parser.add_argument('--no-reload', action='store_true')
    parser.add_argument('--status-interval', type=float, default=0.2)
    parser.add_argument('--record', help='JSON file kept up to date with the counters')
    parser.add_argument('--failing', type=int, default=0, help='the last N tests fail')
    parser.add_argument('--compile-delay', type=float, default=0.2)
    parser.add_argument('--compile-duration', type=float, default=0.3)
    args = parser.parse_args()
    editor = FakeUnityEditor(
        args.status_dir, args.project_name, port=args.port,
        tests=[f'Fake.Tests.Test{i}' for i in range(args.tests)],
        failing_tests=tuple(f'Fake.Tests.Test{i}'
                            for i in range(args.tests - args.failing, args.tests)),
        compile_delay_s=args.compile_delay, compile_duration_s=args.compile_duration,
        test_duration_s=args.test_duration, refresh_duration_s=args.refresh_duration,
        reload_on_compile=not args.no_reload, reload_duration_s=args.reload_duration,
        status_interval_s=args.status_interval, record_path=args.record)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    editor.start()
    editor._write_record()
    print(f'FAKE_UNITY_READY port={editor.port} instance={editor.instance_id}', flush=True)
    while not stop.wait(0.5):
        pass
    editor.stop()


if __name__ == '__main__':
    main()

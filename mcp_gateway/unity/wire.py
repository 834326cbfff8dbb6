r"""The stdio bridge's wire: one framed TCP connection to an Editor (MCP for Unity).

On accept the Editor writes `WELCOME UNITY-MCP 1 FRAMING=1\n`; then every message both
ways is an 8-byte big-endian length and UTF-8 JSON (max 64 MiB). A client must never send a
zero-length frame. The Editor keeps one client at a time and closes idle ones after 30 s,
so a caller reconnects when it finds the connection closed.
"""
from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from mcp_gateway.unity.answers import UnityConnectionLost, UnityProtocolError, UnityUnavailable

HANDSHAKE_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2.0
MAX_FRAME_BYTES = 64 * 1024 * 1024


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return 'timed out'
    if isinstance(exc, asyncio.IncompleteReadError):
        return 'connection closed'
    return getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__


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
                                   f'{describe(exc)}', retry_after_ms=2000) from None
        connection = cls(reader, writer)
        try:
            line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            await connection.close()
            raise UnityUnavailable(f'no bridge handshake from {host}:{port} within '
                                   f'{HANDSHAKE_TIMEOUT_S:.0f} s ({describe(exc)})',
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
        """Send one frame and wait for the next non-empty frame, as a JSON object.

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
            raise UnityUnavailable(f'connection to the Editor failed: {describe(exc)}',
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
            raise UnityConnectionLost(f'the Editor closed the connection ({describe(exc)})',
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
                continue  # tolerated, although the Editor never sends one
            if length > MAX_FRAME_BYTES:
                raise UnityProtocolError(f'the Editor announced a frame of {length} bytes')
            return await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


async def ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether a bridge answers `ping` on host:port (closes that Editor's other client)."""
    try:
        connection = await UnityConnection.open(host, port, connect_timeout_s=timeout_s)
    except (UnityUnavailable, UnityProtocolError):
        return False
    try:
        response = await connection.request(b'ping', timeout_s)
        return (response.get('result') or {}).get('message') == 'pong'
    except (UnityUnavailable, UnityProtocolError):
        return False
    finally:
        await connection.close()

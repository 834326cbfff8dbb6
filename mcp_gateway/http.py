"""The gateway's streamable HTTP transport: the ASGI app, bearer auth, and serving it.

HTTP binds 127.0.0.1 by default; any other address requires a bearer token from the
environment variable named by `gateway.token_env` (default SKILL_LANES_TOKEN): the gateway
refuses to start without one. Host/Origin checks (DNS rebinding protection) stay on.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import sys
from typing import Any, Iterator

import anyio

from lane_manager.config import Config

LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')


class GatewayError(Exception):
    """A start-up problem explained in one line (bad flags, no token for a public bind)."""


class BearerTokenMiddleware:
    """401 for requests without `Authorization: Bearer <token>` (lifespan passes through)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f'Bearer {token}'.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Check the header on HTTP requests; everything else goes straight to the app."""
        if scope['type'] == 'http':
            supplied = dict(scope.get('headers') or []).get(b'authorization', b'')
            if not hmac.compare_digest(supplied, self._expected):
                await send({'type': 'http.response.start', 'status': 401, 'headers': [
                    (b'content-type', b'application/json'),
                    (b'www-authenticate', b'Bearer realm="skill_lanes"')]})
                await send({'type': 'http.response.body',
                            'body': b'{"error":"unauthorized","message":"bearer token required"}'})
                return
        await self.app(scope, receive, send)


def http_app(server: Any, config: Config, host: str) -> Any:
    """The streamable HTTP app, with bearer auth when bound beyond loopback."""
    from mcp.server.transport_security import TransportSecuritySettings
    token = os.environ.get(config.gateway.token_env, '')
    if host in LOOPBACK_HOSTS:
        app = server.streamable_http_app(streamable_http_path='/mcp', host=host)
    else:
        if not token:
            raise GatewayError(
                f'refusing to serve HTTP on {host}: set a bearer token in the environment '
                f'variable {config.gateway.token_env} (or bind 127.0.0.1)')
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f'{host}:*', '127.0.0.1:*', 'localhost:*'],
            allowed_origins=[f'http://{host}:*', 'http://127.0.0.1:*', 'http://localhost:*'])
        app = server.streamable_http_app(streamable_http_path='/mcp', host=host,
                                         transport_security=security)
    return BearerTokenMiddleware(app, token) if token else app


class _QuietServer:
    """Builds a uvicorn.Server that leaves signals to the gateway's main.

    The gateway stops every transport the same orderly way; uvicorn's own handlers would
    stop only the HTTP server, and re-raise the signal afterwards.
    """

    @staticmethod
    def create(app: Any, host: str, port: int) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

            def install_signal_handlers(self) -> None:  # uvicorn before 0.29
                pass

        # A stop waits this long for open requests and streams, then cancels them (and the
        # tool calls behind them, whose goals are then cancelled at the lane manager).
        return Server(uvicorn.Config(app, host=host, port=port, log_level='warning',
                                     lifespan='on', timeout_graceful_shutdown=1))


async def serve_http(app: Any, host: str, port: int, stop: anyio.Event) -> None:
    """Serve `app` (see http_app) until `stop` is set, then shut down gracefully.

    The ready line is printed once the socket is bound.
    """
    uv_server = _QuietServer.create(app, host, port)

    async def announce_when_listening() -> None:
        # "ready" means a client can connect: only once the socket is bound.
        while not uv_server.started:
            await anyio.sleep(0.01)
        print(f'mcp_gateway ready on http://{host}:{port}/mcp (lane view: '
              f'http://{host}:{port}/lanes)', file=sys.stderr, flush=True)

    async def stop_when_told() -> None:
        await stop.wait()
        uv_server.should_exit = True

    async with anyio.create_task_group() as group:
        group.start_soon(announce_when_listening)
        group.start_soon(stop_when_told)
        await uv_server.serve()
        group.cancel_scope.cancel()

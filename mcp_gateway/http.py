"""The gateway's streamable HTTP transport: the ASGI app, bearer auth, and serving it.

HTTP binds 127.0.0.1 by default; any other address requires a bearer token from the
environment variable named by `gateway.token_env` (default SKILL_LANES_TOKEN): the gateway
refuses to start without one. With `gateway.clients` every request needs one of the clients'
tokens, on any bind (mcp_gateway/permissions.py). Host/Origin checks (DNS rebinding
protection) stay on.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import sys
from typing import Any, Iterator, Optional

import anyio

from skill_lanes.config import Config
from mcp_gateway.permissions import SCOPE_KEY, Permissions

LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')


class GatewayError(Exception):
    """A start-up problem explained in one line (bad flags, no token for a public bind)."""


class BearerTokenMiddleware:
    """401 for requests without `Authorization: Bearer <token>` (lifespan passes through).

    One token (`gateway.token_env`), or with `gateway.clients` any client's token: the
    client's grant is then left in the request's scope (permissions.SCOPE_KEY) for the MCP
    handlers (identity, tools/list, tools/call refusals).
    """

    def __init__(self, app: Any, token: str = '',
                 permissions: Optional[Permissions] = None) -> None:
        self.app = app
        self._expected = f'Bearer {token}'.encode()
        self._permissions = permissions if permissions is not None and permissions.named \
            else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Check the header on HTTP requests; everything else goes straight to the app."""
        if scope['type'] == 'http':
            supplied = dict(scope.get('headers') or []).get(b'authorization', b'')
            if self._permissions is not None:
                grant = None
                if supplied.startswith(b'Bearer '):
                    grant = self._permissions.authenticate(
                        supplied[len(b'Bearer '):].decode('utf-8', 'surrogateescape'))
                scope[SCOPE_KEY] = grant
                allowed = grant is not None
            else:
                allowed = hmac.compare_digest(supplied, self._expected)
            if not allowed:
                await send({'type': 'http.response.start', 'status': 401, 'headers': [
                    (b'content-type', b'application/json'),
                    (b'www-authenticate', b'Bearer realm="skill_lanes"')]})
                await send({'type': 'http.response.body',
                            'body': b'{"error":"unauthorized","message":"bearer token required"}'})
                return
        await self.app(scope, receive, send)


def check_client_tokens(config: Config, permissions: Permissions) -> list[str]:
    """Start-up checks of the named clients' tokens: warnings to print, or GatewayError.

    A client whose variable is unset can never authenticate (warned); none set, or two
    clients holding the same token (one token must name one client), refuses to start.
    """
    warnings = [f'gateway.clients.{name}: {permissions.clients[name].token_env} is not set: '
                'this client cannot connect' for name in permissions.clients_without_token()]
    if len(permissions.clients_without_token()) == len(permissions.clients):
        raise GatewayError('no client of gateway.clients has its token set (' + ', '.join(
            sorted({c.token_env for c in permissions.clients.values()})) + '): nobody could '
            'connect')
    for first, second in permissions.shared_tokens():
        raise GatewayError(f'clients {first!r} and {second!r} have the same token: each '
                           'client needs its own (the token is its identity)')
    single = config.gateway.token_env
    if os.environ.get(single) and all(c.token_env != single
                                      for c in permissions.clients.values()):
        warnings.append(f'{single} (gateway.token_env) is set but not accepted: with '
                        "gateway.clients only the clients' tokens open /mcp and /lanes")
    return warnings


def http_app(server: Any, config: Config, host: str,
             permissions: Optional[Permissions] = None) -> Any:
    """The streamable HTTP app, with bearer auth when bound beyond loopback (and always
    with named clients: a client's name is only known from its token).
    """
    from mcp.server.transport_security import TransportSecuritySettings
    named = permissions is not None and permissions.named
    token = os.environ.get(config.gateway.token_env, '')
    if named:
        for warning in check_client_tokens(config, permissions):
            print(f'mcp_gateway: warning: {warning}', file=sys.stderr, flush=True)
    if host in LOOPBACK_HOSTS:
        app = server.streamable_http_app(streamable_http_path='/mcp', host=host)
    else:
        if not token and not named:
            raise GatewayError(
                f'refusing to serve HTTP on {host}: set a bearer token in the environment '
                f'variable {config.gateway.token_env} (or bind 127.0.0.1)')
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f'{host}:*', '127.0.0.1:*', 'localhost:*'],
            allowed_origins=[f'http://{host}:*', 'http://127.0.0.1:*', 'http://localhost:*'])
        app = server.streamable_http_app(streamable_http_path='/mcp', host=host,
                                         transport_security=security)
    if named:
        return BearerTokenMiddleware(app, permissions=permissions)
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

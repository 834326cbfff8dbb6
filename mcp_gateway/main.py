"""The `mcp_gateway` executable: a ROS 2 node and an MCP server in one process.

    mcp_gateway --config FILE [--transport stdio|http] [--host H] [--port P]

stdio (default) lets an MCP client spawn it; streamable HTTP serves a long-running gateway on
the robot at http://H:P/mcp. HTTP binds 127.0.0.1 by default; any other address requires a
bearer token from the environment variable named by `gateway.token_env` (default
SKILL_LANES_TOKEN) and the gateway refuses to start without one. Host/Origin checks stay on.
"""
from __future__ import annotations

import argparse
import hmac
import logging
import os
import signal
import sys
from typing import Optional, Sequence

import anyio
import rclpy
from rclpy.signals import SignalHandlerOptions

from lane_manager.config import Config, ConfigError, load_config
from mcp_gateway import lane_view
from mcp_gateway.node import RosRuntime
from mcp_gateway.server import build_server, initialization_options
from mcp_gateway.skill_tools import SkillTools
from mcp_gateway.unity.config import UnityConfig, load_unity_config

VERSION = '0.1.0'
LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')


class GatewayError(Exception):
    """A start-up problem explained in one line (bad flags, no token for a public bind)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='mcp_gateway', description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', help='skill_lanes YAML file (or ROS param config_file)')
    parser.add_argument('--transport', choices=['stdio', 'http'], default=None)
    parser.add_argument('--host', default=None)
    parser.add_argument('--port', type=int, default=None)
    parser.add_argument('--node-name', default=None, help='ROS node name (default unique)')
    return parser.parse_args(rclpy.utilities.remove_ros_args(args=list(argv))[1:])


class BearerTokenMiddleware:
    """401 for requests without `Authorization: Bearer <token>` (lifespan passes through)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self._expected = f'Bearer {token}'.encode()

    async def __call__(self, scope, receive, send) -> None:
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


def http_app(server, config: Config, host: str):
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


async def serve(config: Config, transport: str, host: str, port: int,
                node_name: Optional[str], unity_config: Optional[UnityConfig] = None) -> None:
    ros = RosRuntime.start(config, node_name)
    tools = SkillTools(config, ros.node)
    providers: list = [tools]
    unity = None
    if unity_config is not None and unity_config.enabled:
        from mcp_gateway.unity.tools import UnityTools
        unity = UnityTools(unity_config, owner=ros.node.get_fully_qualified_name())
        providers.append(unity)
    ros.node.publish_tool_lanes(config.gateway.name, transport, tools.tool_lanes())
    server = build_server(config.gateway.name, VERSION, providers, lambda: ros.node.lane_state)
    try:
        if transport == 'stdio':
            from mcp.server.stdio import stdio_server
            print('mcp_gateway ready (stdio)', file=sys.stderr, flush=True)
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, initialization_options(server))
        else:
            import uvicorn
            app = lane_view.mount(http_app(server, config, host), config, host, ros.node, tools)
            uv_config = uvicorn.Config(app, host=host, port=port, log_level='warning',
                                       lifespan='on')
            uv_server = uvicorn.Server(uv_config)

            async def announce_when_listening() -> None:
                # "ready" means a client can connect: only once the socket is bound.
                while not uv_server.started:
                    await anyio.sleep(0.01)
                print(f'mcp_gateway ready on http://{host}:{port}/mcp (lane view: '
                      f'http://{host}:{port}/lanes)', file=sys.stderr, flush=True)

            async with anyio.create_task_group() as group:
                group.start_soon(announce_when_listening)
                await uv_server.serve()
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await tools.aclose()
            if unity is not None:
                await unity.aclose()
        ros.stop()


def _sigterm_as_interrupt(signum, frame) -> None:  # noqa: ARG001 - signal API
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        config_path = args.config or _config_param(argv)
        if not config_path:
            raise ConfigError('<none>: <file>: no config file (use --config FILE)')
        config = load_config(config_path)
        unity_config = load_unity_config(config.unity, config_path)
        gateway = config.gateway
        transport = args.transport or gateway.transport
        host = args.host or gateway.host
        port = args.port if args.port is not None else gateway.port
        anyio.run(serve, config, transport, host, port, args.node_name, unity_config)
        return 0
    except ConfigError as exc:
        print(f'config error: {exc}', file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f'mcp_gateway: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def _config_param(argv: Sequence[str]) -> Optional[str]:
    """`--ros-args -p config_file:=FILE`, as launch files pass it."""
    for index, arg in enumerate(argv):
        if arg == '-p' and index + 1 < len(argv) and argv[index + 1].startswith('config_file:='):
            return argv[index + 1].split(':=', 1)[1]
    return None


if __name__ == '__main__':
    raise SystemExit(main())

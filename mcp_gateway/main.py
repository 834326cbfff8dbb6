"""The `mcp_gateway` executable: a ROS 2 node and an MCP server in one process.

    mcp_gateway [--config FILE] [--transport stdio|http] [--host H] [--port P]

The config file comes from `--config`, `--ros-args -p config_file:=FILE` or the environment
variable SKILL_LANES_CONFIG (skill_lanes.runtime.config_path). stdio (default) lets an MCP
client spawn it; streamable HTTP serves a long-running gateway on the robot at
http://H:P/mcp (see mcp_gateway/http.py for binding and the bearer token).

Lifecycle, as for the other executables (skill_lanes.runtime): Ctrl-C and SIGTERM stop it
in order (running calls cancelled, their goals cancelled at the lane manager) and exit 0;
over stdio it also stops when stdin closes, and a client that vanished mid-call (broken
pipe) ends it quietly. The node and the ROS context are destroyed on every path.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from skill_lanes.stop_signal import StopSignal  # ROS-free: installed before the slow imports

if TYPE_CHECKING:
    from skill_lanes.config import Config
    from mcp_gateway.unity.config import UnityConfig

# Everything heavy (rclpy, the MCP SDK, pydantic models) is imported inside the functions,
# after main() has taken over Ctrl-C and SIGTERM: a launch that stops while the gateway is
# still importing then gets a clean exit instead of a KeyboardInterrupt traceback.
CONFIG_ENV = 'SKILL_LANES_CONFIG'  # the same as skill_lanes.runtime.CONFIG_ENV
PACKAGE = 'skill_lanes'


def package_version() -> str:
    """This package's version (MCP serverInfo.version) from its installed metadata: what
    setup.py and package.xml say, as pip or colcon installed it; '0+unknown' when run from a
    source tree that was never installed.
    """
    import importlib.metadata
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return '0+unknown'


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Our own flags; the ROS arguments (`--ros-args ...`) are left to rclpy."""
    import rclpy
    parser = argparse.ArgumentParser(prog='mcp_gateway', description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', help=f'skill_lanes YAML file (or ROS parameter '
                                         f'config_file, or env {CONFIG_ENV})')
    parser.add_argument('--transport', choices=['stdio', 'http'], default=None)
    parser.add_argument('--host', default=None)
    parser.add_argument('--port', type=int, default=None)
    parser.add_argument('--node-name', default=None, help='ROS node name (default unique)')
    return parser.parse_args(rclpy.utilities.remove_ros_args(args=list(argv))[1:])


async def serve_stdio(server: Any) -> None:
    """Serve one client on stdin/stdout until stdin closes (or the client vanishes)."""
    import anyio
    from mcp.server.stdio import stdio_server

    from mcp_gateway.server import initialization_options
    client_gone = (BrokenPipeError, ConnectionResetError, anyio.BrokenResourceError,
                   anyio.ClosedResourceError)
    print('mcp_gateway ready (stdio)', file=sys.stderr, flush=True)
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, initialization_options(server))
    except* client_gone:
        _silence_stdout()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null: the client's end is gone.

    Else the interpreter's last flush at exit prints a BrokenPipeError of its own.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


async def serve(config: Config, transport: str, host: str, port: int,
                node_name: Optional[str], signals: StopSignal,
                unity_config: Optional[UnityConfig] = None) -> None:
    """Start the node and the tools, serve MCP until stopped, then stop in order."""
    import anyio

    from mcp_gateway.http import http_app, serve_http
    from mcp_gateway.node import RosRuntime
    from mcp_gateway.permissions import Permissions
    from mcp_gateway.server import build_server
    from mcp_gateway.skill_tools import SkillTools
    ros = RosRuntime.start(config, node_name)
    tools = SkillTools(config, ros.node)
    providers: list = [tools]
    unity = None
    try:
        if unity_config is not None and unity_config.enabled:
            from mcp_gateway.unity.tools import UnityTools
            unity = UnityTools(unity_config, owner=ros.node.get_fully_qualified_name())
            providers.append(unity)
        # Named clients (gateway.clients) only over HTTP: stdio has gateway.skills alone.
        permissions = Permissions.from_config(config, os.environ,
                                              with_clients=transport == 'http')
        ros.node.publish_tool_lanes(config.gateway.name, transport, [
            entry for entry in tools.tool_lanes() if entry['skill'] in permissions.offered])
        server = build_server(config.gateway.name, package_version(), providers,
                              lambda: ros.node.lane_state,
                              operator_token_env=config.gateway.operator_token_env,
                              permissions=permissions, job_skill=tools.job_skill)
        # Refusals (no token for a public bind) before anything runs: one clear line.
        app = None
        if transport == 'http':
            from mcp_gateway import lane_view
            app = lane_view.mount(http_app(server, config, host, permissions), config, host,
                                  ros.node, tools, permissions)
        async with anyio.create_task_group() as group:
            if transport == 'stdio':
                # Cancelling the stdio session cancels its running calls (and their goals).
                signals.arm(group.cancel_scope.cancel)
                await serve_stdio(server)
            else:
                # uvicorn stops gracefully: its sessions cancel their running calls.
                stop = anyio.Event()
                signals.arm(stop.set)
                await serve_http(app, host, port, stop)
            group.cancel_scope.cancel()
    finally:
        signals.disarm()
        with anyio.CancelScope(shield=True):
            await tools.aclose()
            if unity is not None:
                await unity.aclose()
        ros.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the gateway; exit 0 on a normal or signalled stop, 2 on a start-up error."""
    signals = StopSignal()
    import anyio
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from skill_lanes.config import ConfigError, load_config
    from skill_lanes.runtime import close_ros, config_path
    from mcp_gateway.http import GatewayError
    from mcp_gateway.tool_names import check_skill_names
    from mcp_gateway.unity.config import load_unity_config
    argv = list(sys.argv if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        path = config_path(args.config, argv)
        config = load_config(path)
        check_skill_names(config, str(path))
        unity_config = load_unity_config(config.unity, str(path))
        gateway = config.gateway
        transport = args.transport or gateway.transport
        host = args.host or gateway.host
        port = args.port if args.port is not None else gateway.port
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        anyio.run(serve, config, transport, host, port, args.node_name, signals,
                  unity_config)
        return 0
    except ConfigError as exc:
        print(f'config error: {exc}', file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f'mcp_gateway: {exc}', file=sys.stderr)
        return 2
    finally:
        close_ros(None)


if __name__ == '__main__':
    raise SystemExit(main())

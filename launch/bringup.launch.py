"""Bring up skill_lanes: the lane manager and the MCP gateway over HTTP.

    ros2 launch skill_lanes bringup.launch.py config:=/path/robot.yaml
    ros2 launch skill_lanes bringup.launch.py sim:=true        # simulated robot, no hardware
    ros2 launch skill_lanes bringup.launch.py sim:=true namespace:=robot1 port:=8766

Launch arguments:
  config     The skill_lanes YAML (lanes, skills, driver action servers) that every process
             reads. Required unless sim:=true, where it defaults to the installed
             share/skill_lanes/config/sim_robot.yaml: a real robot never silently gets the
             simulated skills. A relative path is looked up in the working directory, then
             in share/skill_lanes/config/ and share/skill_lanes/; when not found, the error
             lists every place it looked.
  sim        false | true. true also starts sim_driver, the simulated action servers the
             sim config's skills point at.
  namespace  '' (default) | e.g. robot1. Every node runs in this namespace, and so do all
             their interfaces: the lane manager's (config lane_manager.namespace, relative
             by default), the drivers named relatively in the config (the sim config's
             sim/navigate becomes /robot1/sim/navigate), the tool-lanes topic. Two stacks on
             one robot then never collide (give each gateway its own port).
  log_level  info (default) | debug | warn | error | fatal: the nodes' ROS log level.
  respawn    false (default) | true. false: the lane manager and the gateway are required,
             and when either exits the whole launch shuts down. true: every process is
             restarted respawn_delay seconds after it exits (the lane manager's restart
             semantics are in the README); a start-up failure (exit code 2: a bad config)
             still ends the launch instead of looping.
  respawn_delay  2.0 seconds.
  transport  http (default). The gateway's MCP transport. stdio is refused here: an MCP
             client must own a stdio gateway's stdin, so such a client runs
             `ros2 run skill_lanes mcp_gateway --transport stdio` itself.
  host       127.0.0.1. Address the HTTP gateway binds. For any other address the gateway
             refuses to start unless the environment variable named by the config's
             gateway.token_env (default SKILL_LANES_TOKEN) holds a bearer token: export it
             before `ros2 launch` (launched processes inherit the environment).
  port       8765. Port of the HTTP gateway (MCP endpoint http://HOST:PORT/mcp).
transport, host and port override the config file's gateway: section.

Each process gets the config both as `--config FILE` and as the ROS parameter `config_file`.
A required process that fails (e.g. a bad config file: one line naming the key at fault, exit
code 2) makes the launch shut down and `ros2 launch` exit non-zero.
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'skill_lanes'
START_FAILURE = 2  # what every skill_lanes executable returns when it cannot start


class BringupError(RuntimeError):
    """A launch argument that cannot work; the message says why and what to do."""


def _share() -> str:
    try:
        return get_package_share_directory(PACKAGE)
    except PackageNotFoundError:
        return ''


def find_config(config: str, sim: bool) -> str:
    """The config file to use: the argument, else the simulated robot's when sim:=true."""
    share = _share()
    if not config:
        if not sim:
            raise BringupError(
                'skill_lanes bringup: config:=/path/robot.yaml is required '
                '(or sim:=true for the simulated robot)')
        config = 'sim_robot.yaml'
    config = os.path.expanduser(config)
    if os.path.isabs(config):
        candidates = [config]
    else:
        candidates = [os.path.abspath(config)]
        if share:
            candidates += [os.path.join(share, 'config', config), os.path.join(share, config)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    looked = ', '.join(candidates)
    where = '' if share or os.path.isabs(config) else \
        f' (package {PACKAGE} is not installed, so its share folder was not searched)'
    raise BringupError(f'skill_lanes bringup: config file {config!r} not found; looked in: '
                       f'{looked}{where}')


def _on_exit(name: str, required: bool):
    """What happens when a process exits: a start-up failure always fails the launch."""
    def handler(event, _context):
        code = event.returncode
        if code == START_FAILURE:
            raise BringupError(f'{name} could not start (exit code {code}): see its output '
                               'above')
        if required:
            if code not in (0, None):
                raise BringupError(f'{name} failed (exit code {code}): see its output above')
            return [Shutdown(reason=f'required process {name} exited')]
        return None
    return handler


def _nodes(context):
    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    if argument('transport') != 'http':
        raise BringupError(
            f'skill_lanes bringup: transport:={argument("transport")} cannot work under '
            "launch (an MCP client must own a stdio gateway's stdin and stop it); use "
            'transport:=http here, or let the MCP client run '
            '`ros2 run skill_lanes mcp_gateway --transport stdio`')
    sim = argument('sim') == 'true'
    config = find_config(argument('config'), sim)
    respawn = argument('respawn') == 'true'
    namespace = argument('namespace').strip('/')

    def node(executable, *arguments, required=False, **kwargs):
        return Node(
            package=PACKAGE, executable=executable, output='screen',
            namespace=namespace or None,
            parameters=[{'config_file': config}],
            arguments=['--config', config, *arguments],
            ros_arguments=['--log-level', argument('log_level')],
            respawn=respawn, respawn_delay=float(argument('respawn_delay')),
            # Python buffers a pipe: without this, "ready" lines reach the console late.
            additional_env={'PYTHONUNBUFFERED': '1'},
            on_exit=_on_exit(executable, required and not respawn),
            **kwargs)

    nodes = [
        node('lane_manager', required=True),
        node('mcp_gateway', '--transport', 'http', '--host', argument('host'),
             '--port', argument('port'), required=True),
    ]
    if sim:
        nodes.append(node('sim_driver'))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value='',
            description='skill_lanes config YAML; required unless sim:=true (then '
                        'share/skill_lanes/config/sim_robot.yaml); relative paths are also '
                        'looked up in share/skill_lanes/config/'),
        DeclareLaunchArgument(
            'sim', default_value='false', choices=['true', 'false'],
            description='also start the simulated driver (sim_driver)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='ROS namespace of every node and of their interfaces'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='ROS log level of every node'),
        DeclareLaunchArgument(
            'respawn', default_value='false', choices=['true', 'false'],
            description='restart processes that exit (else the launch stops with them)'),
        DeclareLaunchArgument(
            'respawn_delay', default_value='2.0',
            description='seconds before a respawned process restarts'),
        DeclareLaunchArgument(
            'transport', default_value='http',
            description='MCP transport of the gateway: http only under launch'),
        DeclareLaunchArgument(
            'host', default_value='127.0.0.1', description='address the HTTP gateway binds'),
        DeclareLaunchArgument(
            'port', default_value='8765', description='port of the HTTP gateway'),
        OpaqueFunction(function=_nodes),
    ])

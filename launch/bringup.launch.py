"""Bring up skill_lanes: the lane manager and the MCP gateway over HTTP.

    ros2 launch skill_lanes bringup.launch.py config:=/path/robot.yaml
    ros2 launch skill_lanes bringup.launch.py sim:=true        # simulated robot, no hardware

Launch arguments:
  config     The skill_lanes YAML (lanes, skills, driver action servers) that every process
             reads. Required unless sim:=true, where it defaults to the installed
             share/skill_lanes/config/sim_robot.yaml: a real robot never silently gets the
             simulated skills, and a launch without either stops with an error.
  sim        false | true. true also starts sim_driver, the simulated action servers the
             sim config's skills point at.
  transport  http (default) | stdio. The gateway's MCP transport. Under launch only http is
             useful: with stdio an MCP client must own the gateway's stdin, so such a client
             runs `ros2 run skill_lanes mcp_gateway --transport stdio` itself.
  host       127.0.0.1. Address the HTTP gateway binds. For any other address the gateway
             refuses to start unless the environment variable named by the config's
             gateway.token_env (default SKILL_LANES_TOKEN) holds a bearer token: export it
             before `ros2 launch` (launched processes inherit the environment).
  port       8765. Port of the HTTP gateway (MCP endpoint http://HOST:PORT/mcp).
transport, host and port override the config file's gateway: section.

Each process gets the config both as `--config FILE` and as the ROS parameter `config_file`.
If the lane manager or the gateway exits (a bad config file exits with one line naming the
key at fault), the whole launch shuts down rather than run half a stack.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'skill_lanes'


def _config_file(context):
    """The config path: the argument, else the simulated robot's when sim:=true."""
    config = LaunchConfiguration('config').perform(context).strip()
    sim = LaunchConfiguration('sim').perform(context) == 'true'
    if not config:
        if not sim:
            raise RuntimeError(
                'skill_lanes bringup: config:=/path/robot.yaml is required '
                '(or sim:=true for the simulated robot)')
        config = os.path.join(get_package_share_directory(PACKAGE), 'config', 'sim_robot.yaml')
    config = os.path.abspath(os.path.expanduser(config))
    if not os.path.isfile(config):
        raise RuntimeError(f'skill_lanes bringup: config file not found: {config}')
    return config


def _nodes(context):
    config = _config_file(context)

    def node(executable, *arguments, **kwargs):
        return Node(
            package=PACKAGE, executable=executable, output='screen',
            parameters=[{'config_file': config}],
            arguments=['--config', config, *arguments],
            # Python buffers a pipe: without this, "ready" lines reach the console late.
            additional_env={'PYTHONUNBUFFERED': '1'},
            **kwargs)

    stop_all = Shutdown(reason='a required skill_lanes process exited')
    return [
        node('lane_manager', on_exit=stop_all),
        node('mcp_gateway',
             '--transport', LaunchConfiguration('transport'),
             '--host', LaunchConfiguration('host'),
             '--port', LaunchConfiguration('port'),
             on_exit=stop_all),
        node('sim_driver', condition=IfCondition(LaunchConfiguration('sim'))),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value='',
            description='skill_lanes config YAML; required unless sim:=true '
                        '(then defaults to share/skill_lanes/config/sim_robot.yaml)'),
        DeclareLaunchArgument(
            'sim', default_value='false', choices=['true', 'false'],
            description='also start the simulated driver (sim_driver)'),
        DeclareLaunchArgument(
            'transport', default_value='http', choices=['http', 'stdio'],
            description='MCP transport of the gateway (http under launch)'),
        DeclareLaunchArgument(
            'host', default_value='127.0.0.1', description='address the HTTP gateway binds'),
        DeclareLaunchArgument(
            'port', default_value='8765', description='port of the HTTP gateway'),
        OpaqueFunction(function=_nodes),
    ])

"""Two stacks on one ROS domain, one under a ROS namespace and one not, with the same config
(same lane and skill names): each gateway's stop button stops its own robot only.

Each stack is a recording driver (test/recording_driver.py, the judge), a lane manager and an
HTTP gateway, all separate OS processes; the namespaced stack's get `--ros-args -r
__ns:=/robot1`, as launch's `namespace:=robot1` gives them. Both robots run a goal, one stack's
lane view stop button (`POST /lanes/motion/stop`) is pressed, and the drivers' own records
say which goal was cancelled and which ran to its end. The gateway once built the button's
service name from the config's namespace as written: robot1's button then called
`/lane_manager/lanes/motion/stop`, the other robot's, and robot1 kept running.
"""
from __future__ import annotations

import http.client
import json
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest
from action_msgs.msg import GoalStatus

from recording_driver import read_records
from ros_client import GoalCall, RosTestClient
from support import ProcessGroup, wait_until
from test_gateway import free_port, gateway_env

pytest.importorskip('std_srvs.srv', reason='std_srvs (wheel ros-std-srvs) not installed')

TOKEN = 'namespaced-stacks-token'
BUTTON = {'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json',
          'X-Skill-Lanes': '1'}
SUCCEEDED = GoalStatus.STATUS_SUCCEEDED
ENDED_BY_US = (GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
GOAL_S = 6.0  # long enough for the other robot's goal to be running when a button is pressed
# Relative names throughout, as in sim_robot.yaml: the namespace moves all of them.
CONFIG = textwrap.dedent("""
    lanes:
      motion: {policy: queue}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: rec/navigate}
    lane_manager: {driver_lost_s: 3.0, driver_response_s: 1.0}
    gateway: {lane_manager_wait_s: 10.0}
""")


class RobotStack:
    """Recording driver + lane manager + HTTP gateway, in `namespace` ('' = none)."""

    def __init__(self, processes: ProcessGroup, tmp_path: Path, config: Path,
                 namespace: str) -> None:
        tag = namespace.strip('/') or 'plain'
        ros_args = ('--ros-args', '-r', f'__ns:={namespace}') if namespace else ()
        self.name = tag
        self.record = str(tmp_path / f'{tag}.jsonl')
        self.port = free_port()
        self.driver = processes.start(
            [sys.executable, 'test/recording_driver.py', '--record', self.record,
             '--driver', f'rec/navigate:motion:duration={GOAL_S}', *ros_args],
            name=f'{tag}_driver')
        self.manager = processes.python('lane_manager.node', '--config', str(config),
                                        *ros_args, name=f'{tag}_lane_manager')
        self.gateway = processes.python(
            'mcp_gateway', '--config', str(config), '--transport', 'http',
            '--port', str(self.port), *ros_args, env=gateway_env(SKILL_LANES_TOKEN=TOKEN),
            name=f'{tag}_gateway')
        self.client: Optional[RosTestClient] = None
        self.lane_manager = f'{namespace}/lane_manager'

    def wait_ready(self) -> None:
        self.driver.wait_for_output('recording_driver ready', timeout=60)
        self.manager.wait_for_output('lane_manager ready', timeout=60)
        self.gateway.wait_for_output('mcp_gateway ready on', timeout=60)
        self.client = RosTestClient(namespace=self.lane_manager)
        self.client.wait_for_skills('navigate', timeout=60)
        self.client.wait_state(lambda s: s['node'] == self.lane_manager and all(
            d['status_known'] for d in s['lanes']['motion']['drivers'].values()), 30,
            what=f'{self.name}: the driver status known to its lane manager')

    def press_stop(self) -> tuple[int, dict]:
        """The lane view's stop button of this stack's gateway: (HTTP status, answer)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=60)
        try:
            conn.request('POST', '/lanes/motion/stop', body=b'{}', headers=BUTTON)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def driver_records(self, event: str) -> list[dict]:
        return [r for r in read_records([self.record]) if r['event'] == event]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def test_each_stop_button_stops_its_own_robot_only(tmp_path, processes, rclpy_context):
    config = tmp_path / 'robot.yaml'
    config.write_text(CONFIG)
    robot1 = RobotStack(processes, tmp_path, config, '/robot1')
    plain = RobotStack(processes, tmp_path, config, '')
    stacks = (robot1, plain)
    try:
        for stack in stacks:
            stack.wait_ready()
        # Until a gateway has discovered the stop service its button falls back to the
        # gateway's own lane_stop tool: press (nothing runs yet) until it reaches a service.
        for stack in stacks:
            wait_until(lambda: stack.press_stop()[1].get('via') == 'lane_manager', 30,
                       interval=0.2, what=f'{stack.name}: the stop button to reach a service')
        for turn, (pressed, other) in enumerate(((robot1, plain), (plain, robot1)), start=1):
            goals: dict[str, GoalCall] = {s.name: s.client.send('navigate') for s in stacks}
            for stack in stacks:
                assert goals[stack.name].accepted(), stack.name
                wait_until(lambda: len(stack.driver_records('start')) == turn, 30,
                           what=f'{stack.name}: goal {turn} running at its driver')
            status, answer = pressed.press_stop()
            assert status == 200 and answer['ok'] and answer['via'] == 'lane_manager', answer
            assert goals[pressed.name].result(timeout=30)[0] in ENDED_BY_US, pressed.name
            assert goals[other.name].result(timeout=30)[0] == SUCCEEDED, other.name
            # The judges: each robot's own driver.
            for stack, how in ((pressed, 'canceled'), (other, 'succeeded')):
                ends = stack.driver_records('end')
                assert [e['how'] for e in ends][turn - 1:] == [how], (stack.name, ends)
                assert len(stack.driver_records('start')) == turn, stack.name
    finally:
        for stack in stacks:
            stack.close()


@pytest.mark.parametrize('node_namespace, configured, expected', [
    ('/', 'lane_manager', '/lane_manager'),
    ('/robot1', 'lane_manager', '/robot1/lane_manager'),
    ('/robot1', '/lane_manager', '/lane_manager'),          # absolute: as written
    ('/fleet/robot1', 'arms/lane_manager', '/fleet/robot1/arms/lane_manager'),
])
def test_stack_names_resolve_under_the_nodes_namespace(rclpy_context, node_namespace,
                                                       configured, expected):
    """The one rule both sides use (interfaces.StackNames), on a node in a namespace."""
    from rclpy.node import Node

    from skill_lanes.interfaces import StackNames
    node = Node('stack_names_probe', namespace=node_namespace)
    try:
        names = StackNames.of(node, configured)
        assert names.lane_manager == expected
        assert names.lane_service('motion', 'stop') == f'{expected}/lanes/motion/stop'
        assert names.skill_server('navigate') == f'{expected}/skills/navigate'
        assert names.lane_state == f'{expected}/lane_state'
        under = node_namespace.rstrip('/')
        assert names.tool_lanes == f'{under}/skill_lanes/tool_lanes'
        assert names.goal_agents == f'{under}/skill_lanes/goal_agents'
    finally:
        node.destroy_node()

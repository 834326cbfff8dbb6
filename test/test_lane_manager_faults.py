"""Lane manager faults, each with a stack of its own: a driver killed mid-goal, shutdown with
goals in flight, bad configuration files.
"""
from __future__ import annotations

import time

import pytest

from ros_client import RosTestClient
from test_lane_manager import ABORTED, CONFIG


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / 'robot.yaml'
    path.write_text(CONFIG)
    return path


def test_driver_killed_mid_goal_aborts_and_frees_lane(config_file, rclpy_context, processes):
    nav_driver = processes.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
                                  '--only', 'arm_home', name='doomed_driver')
    # The config file as a ROS parameter, the way launch files pass it.
    manager = processes.python('lane_manager.node', '--ros-args', '-p',
                               f'config_file:={config_file}', name='lane_manager')
    nav_driver.wait_for_output('sim_driver ready')
    manager.wait_for_output('lane_manager ready')
    client = RosTestClient()
    try:
        client.wait_for_skills('arm_home')
        call = client.send('arm_home')
        assert call.accepted()
        client.wait_state(lambda s: (s['lanes']['arm']['holder'] or {}).get('state') == 'active',
                          what='goal active at the driver')
        nav_driver.kill()
        killed_at = time.monotonic()
        assert call.result(timeout=30)[0] == ABORTED
        noticed_after = time.monotonic() - killed_at
        assert noticed_after < 15, f'driver death noticed only after {noticed_after:.1f} s'
        assert 'lost' in client.ending('arm', call.id)['reason']
        # The caller has its end, but a silent driver may be stalled, not dead: the lane
        # stays held, saying why, until the driver leaves the graph (the DDS lease, ~20 s).
        held = client.lane_state['lanes']['arm']
        assert held['holder'] is not None and 'stopped answering' in held['held_because']
        client.wait_state(lambda s: s['lanes']['arm']['holder'] is None, 60,
                          what='the lane to free once the driver left the graph')
    finally:
        client.close()


def test_shutdown_cancels_forwarded_goals(config_file, rclpy_context, processes):
    sim = processes.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
                           '--only', 'arm_home', name='sim_driver')
    manager = processes.python('lane_manager.node', '--config', str(config_file),
                               name='lane_manager')
    sim.wait_for_output('sim_driver ready')
    manager.wait_for_output('lane_manager ready')
    client = RosTestClient()
    try:
        client.wait_for_skills('arm_home')
        call = client.send('arm_home')
        assert call.accepted()
        client.wait_stats(lambda s: s['lanes']['arm']['active'] == 1, what='goal at driver')
        assert manager.stop() == 0
        client.wait_stats(lambda s: s['lanes']['arm']['canceled'] == 1 and
                          s['lanes']['arm']['active'] == 0, what='the driver to see the cancel')
    finally:
        client.close()


@pytest.mark.parametrize('snippet, expected', [
    ('lanes: {m: {policy: fifo}}', 'lanes.m.policy'),
    ('lanes: {m: {polcy: queue}}', 'lanes.m.polcy: unknown key'),
    ('lanes: {m: {max_queue: -1}}', 'lanes.m.max_queue'),
    ('skills: {x: {lane: nope, action_type: test_msgs/action/Fibonacci, driver: /a}}',
     "skills.x.lane: unknown lane 'nope'"),
    ('skills: {x: {action_type: test_msgs/action/Missing, driver: /a}}',
     'skills.x.action_type: type not importable'),
    ('skills: {"bad-name": {action_type: test_msgs/action/Fibonacci, driver: /a}}',
     "invalid name 'bad-name'"),
    ('lanes: [unclosed', 'malformed YAML'),
    ('lanes:\n  motion: {}\n  motion: {policy: reject}\n', "duplicate key 'motion'"),
])
def test_bad_config_exits_with_one_clear_line(tmp_path, processes, snippet, expected):
    path = tmp_path / 'bad.yaml'
    path.write_text(snippet)
    proc = processes.python('lane_manager.node', '--config', str(path), name='lane_manager')
    assert proc.popen.wait(timeout=30) == 2
    lines = [line for line in proc.output().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f'config error: {path}: ') and expected in lines[0], lines[0]

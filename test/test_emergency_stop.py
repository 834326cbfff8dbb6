"""Emergency stop end to end, the lane manager and simulated drivers as OS processes.

A std_msgs/Bool publisher in this process plays the robot's stop button. True cancels every
goal of the configured lanes at the drivers (their own counters say so), empties the queues,
refuses new goals with reason `emergency_stop` (lane state, /diagnostics) and leaves other
lanes alone; false lets goals in again.
"""
from __future__ import annotations

import textwrap

import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Bool

from driver_truth_support import DiagnosticsWatch
from skill_lanes.interfaces import EMERGENCY_STOP_QOS
from support import sim_robot_client

TOPIC = '/test_emergency_stop'
CONFIG = textwrap.dedent(f"""
    lanes:
      base:  {{policy: queue, max_queue: 4}}
      arm:   {{policy: queue, max_queue: 4}}
      tools: {{policy: queue}}
    skills:
      drive: {{lane: base, action_type: test_msgs/action/Fibonacci, driver: /sim/base}}
      grasp: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/arm}}
      fetch: {{lanes: [base, arm], action_type: test_msgs/action/Fibonacci,
              driver: /sim/whole_body}}
      probe: {{lane: tools, action_type: test_msgs/action/Fibonacci, driver: /sim/probe}}
    lane_manager: {{emergency_stop_topic: {TOPIC}, emergency_stop_lanes: [base, arm]}}
    sim:
      default: {{duration_s: 4.0, feedback_hz: 10}}
      skills:
        fetch: {{duration_s: 0.3}}
""")


@pytest.fixture(scope='module')
def stack(tmp_path_factory, rclpy_context):
    path = tmp_path_factory.mktemp('cfg') / 'robot.yaml'
    path.write_text(CONFIG)
    with sim_robot_client(path, '/lane_manager', 'lane_manager',
                          ('drive', 'grasp', 'fetch', 'probe'), all_lanes_free=True) as client:
        yield client


def test_emergency_stop_cancels_refuses_and_lets_goals_in_again(stack):
    client = stack
    stop = client.node.create_publisher(Bool, TOPIC, EMERGENCY_STOP_QOS)
    diagnostics = DiagnosticsWatch(client.node)
    try:
        running = [client.send('drive'), client.send('grasp'), client.send('probe')]
        queued = client.send('drive')
        assert all(call.accepted() for call in running + [queued])
        client.wait_stats(lambda s: all(s['lanes'].get(n, {}).get('active') == 1
                                        for n in ('base', 'arm', 'tools')),
                          what='a goal at the drivers of every lane')
        stop.publish(Bool(data=True))
        # A caller that did not ask for the cancel sees its goal aborted (rclpy's server
        # cannot end an EXECUTING goal as canceled unasked); the reason names the stop.
        for call, lane in zip(running[:2] + [queued], ('base', 'arm', 'base')):
            assert call.result()[0] in (GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED)
            assert client.ending(lane, call.id)['reason'].startswith('emergency_stop')
        stats = client.wait_stats(lambda s: s['lanes']['base']['active'] == 0
                                  and s['lanes']['arm']['active'] == 0,
                                  what='the drivers to end the cancelled goals')
        assert stats['lanes']['base']['canceled'] == 1 and stats['lanes']['arm']['canceled'] == 1
        assert stats['lanes']['base']['goals'] == 1  # the queued goal never reached a driver
        state = client.wait_state(lambda s: s['emergency_stop']['active'],
                                  what='the emergency stop in lane state')
        assert state['lanes']['base']['blocked_by'] == ['emergency_stop']
        assert state['lanes']['tools']['blocked_by'] == []
        for skill, lane in (('grasp', 'arm'), ('fetch', 'base')):
            refused = client.send(skill)
            assert not refused.accepted()
            assert client.refusal(lane, refused.id)['reason'].startswith('emergency_stop')
        status = diagnostics.wait_for('arm', lambda s: 'emergency_stop' in s.message,
                                      what='the emergency stop in /diagnostics')
        assert status.level == DiagnosticStatus.ERROR
        assert running[2].result()[0] == GoalStatus.STATUS_SUCCEEDED  # another lane runs on
        assert client.wait_stats(lambda s: True)['lanes']['tools']['canceled'] == 0
        stop.publish(Bool(data=False))
        client.wait_state(lambda s: not s['emergency_stop']['active'],
                          what='the emergency stop released')
        again = client.send('fetch')
        assert again.result()[0] == GoalStatus.STATUS_SUCCEEDED
    finally:
        stop.publish(Bool(data=False))
        diagnostics.close()
        client.node.destroy_publisher(stop)

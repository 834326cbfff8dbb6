"""Operator take-over end to end (`<ns>/lanes/<lane>/take` / `give_back`), the lane manager
and simulated drivers as OS processes, judged by the drivers' own counters.

- on_take: cancel -> the running goal is cancelled at its driver, the queue emptied;
- on_take: wait -> the running goal finishes, the queue is emptied;
both refuse every new goal with reason `operator` until given back.
"""
from __future__ import annotations

import textwrap

import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticStatus

from driver_truth_support import DiagnosticsWatch, call_lane_service
from support import sim_robot_client

ENDED_BY_US = (GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED)
CONFIG = textwrap.dedent("""
    lanes:
      arm:  {policy: queue, on_take: cancel}
      base: {policy: queue, on_take: wait}
    skills:
      grasp: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/arm}
      drive: {lane: base, action_type: test_msgs/action/Fibonacci, driver: /sim/base}
    sim:
      default: {duration_s: 1.5, feedback_hz: 10}
      skills:
        grasp: {duration_s: 5.0}
""")


@pytest.fixture(scope='module')
def stack(tmp_path_factory, rclpy_context):
    path = tmp_path_factory.mktemp('cfg') / 'robot.yaml'
    path.write_text(CONFIG)
    with sim_robot_client(path, '/lane_manager', 'lane_manager', ('grasp', 'drive'),
                          all_lanes_free=True) as client:
        yield client


def take_and_check_refusals(client, lane: str, skill: str) -> None:
    refused = client.send(skill)
    assert not refused.accepted()
    assert client.refusal(lane, refused.id)['reason'].startswith('operator')
    state = client.wait_state(lambda s: lane in s['taken'], what=f'{lane} taken in lane state')
    assert state['lanes'][lane]['blocked_by'] == ['operator']


def test_take_cancels_the_running_goal_refuses_agents_until_given_back(stack):
    client = stack
    diagnostics = DiagnosticsWatch(client.node)
    try:
        running, queued = client.send('grasp'), client.send('grasp')
        assert running.accepted() and queued.accepted()
        client.wait_stats(lambda s: s['lanes']['arm']['active'] == 1, what='grasp running')
        response = call_lane_service(client.node, 'arm', 'take')
        assert response.success and 'taken by an operator' in response.message
        for call in (running, queued):
            assert call.result()[0] in ENDED_BY_US
            assert client.ending('arm', call.id)['reason'].startswith('operator')
        stats = client.wait_stats(lambda s: s['lanes']['arm']['active'] == 0)
        assert stats['lanes']['arm']['canceled'] == 1 and stats['lanes']['arm']['goals'] == 1
        take_and_check_refusals(client, 'arm', 'grasp')
        status = diagnostics.wait_for('arm', lambda s: 'operator' in s.message)
        assert status.level == DiagnosticStatus.ERROR
        response = call_lane_service(client.node, 'arm', 'give_back')
        assert response.success and 'given back' in response.message
        assert not call_lane_service(client.node, 'arm', 'give_back').success
        client.wait_state(lambda s: 'arm' not in s['taken'], what='arm given back')
        again = client.send('grasp')
        assert again.accepted()
        client.wait_stats(lambda s: s['lanes']['arm']['goals'] == 2, what='grasp runs again')
        again.cancel()
    finally:
        diagnostics.close()


def test_take_with_on_take_wait_lets_the_running_goal_finish(stack):
    client = stack
    running, queued = client.send('drive'), client.send('drive')
    assert running.accepted() and queued.accepted()
    client.wait_stats(lambda s: s['lanes']['base']['active'] == 1, what='drive running')
    assert call_lane_service(client.node, 'base', 'take').success
    assert queued.result()[0] in ENDED_BY_US
    assert client.ending('base', queued.id)['reason'].startswith('operator')
    take_and_check_refusals(client, 'base', 'drive')
    assert running.result()[0] == GoalStatus.STATUS_SUCCEEDED
    stats = client.wait_stats(lambda s: s['lanes']['base']['active'] == 0)
    assert stats['lanes']['base']['canceled'] == 0 and stats['lanes']['base']['goals'] == 1
    assert call_lane_service(client.node, 'base', 'give_back').success
    client.wait_state(lambda s: 'base' not in s['taken'], what='base given back')
    assert client.send('drive').result()[0] == GoalStatus.STATUS_SUCCEEDED

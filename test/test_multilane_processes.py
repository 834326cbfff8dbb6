"""Multi-lane skills end to end: the lane manager and the simulated drivers as OS processes.

A whole-body skill (`lanes: [base, arm]`) waits, holding nothing, while one of its lanes is
busy; a single-lane goal for its other lane waits behind it instead of overtaking it; it
runs alone on both lanes; the drivers' own counters show no overlap on either lane.
"""
from __future__ import annotations

import textwrap

import pytest
from action_msgs.msg import GoalStatus

from support import sim_robot_client

CONFIG = textwrap.dedent("""
    lanes:
      base: {policy: queue, max_queue: 4}
      arm:  {policy: queue, max_queue: 4}
    skills:
      fetch: {lanes: [base, arm], action_type: test_msgs/action/Fibonacci,
              driver: /sim/whole_body}
      drive: {lane: base, action_type: test_msgs/action/Fibonacci, driver: /sim/base}
      grasp: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/arm}
    sim:
      default: {duration_s: 0.5, feedback_hz: 10}
      skills:
        grasp: {duration_s: 2.0}
""")


@pytest.fixture(scope='module')
def stack(tmp_path_factory, rclpy_context):
    path = tmp_path_factory.mktemp('cfg') / 'robot.yaml'
    path.write_text(CONFIG)
    with sim_robot_client(path, '/lane_manager', 'lane_manager', ('fetch', 'drive', 'grasp'),
                          all_lanes_free=True) as client:
        yield client


def test_whole_body_skill_waits_holding_nothing_and_is_not_overtaken(stack):
    client = stack
    grasp = client.send('grasp')
    assert grasp.accepted()
    client.wait_state(lambda s: (s['lanes']['arm']['holder'] or {}).get('skill') == 'grasp',
                      what='grasp holding the arm')
    fetch = client.send('fetch')
    assert fetch.accepted()
    state = client.wait_state(
        lambda s: [q['goal_id'] for q in s['lanes']['base']['queue']] == [fetch.id],
        what='fetch waiting in the base queue')
    assert state['lanes']['base']['holder'] is None        # it holds nothing while waiting
    assert state['lanes']['base']['queue'][0]['lanes'] == ['base', 'arm']
    assert state['skills']['fetch']['lanes'] == ['base', 'arm']
    drive = client.send('drive')
    assert drive.accepted()
    state = client.wait_state(lambda s: len(s['lanes']['base']['queue']) == 2,
                              what='drive queued behind fetch')
    assert [q['goal_id'] for q in state['lanes']['base']['queue']] == [fetch.id, drive.id]
    assert client.wait_stats(lambda s: 'base' in s['lanes'])['drivers'].get(
        'fetch', {}).get('goals', 0) == 0
    state = client.wait_state(
        lambda s: (s['lanes']['base']['holder'] or {}).get('goal_id') == fetch.id, 20,
        what='fetch holding both lanes')
    assert state['lanes']['arm']['holder']['goal_id'] == fetch.id
    assert state['lanes']['base']['holder']['lanes'] == ['base', 'arm']
    for call in (grasp, fetch, drive):
        assert call.result()[0] == GoalStatus.STATUS_SUCCEEDED
    state = client.wait_state(
        lambda s: all(lane['holder'] is None for lane in s['lanes'].values()), 20,
        what='every lane free again')
    ended = {lane: [e['goal_id'] for e in state['lanes'][lane]['last_endings']]
             for lane in ('base', 'arm')}
    assert ended == {'base': [fetch.id, drive.id], 'arm': [grasp.id, fetch.id]}
    stats = client.wait_stats(lambda s: s['drivers'].get('drive', {}).get('goals') == 1)
    for lane in ('base', 'arm'):
        assert stats['lanes'][lane]['overlaps'] == 0
        assert stats['lanes'][lane]['max_active'] == 1
        assert stats['lanes'][lane]['goals'] == 2
    assert stats['drivers']['fetch']['goals'] == 1

"""The lane manager as a real OS process, in front of the simulated driver (another process),
with rclpy clients in this process and in separate client processes.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid

import pytest
from action_msgs.msg import GoalStatus
from test_msgs.action import Fibonacci

from diagnostic_msgs.msg import DiagnosticStatus

from driver_truth_support import DiagnosticsWatch, call_lane_service
from skill_lanes.action_link import RaceFreeActionClient
from skill_lanes.goal_ids import goal_id_msg
from ros_client import RosTestClient
from support import ProcessGroup, wait_until

SUCCEEDED, CANCELED, ABORTED = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED,
                                GoalStatus.STATUS_ABORTED)

CONFIG = textwrap.dedent("""
    lanes:
      motion:       {policy: queue, max_queue: 3}
      manipulation: {policy: reject, retry_after_ms: 700}
      arm:          {policy: preempt}
      stuck:        {policy: queue, max_hold_s: 1.0, cancel_grace_s: 1.0}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /sim/navigate}
      dock:     {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /sim/dock}
      grasp:    {lane: manipulation, action_type: test_msgs/action/Fibonacci, driver: /sim/grasp}
      arm_home: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/arm_home}
      arm_retract: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/arm_retract,
                    priority: 10}
      hang:     {lane: stuck, action_type: test_msgs/action/Fibonacci, driver: /sim/hang}
      deaf:     {lane: stuck, action_type: test_msgs/action/Fibonacci, driver: /sim/deaf}
      ghost:    {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /nobody/home}
      inspect:  {action_type: test_msgs/action/NestedMessage, driver: /sim/inspect}
    lane_manager: {driver_wait_s: 1.0, driver_lost_s: 3.0}
    sim:
      default: {duration_s: 0.6, feedback_hz: 20}
      skills:
        hang: {outcome: hang}
        deaf: {outcome: ignore_cancel}
        ghost: {outcome: absent}
        arm_home: {duration_s: 5.0}
""")


@pytest.fixture(scope='module')
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'robot.yaml'
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope='module')
def stack(config_file, rclpy_context):
    """sim_driver + lane_manager processes, shared by this module's tests."""
    group = ProcessGroup()
    client = None
    try:
        sim = group.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
                           name='sim_driver')
        manager = group.python('lane_manager.node', '--config', str(config_file),
                               name='lane_manager')
        sim.wait_for_output('sim_driver ready')
        manager.wait_for_output('lane_manager ready')
        client = RosTestClient()
        client.wait_for_skills('navigate', 'dock', 'grasp', 'arm_home', 'arm_retract', 'hang')
        client.wait_state(lambda s: s['skills']['navigate']['driver_available'],
                          what='the lane manager to see the drivers')
        wait_lanes_settled(client)
        yield client, manager, sim
    finally:
        if os.environ.get('SKILL_LANES_DEBUG'):
            print('CLIENT STATE', client and client.lane_state, client and client.sim_stats)
            for proc in group.procs:
                print(proc.name, proc.output()[-4000:], proc.dump_stacks())
        if client is not None:
            client.close()
        group.stop_all()


def wait_lanes_settled(client: RosTestClient) -> None:
    """Every driver's status known (an absent one: gone after driver_lost_s): lanes free."""
    client.wait_state(lambda s: all(not lane.get('occupants') and lane['holder'] is None
                                    for lane in s['lanes'].values()), 20,
                      what='every lane free (all drivers known)')


def lane_stats(client: RosTestClient, lane: str) -> dict:
    return client.wait_stats(lambda s: lane in s['lanes'])['lanes'][lane]


def wait_lane_idle(client: RosTestClient, lane: str) -> None:
    client.wait_state(lambda s: s['lanes'][lane]['holder'] is None, 20,
                      what=f'lane {lane} to be free')


def test_same_lane_goals_never_overlap_and_run_fifo(stack):
    client, _, _ = stack
    calls = [client.send(skill) for skill in ('navigate', 'dock', 'navigate', 'dock', 'dock')]
    # One holder and max_queue=3 waiting: the fifth is refused.
    assert [c.accepted() for c in calls] == [True, True, True, True, False]
    statuses = [c.result()[0] for c in calls[:4]]
    assert statuses == [SUCCEEDED] * 4
    ended = [c.ended_at for c in calls[:4]]
    assert ended == sorted(ended), 'queued goals must run in arrival order'
    stats = lane_stats(client, 'motion')
    assert stats['overlaps'] == 0 and stats['max_active'] == 1
    refusal = client.refusal('motion', calls[4].id)
    assert 'queue is full' in refusal['reason']
    wait_lane_idle(client, 'motion')


def test_different_lanes_run_concurrently(stack):
    client, _, _ = stack
    calls = [client.send('navigate'), client.send('grasp')]
    assert all(c.accepted() for c in calls)
    client.wait_stats(lambda s: s['max_concurrent'] >= 2, 10,
                      what='two lanes active at the drivers at once')
    assert [c.result()[0] for c in calls] == [SUCCEEDED, SUCCEEDED]


def test_reject_policy_refuses_with_reason_in_lane_state(stack):
    client, _, _ = stack
    first = client.send('grasp')
    assert first.accepted()
    second = client.send('grasp')
    assert not second.accepted()
    refusal = client.refusal('manipulation', second.id)
    assert refusal['retry_after_ms'] == 700
    assert refusal['holder'] == {'skill': 'grasp', 'goal_id': first.id}
    assert 'held by' in refusal['reason']
    assert first.result()[0] == SUCCEEDED


def test_preempt_cancels_lower_priority_holder_first(stack):
    client, _, _ = stack
    low = client.send('arm_home')
    assert low.accepted()
    client.wait_state(lambda s: (s['lanes']['arm']['holder'] or {}).get('state') == 'active',
                      what='arm_home active at its driver')
    high = client.send('arm_retract')
    assert high.accepted()
    status, _ = low.result()
    assert status == ABORTED
    assert 'preempted' in client.ending('arm', low.id)['reason']
    assert high.result()[0] == SUCCEEDED
    assert lane_stats(client, 'arm')['overlaps'] == 0


def test_cancel_running_goal_reaches_driver(stack):
    client, _, _ = stack
    before = lane_stats(client, 'arm')['canceled']
    call = client.send('arm_home')
    assert call.accepted()
    client.wait_stats(lambda s: s['lanes']['arm']['active'] == 1, what='arm_home running')
    response = call.cancel()
    assert len(response.goals_canceling) == 1
    assert call.result()[0] == CANCELED
    client.wait_stats(lambda s: s['lanes']['arm']['canceled'] == before + 1,
                      what='the driver to see the cancel')
    wait_lane_idle(client, 'arm')


def test_cancel_queued_goal_never_reaches_driver(stack):
    client, _, _ = stack
    wait_lane_idle(client, 'motion')
    goals_before = lane_stats(client, 'motion')['goals']
    running = client.send('navigate')
    queued = [client.send('dock') for _ in range(3)]
    assert running.accepted() and all(q.accepted() for q in queued)
    client.wait_state(lambda s: len(s['lanes']['motion']['queue']) == 3,
                      what='three dock goals queued')
    for call in queued:
        call.cancel()
    # CANCELED every time (not ABORTED): a queued goal ends inside the cancel callback.
    assert [q.result()[0] for q in queued] == [CANCELED] * 3
    assert running.result()[0] == SUCCEEDED
    wait_lane_idle(client, 'motion')
    assert lane_stats(client, 'motion')['goals'] == goals_before + 1


def test_max_hold_cancels_a_hung_goal_and_frees_the_lane(stack):
    client, _, _ = stack
    call = client.send('hang')
    assert call.accepted()
    assert call.result(timeout=20)[0] == ABORTED
    assert 'max_hold_s' in client.ending('stuck', call.id)['reason']
    follow_up = client.send('hang')
    assert follow_up.accepted()
    assert follow_up.result(timeout=20)[0] == ABORTED


def test_driver_ignoring_cancel_keeps_the_lane_held_until_an_operator_releases_it(stack):
    client, _, _ = stack
    wait_lane_idle(client, 'stuck')
    call = client.send('deaf')   # refuses every cancel; max_hold_s=1 and cancel_grace_s=1
    assert call.accepted()
    state = client.wait_state(
        lambda s: 'has not ended goal' in (s['lanes']['stuck']['held_because'] or ''),
        what='the unhonoured cancel named in the lane state')
    holder = state['lanes']['stuck']['holder']
    assert holder['goal_id'] == call.id and holder['driver'] == '/sim/deaf'
    assert holder['driver_goal_id'] in state['lanes']['stuck']['held_because']
    watch = DiagnosticsWatch(client.node)
    try:
        status = watch.wait_for('stuck', lambda st: st.level == DiagnosticStatus.ERROR,
                                what='an ERROR naming the driver')
        assert '/sim/deaf' in status.message and holder['driver_goal_id'] in status.message
    finally:
        watch.close()
    waiting = client.send('hang')
    assert waiting.accepted()   # queued: the lane stays held, never freed by a timeout
    time.sleep(2.0)
    assert client.lane_state['lanes']['stuck']['holder']['goal_id'] == call.id
    assert lane_stats(client, 'stuck')['active'] == 1
    response = call_lane_service(client.node, 'stuck', 'release')
    assert response.success and holder['driver_goal_id'] in response.message
    assert call.result(timeout=20)[0] == ABORTED
    ending = client.ending('stuck', call.id)
    assert ending['reason'] == 'released by an operator' and ending['driver_result'] is False
    assert waiting.result(timeout=20)[0] == ABORTED  # hang: max_hold_s cancels it
    assert not call_lane_service(client.node, 'stuck', 'release').success


def test_lane_stop_cancels_holder_and_empties_queue(stack):
    client, _, _ = stack
    wait_lane_idle(client, 'arm')
    running = client.send('arm_home')
    assert running.accepted()
    client.wait_stats(lambda s: s['lanes']['arm']['active'] == 1, what='arm_home running')
    queued = client.send('arm_home')
    assert queued.accepted()
    response = call_lane_service(client.node, 'arm', 'stop')
    assert response.success
    assert running.result()[0] in (ABORTED, CANCELED)
    assert queued.result()[0] in (ABORTED, CANCELED)
    for call in (running, queued):
        assert 'lane_stop' in client.ending('arm', call.id)['reason']
    wait_lane_idle(client, 'arm')


def test_driver_that_never_comes_up_aborts_with_reason(stack):
    client, _, _ = stack
    wait_lane_idle(client, 'motion')
    call = client.send('ghost')
    assert call.accepted()
    assert call.result(timeout=20)[0] == ABORTED
    assert 'unavailable' in client.ending('motion', call.id)['reason']
    assert client.lane_state['skills']['ghost']['driver_available'] is False
    after = client.send('navigate')
    assert after.accepted() and after.result()[0] == SUCCEEDED


def test_unlaned_skill_is_never_arbitrated(stack):
    client, _, _ = stack
    from test_msgs.action import NestedMessage
    calls = [client.send('inspect', action_type=NestedMessage) for _ in range(3)]
    assert all(c.accepted() for c in calls)
    assert [c.result()[0] for c in calls] == [SUCCEEDED] * 3
    assert client.wait_stats(lambda s: 'inspect' in s['drivers'])['drivers']['inspect'][
        'max_active'] >= 2


def test_feedback_is_relayed(stack):
    client, _, _ = stack
    wait_lane_idle(client, 'motion')
    call = client.send('navigate')
    assert call.result()[0] == SUCCEEDED
    assert call.feedback_count >= 3


def test_clients_in_separate_processes_are_serialized(stack, processes):
    client, _, _ = stack
    wait_lane_idle(client, 'motion')
    before = lane_stats(client, 'motion')
    senders = [processes.start([sys.executable, 'test/goal_sender.py', 'navigate' if i % 2 else
                                'dock', '1'], name=f'sender{i}') for i in range(3)]
    for sender in senders:
        wait_until(lambda s=sender: s.popen.poll() is not None, 60, what='client process')
    results = [json.loads(line) for s in senders for line in s.output().splitlines()
               if line.startswith('{')]
    assert len(results) == 3 and all(r['status'] == SUCCEEDED for r in results), results
    after = lane_stats(client, 'motion')
    assert after['goals'] == before['goals'] + 3
    assert after['overlaps'] == 0


def test_lane_state_and_diagnostics_format(stack):
    client, _, _ = stack
    state = client.lane_state
    assert set(state['lanes']) == {'motion', 'manipulation', 'arm', 'stuck'}
    motion = state['lanes']['motion']
    for key in ('policy', 'holder', 'queue', 'last_refusals', 'last_endings', 'counters',
                'skills', 'drivers_available'):
        assert key in motion
    assert state['skills']['navigate']['server'] == '/lane_manager/skills/navigate'
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    seen = {}
    sub = client.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda msg: seen.update({s.name: s for s in msg.status}), 10)
    try:
        wait_until(lambda: 'skill_lanes: lane motion' in seen, 10, what='/diagnostics')
        assert seen['skill_lanes: lane motion'].level == DiagnosticStatus.ERROR  # ghost driver
        assert seen['skill_lanes: lane manipulation'].level == DiagnosticStatus.OK
    finally:
        client.node.destroy_subscription(sub)


def test_the_sim_driver_counts_and_names_an_overlap_sent_around_the_lane_manager(stack):
    """The judge of every overlap test can see one: two goals sent straight to a driver."""
    client, _, _ = stack
    wait_lane_idle(client, 'manipulation')
    before = lane_stats(client, 'manipulation')
    # Straight to the driver (around the lane manager), so nothing serializes them.
    bypass = RaceFreeActionClient(client.node, Fibonacci, '/sim/grasp')
    try:
        assert bypass.wait_for_server(timeout_sec=20)
        ids = [uuid.uuid4() for _ in range(2)]
        sends = [bypass.send_goal_async(Fibonacci.Goal(), goal_uuid=goal_id_msg(i))
                 for i in ids]
        wait_until(lambda: all(f.done() for f in sends), 20, what='both goals answered')
        stats = client.wait_stats(
            lambda s: s['lanes']['manipulation']['goals'] == before['goals'] + 2
            and s['lanes']['manipulation']['active'] == 0, 20, what='both goals ended')
    finally:
        bypass.destroy()
    assert stats['lanes']['manipulation']['overlaps'] == before['overlaps'] + 1
    event = stats['overlap_events'][-1]
    assert event['lane'] == 'manipulation' and event['driver'] == '/sim/grasp'
    assert {event['goal'], *event['running']} == {str(i) for i in ids}
    # The lane manager saw them too (external goals) and holds the lane until they end.
    wait_lane_idle(client, 'manipulation')

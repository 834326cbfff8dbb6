"""Approval end to end (`approval: operator`), the lane manager and a RECORDING DRIVER of the
tests' own as separate OS processes (test/recording_driver.py); a plain ROS action client
sends the goals. The records are the judge: a goal awaiting approval never reaches its
driver, reaches it once approved (the lane's SetBool service: a physical button, or the
decision topic), and a denied or timed-out one never does; another goal of the same lane
runs while one awaits approval.
"""
from __future__ import annotations

import json

import pytest
from action_msgs.msg import GoalStatus
from std_msgs.msg import String
from std_srvs.srv import SetBool

from support import wait_until
from test_driver_truth import Stack, write_config

from skill_lanes.interfaces import (APPROVAL_DECISIONS_QOS, APPROVE_VERB,
                                     approval_decisions_topic, lane_service_name)

SUCCEEDED, ABORTED = GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED
BUTTON = 'an operator (service /lane_manager/lanes/arm/approve)'


@pytest.fixture
def stack(tmp_path, processes, rclpy_context):
    config = write_config(tmp_path / 'robot.yaml', {'arm': '{policy: queue}'}, {
        'grip': ('arm', '/rec/grip', ', approval: operator, approval_timeout_s: 60'),
        'hurry': ('arm', '/rec/hurry', ', approval: operator, approval_timeout_s: 1.5'),
        'move': ('arm', '/rec/move', ''),
    })
    built = Stack(tmp_path, processes, config)
    built.driver('rec', '/rec/grip:arm:duration=0.5', '/rec/hurry:arm:duration=0.5',
                 '/rec/move:arm:duration=0.5')
    built.start_manager('grip', 'hurry', 'move')
    built.settled('arm')
    yield built
    built.close()


def ran_at(stack: Stack, driver: str) -> list[dict]:
    """What the driver itself recorded for its goals (start and end lines)."""
    return [r for r in stack.goals_ran('arm') if r['driver'] == driver]


def awaiting(stack: Stack, *goal_ids: str) -> dict:
    return stack.client.wait_state(
        lambda s: [w['goal_id'] for w in s['lanes']['arm']['awaiting_approval']]
        == list(goal_ids), what=f'{goal_ids} awaiting approval in lane state')


def press(stack: Stack, approve: bool) -> SetBool.Response:
    """The lane's approve button: std_srvs/SetBool on the oldest waiting goal."""
    node = stack.client.node
    client = node.create_client(SetBool, lane_service_name('/lane_manager', 'arm',
                                                           APPROVE_VERB))
    try:
        wait_until(client.service_is_ready, 15, what='approve service')
        future = client.call_async(SetBool.Request(data=approve))
        wait_until(future.done, 15, interval=0.01, what='approve answer')
        return future.result()
    finally:
        node.destroy_client(client)


def move_runs_meanwhile(stack: Stack) -> None:
    """Another goal of the lane runs to its end while the approval goal waits: the lane is
    free, the driver reachable, and the lane manager has had every chance to send it.
    """
    move = stack.client.send('move')
    assert move.accepted() and move.result(30)[0] == SUCCEEDED
    assert [r['event'] for r in ran_at(stack, '/rec/move')][-2:] == ['start', 'end']


def test_a_goal_waits_for_the_button_and_reaches_its_driver_only_after(stack):
    grip = stack.client.send('grip')
    assert grip.accepted()
    state = awaiting(stack, grip.id)
    [entry] = state['lanes']['arm']['awaiting_approval']
    assert entry['state'] == 'awaiting_approval' and entry['approval_timeout_s'] == 60
    assert state['lanes']['arm']['holder'] is None  # it holds nothing
    move_runs_meanwhile(stack)
    assert ran_at(stack, '/rec/grip') == []          # the driver's own word: never reached
    assert stack.client.lane_state['lanes']['arm']['awaiting_approval'][0]['goal_id'] == grip.id
    response = press(stack, True)
    assert response.success and f'goal {grip.id} approved by {BUTTON}' in response.message
    assert grip.result(30)[0] == SUCCEEDED
    assert [r['event'] for r in ran_at(stack, '/rec/grip')] == ['start', 'end']
    decision = stack.client.wait_state(
        lambda s: s['lanes']['arm']['approvals'])['lanes']['arm']['approvals'][-1]
    assert decision['goal_id'] == grip.id and decision['decision'] == 'approved'
    assert decision['by'] == BUTTON and decision['at'] > 0
    again = press(stack, True)
    assert not again.success and 'no goal awaits approval' in again.message
    assert stack.peak()['arm'] == 1


def test_denied_goals_never_reach_their_driver(stack):
    first, second = stack.client.send('grip'), stack.client.send('grip')
    assert first.accepted() and second.accepted()
    awaiting(stack, first.id, second.id)
    response = press(stack, False)                    # the button denies the OLDEST
    assert response.success and f'goal {first.id} denied by {BUTTON}' in response.message
    assert first.result(30)[0] == ABORTED
    assert stack.client.ending('arm', first.id)['reason'] == f'denied by {BUTTON}'
    publisher = stack.client.node.create_publisher(
        String, approval_decisions_topic('/lane_manager'), APPROVAL_DECISIONS_QOS)
    wait_until(lambda: publisher.get_subscription_count() > 0, 15, what='decision reader')
    publisher.publish(String(data=json.dumps(
        {'goal_id': second.id, 'approve': False, 'by': 'alice at the console'})))
    assert second.result(30)[0] == ABORTED
    ending = stack.client.ending('arm', second.id)
    assert ending['reason'] == 'denied by alice at the console'
    assert ending['driver_result'] is False
    move_runs_meanwhile(stack)
    assert ran_at(stack, '/rec/grip') == []
    approvals = stack.client.lane_state['lanes']['arm']['approvals']
    assert [(a['goal_id'], a['decision'], a['by']) for a in approvals] == [
        (first.id, 'denied', BUTTON), (second.id, 'denied', 'alice at the console')]


def test_a_goal_not_approved_in_time_never_reaches_its_driver(stack):
    hurry = stack.client.send('hurry')
    assert hurry.accepted()
    assert hurry.result(30)[0] == ABORTED
    assert stack.client.ending('arm', hurry.id)['reason'] == (
        'not approved within approval_timeout_s=1.5 s')
    decision = stack.client.lane_state['lanes']['arm']['approvals'][-1]
    assert decision['decision'] == 'timed_out' and decision['by'] is None
    assert not press(stack, True).success             # too late: nothing waits
    move_runs_meanwhile(stack)
    assert ran_at(stack, '/rec/hurry') == []


def test_approved_by_goal_id_on_the_decision_topic(stack):
    grip = stack.client.send('grip')
    assert grip.accepted()
    awaiting(stack, grip.id)
    publisher = stack.client.node.create_publisher(
        String, approval_decisions_topic('/lane_manager'), APPROVAL_DECISIONS_QOS)
    wait_until(lambda: publisher.get_subscription_count() > 0, 15, what='decision reader')
    publisher.publish(String(data='not json'))       # ignored, logged
    publisher.publish(String(data=json.dumps({'goal_id': grip.id, 'approve': True,
                                              'by': 'bob'})))
    assert grip.result(30)[0] == SUCCEEDED
    assert [r['event'] for r in ran_at(stack, '/rec/grip')] == ['start', 'end']
    approvals = stack.client.lane_state['lanes']['arm']['approvals']
    assert [(a['goal_id'], a['decision'], a['by']) for a in approvals] == [
        (grip.id, 'approved', 'bob')]

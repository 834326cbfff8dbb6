"""Approval of goals (`approval: operator`), without ROS: the arbiter's awaiting list, the
keeper's decisions, the config keys and the decision message. The hypothesis machines in
test_arbiter.py and test_keeper.py drive the same rules through random interleavings.
"""
from __future__ import annotations

import json

import pytest

from lane_manager.approvals import parse_decision
from lane_manager.arbiter import Arbiter, CancelAtDriver, EndWithoutDriver, StartGoal
from skill_lanes.config import ConfigError, LaneConfig, LaneManagerConfig, parse_config
from lane_manager.goal_lifecycle import EndCaller, SendToDriver
from lane_manager.keeper import LaneKeeper, Notice, SkillRoute

from keeper_support import answering

FIB = 'test_msgs/action/Fibonacci'


def arbiter(policy: str = 'queue', **kw) -> Arbiter:
    return Arbiter({'lane': LaneConfig(policy=policy, **kw), 'arm': LaneConfig()})


def await_one(arb: Arbiter, gid: str = 'w', now: float = 0.0, timeout: float = 10.0,
              priority: int = 0, lanes=None) -> None:
    decision = arb.submit(gid, 'careful', 'lane', priority, now, lanes=lanes,
                          approval_timeout_s=timeout)
    assert decision.accepted and decision.awaiting_approval
    assert decision.effects == () and 'awaiting approval' in decision.reason


def test_a_goal_awaiting_approval_holds_nothing_and_others_run_meanwhile():
    arb = arbiter()
    await_one(arb)
    assert arb.lanes['lane'].holder is None and not arb.lanes['lane'].queue
    assert arb.submit('other', 'nav', 'lane', 0, 1.0).effects == (StartGoal('other'),)
    lane = arb.snapshot(2.0, wall_offset=100.0)['lane']
    [waiting] = lane['awaiting_approval']
    assert waiting['goal_id'] == 'w' and waiting['state'] == 'awaiting_approval'
    assert waiting['since'] == 100.0 and waiting['deadline'] == 110.0
    assert waiting['left_s'] == 8.0 and lane['holder']['goal_id'] == 'other'
    assert arb.queued('lane') == ['w'] and arb.awaiting('lane') == ['w']
    assert arb.tick(5.0) == []  # not yet timed out: nothing happens to it
    arb.check_invariants()


def test_approved_on_a_free_lane_it_starts_and_the_decision_is_recorded():
    arb = arbiter()
    await_one(arb)
    decided, text, effects = arb.decide('w', True, 'alice', 3.0)
    assert decided and effects == [StartGoal('w')] and 'approved by alice' in text
    lane = arb.snapshot(3.0)['lane']
    assert lane['awaiting_approval'] == [] and lane['holder']['goal_id'] == 'w'
    assert lane['approvals'] == [{'goal_id': 'w', 'skill': 'careful', 'decision': 'approved',
                                  'by': 'alice', 'at': 3.0}]
    assert lane['counters']['approved'] == 1
    assert arb.decide('w', False, 'bob', 4.0)[0] is False  # decided once


def test_approved_it_arrives_at_the_approval_behind_goals_queued_meanwhile():
    arb = arbiter()
    await_one(arb, priority=0)
    arb.submit('holder', 'nav', 'lane', 0, 1.0)
    arb.submit('queued', 'nav', 'lane', 0, 2.0)
    decided, text, effects = arb.decide('w', True, 'alice', 3.0)
    assert decided and effects == [] and 'queued behind' in text
    assert arb.queued('lane') == ['queued', 'w']
    assert arb.goal_ended('holder', 'succeeded', 4.0) == [StartGoal('queued')]
    assert arb.goal_ended('queued', 'succeeded', 5.0) == [StartGoal('w')]


def test_approved_on_a_busy_reject_lane_it_ends_aborted_with_the_busy_reason():
    arb = arbiter('reject')
    await_one(arb)
    arb.submit('holder', 'nav', 'lane', 0, 1.0)
    decided, _, effects = arb.decide('w', True, 'alice', 2.0)
    [end] = effects
    assert decided and isinstance(end, EndWithoutDriver) and end.outcome == 'aborted'
    assert end.reason.startswith('approved by alice, then refused: ')
    assert "held by skill 'nav' goal holder" in end.reason
    arb.check_invariants()


def test_approved_on_a_preempt_lane_it_preempts_a_lower_priority_holder():
    arb = arbiter('preempt')
    await_one(arb, priority=5)
    arb.submit('low', 'nav', 'lane', 0, 1.0)
    _, _, effects = arb.decide('w', True, 'alice', 2.0)
    assert [type(e) for e in effects] == [CancelAtDriver]
    assert effects[0].goal_id == 'low' and 'preempted by' in effects[0].reason


def test_denied_it_ends_aborted_naming_who_and_never_starts():
    arb = arbiter()
    await_one(arb)
    decided, text, effects = arb.decide('w', False, 'bob', 2.0)
    assert decided and effects == [EndWithoutDriver('w', 'aborted', 'denied by bob')]
    lane = arb.snapshot(2.0)['lane']
    assert lane['approvals'][-1]['decision'] == 'denied' and lane['approvals'][-1]['by'] == 'bob'
    assert lane['last_endings'][-1]['reason'] == 'denied by bob'
    assert lane['counters']['denied'] == 1 and arb.lanes_of('w') == ()


def test_not_approved_in_time_it_ends_aborted_saying_so():
    arb = arbiter()
    await_one(arb, timeout=2.5)
    assert arb.tick(2.4) == []
    assert arb.tick(2.5) == [EndWithoutDriver(
        'w', 'aborted', 'not approved within approval_timeout_s=2.5 s')]
    lane = arb.snapshot(3.0)['lane']
    assert lane['approvals'][-1]['decision'] == 'timed_out'
    assert lane['approvals'][-1]['by'] is None and lane['counters']['approval_timeouts'] == 1
    assert arb.decide('w', True, 'late', 3.0)[0] is False


def test_cancelled_while_waiting_it_ends_canceled():
    arb = arbiter()
    await_one(arb)
    assert arb.cancel('w', 1.0) == [EndWithoutDriver('w', 'canceled', 'canceled by its caller')]
    assert arb.awaiting('lane') == []


def test_the_awaiting_list_has_its_own_bound():
    arb = arbiter(max_queue=0, max_awaiting_approval=1)
    await_one(arb, 'w1')
    refused = arb.submit('w2', 'careful', 'lane', 0, 0.0, approval_timeout_s=5.0)
    assert not refused.accepted and 'max_awaiting_approval' in refused.reason


def test_a_blocked_lane_refuses_an_approval_goal_at_once():
    arb = arbiter()
    arb.block('lane', 'emergency_stop', 'emergency stop')
    refused = arb.submit('w', 'careful', 'lane', 0, 0.0, approval_timeout_s=5.0)
    assert not refused.accepted and refused.reason == 'emergency stop'


def test_a_multi_lane_goal_awaits_in_every_lane_and_is_decided_once():
    arb = arbiter()
    await_one(arb, lanes=['lane', 'arm'])
    assert arb.awaiting('lane') == ['w'] and arb.awaiting('arm') == ['w']
    assert arb.lanes_of('w') == ('lane', 'arm')
    arb.check_invariants()
    decided, _, effects = arb.decide('w', True, 'alice', 1.0)
    assert decided and effects == [StartGoal('w')]
    assert arb.lanes['arm'].holder is arb.lanes['lane'].holder


# ---------------------------------------------------------------- keeper
SETTINGS = LaneManagerConfig(driver_wait_s=3.0, driver_response_s=2.0, driver_lost_s=1.0)


def keeper() -> LaneKeeper:
    k = LaneKeeper({'lane': LaneConfig()},
                   {'careful': SkillRoute('lane', '/drv', approval_timeout_s=5.0),
                    'nav': SkillRoute('lane', '/drv')}, SETTINGS,
                   new_id=iter(f'd{i}' for i in range(99)).__next__)
    answering(k, ['/drv'], 0.0)
    answering(k, ['/drv'], 1.5)
    return k


def sends(actions) -> list[str]:
    return [a.caller_goal_id for a in actions if isinstance(a, SendToDriver)]


def test_keeper_sends_only_after_approval_and_logs_each_decision():
    k = keeper()
    decision, actions = k.submit('w', 'careful', 2.0)
    assert decision.awaiting_approval and sends(actions) == []
    assert any(isinstance(a, Notice) and 'awaits' in a.text for a in actions)
    assert sends(k.tick(3.0)) == []
    decided, text, actions = k.decide_oldest('lane', True, 'the button', 3.5)
    assert decided and sends(actions) == ['w']
    assert any(isinstance(a, Notice) and 'approved by the button' in a.text for a in actions)
    assert k.decide_oldest('lane', True, 'the button', 4.0) == (
        False, "no goal awaits approval in lane 'lane'", [])


def test_keeper_denial_and_timeout_end_the_caller_without_the_driver():
    k = keeper()
    k.submit('w1', 'careful', 2.0)
    k.submit('w2', 'careful', 2.0)
    _, _, actions = k.decide('w1', False, 'bob', 2.5)
    assert EndCaller('w1', 'aborted', 'denied by bob') in actions and sends(actions) == []
    actions = k.tick(7.0)
    assert EndCaller('w2', 'aborted', 'not approved within approval_timeout_s=5 s') in actions
    assert sends(actions) == [] and k.goals == {}
    k.check_invariants()


def test_keeper_emergency_stop_ends_waiting_goals_like_queued_ones():
    k = keeper()
    k.submit('w', 'careful', 2.0)
    message, actions = k.block('emergency_stop', True, ['lane'], 'emergency stop', 2.5)
    assert EndCaller('w', 'canceled', 'emergency stop') in actions
    assert '1 queued goal(s) ended' in message and k.arbiter.awaiting('lane') == []


# ---------------------------------------------------------------- config and message
def test_config_approval_keys():
    config = parse_config({'lanes': {'arm': {}}, 'skills': {
        'grip': {'lane': 'arm', 'action_type': FIB, 'driver': '/g', 'approval': 'operator',
                 'approval_timeout_s': 30},
        'move': {'lane': 'arm', 'action_type': FIB, 'driver': '/m'}}})
    assert config.skills['grip'].approval == 'operator'
    assert config.skills['grip'].approval_timeout_s == 30
    assert config.skills['move'].approval == 'none'
    assert config.lanes['arm'].max_awaiting_approval == 8


@pytest.mark.parametrize('skill, expected', [
    ({'approval': 'operator'}, 'skills.x: approval: operator needs a lane'),
    ({'lane': 'arm', 'approval': 'yes'}, "skills.x.approval: Input should be 'none' or "
                                         "'operator'"),
    ({'lane': 'arm', 'approval_timeout_s': 0}, 'skills.x.approval_timeout_s: Input should be '
                                               'greater than 0'),
])
def test_bad_approval_config_is_one_clear_error(skill, expected):
    with pytest.raises(ConfigError) as err:
        parse_config({'lanes': {'arm': {}}, 'skills': {
            'x': {**skill, 'action_type': FIB, 'driver': '/x'}}})
    assert expected in str(err.value) and '\n' not in str(err.value)


@pytest.mark.parametrize('name', ['goal_approve', 'goal_deny'])
def test_approval_tool_names_are_reserved(name):
    from mcp_gateway.tool_names import check_skill_names
    config = parse_config({'lanes': {'arm': {}}, 'skills': {
        name: {'lane': 'arm', 'action_type': FIB, 'driver': '/x'}}})
    with pytest.raises(ConfigError, match=f'robot.yaml: skills.{name}: .*reserved'):
        check_skill_names(config, 'robot.yaml')


def test_decision_message_parsing():
    ok = json.dumps({'goal_id': 'g', 'approve': True, 'by': '  alice  '})
    assert parse_decision(ok) == ('g', True, 'alice')
    assert parse_decision(json.dumps({'goal_id': 'g', 'approve': False})) == (
        'g', False, 'an operator')
    for bad in ('nope', '[]', json.dumps({'goal_id': 'g', 'approve': 'yes'}),
                json.dumps({'goal_id': 3, 'approve': True})):
        assert parse_decision(bad) is None


def test_who_decides_as_the_gateway_names_it():
    from mcp_gateway.approval import decider
    assert decider(None) == 'operator (MCP)'
    assert decider({'client': None, 'session': 's'}) == 'operator (MCP)'
    assert decider({'client': 'claude-code'}) == "operator 'claude-code' (MCP)"
    assert decider({'by': 'operator (lane view)'}) == 'operator (lane view)'
    long = decider({'client': 'x' * 300})  # cut as the lane manager cuts it, so it matches
    assert parse_decision(json.dumps({'goal_id': 'g', 'approve': True, 'by': long}))[2] == long


def test_diagnostics_warn_while_goals_await_approval():
    from lane_manager.diagnostics import WARN, lane_diagnostics
    arb = arbiter()
    await_one(arb)
    state = {'lanes': arb.snapshot(1.0), 'skills': {}}
    by_name = {name: (level, message, values)
               for name, level, message, values in lane_diagnostics(state)}
    level, message, values = by_name['skill_lanes: lane lane']
    assert level == WARN
    assert message == 'idle; 1 goal(s) awaiting approval (oldest: careful goal w)'
    assert values['awaiting_approval'] == 1 and values['count_approved'] == 0
    assert by_name['skill_lanes: lane arm'][0] == 0

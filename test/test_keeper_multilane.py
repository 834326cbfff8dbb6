"""The lane keeper with a multi-lane skill (`lanes: [base, arm]`), without ROS.

Every lane of the skill's driver stays held on the driver's word: a goal it reports running
that nobody sent through the lane manager, or one whose cancel it never confirmed, holds all
its lanes, so a single-lane goal of any of them waits.
"""
from __future__ import annotations

import itertools

from skill_lanes.config import LaneConfig, LaneManagerConfig
from lane_manager.goal_lifecycle import CancelGoalAtDriver, SendToDriver
from lane_manager.keeper import LaneKeeper, SkillRoute

from keeper_support import answering

LANES = {'base': LaneConfig(cancel_grace_s=1), 'arm': LaneConfig(cancel_grace_s=1)}
SKILLS = {'fetch': SkillRoute('base', '/whole_body', lanes=('base', 'arm')),
          'grasp': SkillRoute('arm', '/arm'), 'drive': SkillRoute('base', '/base')}
SETTINGS = LaneManagerConfig(driver_wait_s=3.0, driver_response_s=2.0, driver_lost_s=1.0,
                             on_start='wait')


def ready_keeper() -> LaneKeeper:
    ids = itertools.count()
    keeper = LaneKeeper(LANES, SKILLS, SETTINGS, new_id=lambda: f'd{next(ids)}')
    for driver in ('/whole_body', '/arm', '/base'):
        answering(keeper, [driver], 0.0)
        keeper.driver_status(driver, {}, 0.0)
    return keeper


def sent(actions) -> list[str]:
    return [a.driver_goal_id for a in actions if isinstance(a, SendToDriver)]


def test_multi_lane_goal_is_sent_once_holding_both_lanes_and_frees_both():
    keeper = ready_keeper()
    decision, actions = keeper.submit('c1', 'fetch', 1.0)
    assert decision.accepted and sent(actions) == ['d0']
    for skill in ('grasp', 'drive'):
        decision, actions = keeper.submit(f'{skill}1', skill, 1.1)
        assert decision.accepted and decision.queued_position == 0 and not sent(actions)
    state = keeper.snapshot(1.2)
    assert state['arm']['holder']['goal_id'] == 'c1' == state['base']['holder']['goal_id']
    assert '/whole_body' in state['arm']['drivers'] and '/whole_body' in state['base']['drivers']
    keeper.driver_answer('d0', True, 1.3)
    keeper.driver_status('/whole_body', {'d0': 2}, 1.3)
    actions = keeper.driver_result('d0', 'succeeded', object(), 2.0)
    actions += keeper.driver_status('/whole_body', {'d0': 4}, 2.0)
    assert sorted(sent(actions)) == ['d1', 'd2']
    keeper.check_invariants()


def test_ignored_cancel_keeps_every_lane_held():
    keeper = ready_keeper()
    keeper.submit('c1', 'fetch', 1.0)
    keeper.driver_answer('d0', True, 1.1)
    keeper.driver_status('/whole_body', {'d0': 2}, 1.1)
    actions = keeper.cancel('c1', 1.2)
    assert any(isinstance(a, CancelGoalAtDriver) for a in actions)
    for step in range(1, 40):  # the driver ignores the cancel and runs on; time passes
        actions = keeper.tick(1.2 + step)
        actions += keeper.driver_status('/whole_body', {'d0': 2}, 1.2 + step)
        assert not sent(actions)
    decision, actions = keeper.submit('g1', 'grasp', 50.0)
    assert decision.accepted and not sent(actions)
    state = keeper.snapshot(50.0)
    for lane in ('arm', 'base'):
        assert state[lane]['holder']['driver_goal_id'] == 'd0', state[lane]
    actions = keeper.driver_result('d0', 'canceled', object(), 51.0)
    actions += keeper.driver_status('/whole_body', {'d0': 5}, 51.0)
    assert sent(actions) == ['d1']
    keeper.check_invariants()


def test_external_goal_at_the_multi_lane_driver_holds_all_its_lanes():
    keeper = ready_keeper()
    keeper.driver_status('/whole_body', {'x': 2}, 1.0)
    for skill, lane in (('grasp', 'arm'), ('drive', 'base')):
        decision, actions = keeper.submit(f'{skill}1', skill, 1.1)
        assert decision.accepted and not sent(actions), lane
        assert 'external goal x' in keeper.snapshot(1.1)[lane]['held_because']
    actions = keeper.driver_status('/whole_body', {'x': 4}, 2.0)
    assert sorted(sent(actions)) == ['d0', 'd1']

"""The goal lifecycle's transition table (lane_manager/goal_lifecycle.py TRANSITIONS), walked.

Each listed move is made by the driver event that makes it on a robot; together the walks
cover the table exactly. Moves the table does not list are refused by `DriverGoal._move`,
so the keeper's adversarial state machine (test_keeper.py) fails on any of them.
"""
from __future__ import annotations

from typing import Callable

import pytest

from lane_manager.goal_lifecycle import TRANSITIONS, DriverGoal, Phase

RESPONSE_S = 2.0


def ours() -> DriverGoal:
    return DriverGoal('/arm', 'g1', 'arm', 0.0, 'caller1')


def sent() -> DriverGoal:
    goal = ours()
    goal.send(0.0)
    return goal


def running() -> DriverGoal:
    goal = sent()
    goal.answered(True, 0.1)
    return goal


def cancelling() -> DriverGoal:
    goal = running()
    goal.cancel('preempted', 0.2)
    return goal


def unconfirmed() -> DriverGoal:
    goal = running()
    goal.driver_lost(1.0, 0.5)
    return goal


def found(phase: Phase) -> Callable[[], DriverGoal]:
    return lambda: DriverGoal('/arm', 'theirs', 'arm', 0.0, None, phase)


# (start, event, expected phase after it): one walk per move of the table.
WALKS = [
    (ours, lambda g: g.send(1.0), Phase.SENT),
    (ours, lambda g: g.give_up_waiting('driver absent', 6.0), Phase.ENDED),
    (sent, lambda g: g.answered(True, 0.1), Phase.RUNNING),
    (sent, lambda g: g.tick(RESPONSE_S + 0.1, RESPONSE_S), Phase.UNCONFIRMED),
    (sent, lambda g: g.answered(False, 0.1), Phase.ENDED),
    (running, lambda g: g.cancel('preempted', 0.2), Phase.CANCELLING),
    (running, lambda g: g.driver_lost(1.0, 0.5), Phase.UNCONFIRMED),
    (running, lambda g: g.result('succeeded', object(), 0.9), Phase.ENDED),
    (cancelling, lambda g: g.driver_lost(1.0, 0.5), Phase.UNCONFIRMED),
    (cancelling, lambda g: g.result('canceled', object(), 0.9), Phase.ENDED),
    (unconfirmed, lambda g: g.status(6, 0.9), Phase.ENDED),
    (found(Phase.ADOPTED), lambda g: g.status(5, 0.9), Phase.ENDED),
    (found(Phase.EXTERNAL), lambda g: g.driver_gone(0.9), Phase.ENDED),
]


@pytest.mark.parametrize('start, event, expected', WALKS)
def test_walk(start, event, expected):
    goal = start()
    before = goal.phase
    event(goal)
    assert goal.phase is expected, (before, goal.phase)
    assert expected in TRANSITIONS[before]


def test_the_walks_cover_the_table_exactly():
    walked = {(start().phase, expected) for start, _, expected in WALKS}
    listed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert walked == listed
    assert set(TRANSITIONS) == set(Phase)


def test_an_unlisted_move_is_refused():
    goal = running()
    goal.result('succeeded', object(), 0.2)
    assert goal.phase is Phase.ENDED
    with pytest.raises(AssertionError, match='ended -> running'):
        goal._move(Phase.RUNNING, 0.3)

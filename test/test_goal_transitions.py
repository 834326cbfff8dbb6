"""The goal lifecycle's transition table (lane_manager/goal_lifecycle.py TRANSITIONS), walked.

Each listed move is made by the driver event that makes it on a robot; together the walks
cover the table exactly. Moves the table does not list are refused by `DriverGoal._move`,
so the keeper's adversarial state machine (test_keeper.py) fails on any of them.
"""
from __future__ import annotations

from typing import Callable

import pytest

from lane_manager.effects import CancelGoalAtDriver, DriverEnded, EndCaller
from lane_manager.goal_lifecycle import RESULT_WAIT_S, TRANSITIONS, DriverGoal, Phase

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


def listed() -> DriverGoal:
    """Its request unanswered, but the driver's status already lists it active."""
    goal = sent()
    goal.status(2, 0.05)
    return goal


def result_pending() -> DriverGoal:
    goal = running()
    goal.status(4, 0.8)
    return goal


def unanswered() -> DriverGoal:
    goal = sent()
    goal.tick(RESPONSE_S + 0.1, RESPONSE_S)
    return goal


def unconfirmed() -> DriverGoal:
    goal = running()
    goal.driver_lost(1.0, 0.5)
    return goal


def found(phase: Phase) -> Callable[[], DriverGoal]:
    return lambda: DriverGoal('/arm', 'theirs', 'arm', 0.0, None, phase)


LATE = RESPONSE_S + 0.1

# (start, event, expected phase after it): every move of the table, by the driver event
# that makes it on a robot (some moves by more than one event).
WALKS = [
    (ours, lambda g: g.send(1.0), Phase.SENT),
    (ours, lambda g: g.give_up_waiting('driver absent', 6.0), Phase.ENDED),
    (ours, lambda g: g.cancel('preempted in the queue', 0.5), Phase.ENDED),
    (sent, lambda g: g.status(2, 0.05), Phase.LISTED),
    (sent, lambda g: g.answered(True, 0.1), Phase.RUNNING),
    (sent, lambda g: g.status(4, 0.05), Phase.RESULT_PENDING),
    (sent, lambda g: g.tick(LATE, RESPONSE_S), Phase.UNANSWERED),
    (sent, lambda g: g.driver_lost(1.0, 0.5), Phase.UNANSWERED),
    (sent, lambda g: g.answered(False, 0.1), Phase.ENDED),
    (listed, lambda g: g.answered(True, 0.1), Phase.RUNNING),
    (listed, lambda g: g.status(None, 0.3), Phase.RESULT_PENDING),
    (listed, lambda g: g.tick(LATE, RESPONSE_S), Phase.UNCONFIRMED),
    (listed, lambda g: g.driver_lost(1.0, 0.5), Phase.UNCONFIRMED),
    (listed, lambda g: g.driver_gone(0.5), Phase.ENDED),
    (running, lambda g: g.cancel('preempted', 0.2), Phase.CANCELLING),
    (running, lambda g: g.status(4, 0.8), Phase.RESULT_PENDING),
    (running, lambda g: g.driver_lost(1.0, 0.5), Phase.UNCONFIRMED),
    (running, lambda g: g.result('succeeded', object(), 0.9), Phase.ENDED),
    (cancelling, lambda g: g.status(5, 0.8), Phase.RESULT_PENDING),
    (cancelling, lambda g: g.cancel_answer(2, 0.8), Phase.RESULT_PENDING),
    (cancelling, lambda g: g.driver_lost(1.0, 0.5), Phase.UNCONFIRMED),
    (cancelling, lambda g: g.result('canceled', object(), 0.9), Phase.ENDED),
    (result_pending, lambda g: g.result('succeeded', object(), 0.9), Phase.ENDED),
    (result_pending, lambda g: g.tick(0.8 + RESULT_WAIT_S + 0.01, RESPONSE_S), Phase.ENDED),
    (unanswered, lambda g: g.answered(True, LATE + 1), Phase.UNCONFIRMED),
    (unanswered, lambda g: g.status(2, LATE + 1), Phase.UNCONFIRMED),
    (unanswered, lambda g: g.answered(False, LATE + 1), Phase.ENDED),
    (unanswered, lambda g: g.status(6, LATE + 1), Phase.ENDED),
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


def test_what_the_phase_says_of_caller_and_driver():
    """The keeper's questions are answered by the phase alone (no flag beside it)."""
    assert not sent().caller_ended and not sent().seen_active and sent().may_run
    assert listed().seen_active and not listed().caller_ended and listed().awaiting_answer
    assert result_pending().driver_done and not result_pending().may_run
    assert not result_pending().lingering            # its lanes are free, its caller waits
    assert unanswered().lingering and not unanswered().seen_active
    assert unconfirmed().lingering and unconfirmed().seen_active
    assert found(Phase.ADOPTED)().lingering and found(Phase.ADOPTED)().reached_driver
    assert not ours().reached_driver and not ours().may_run


def test_the_driver_saying_it_is_over_frees_the_lane_and_the_result_ends_the_caller():
    goal = running()
    (said,) = goal.status(4, 0.8)
    assert isinstance(said, DriverEnded) and said.outcome == 'succeeded'
    assert goal.cancel('too late', 0.9) == []          # nothing left to cancel
    (end,) = goal.result('succeeded', 'the result', 1.0)
    assert isinstance(end, EndCaller) and end.driver_result and end.result == 'the result'


def test_no_result_after_the_drivers_word_ends_the_caller_without_one():
    goal = running()
    goal.status(6, 0.8)
    assert goal.tick(0.8 + RESULT_WAIT_S - 0.1, RESPONSE_S) == []
    (end,) = goal.tick(0.8 + RESULT_WAIT_S + 0.01, RESPONSE_S)
    assert isinstance(end, EndCaller) and end.outcome == 'aborted' and not end.driver_result
    assert goal.driver_said == 'aborted' and goal.ended   # kept: the keeper amends the ending


def test_a_given_up_goal_listed_right_after_a_cancel_is_known_to_run():
    """Listed active within CANCEL_REPEAT_S of a cancel (no repeat due): still UNCONFIRMED,
    so the driver's later silence about it counts as its end.
    """
    goal = unanswered()
    goal.cancel('its caller gave up', LATE + 0.1)       # cancel out at once
    assert goal.status(2, LATE + 0.2) == []             # no repeat yet
    assert goal.phase is Phase.UNCONFIRMED and goal.seen_active
    goal.status(None, LATE + 0.5)                       # then not listed: it is over
    assert goal.ended


def test_an_unanswered_goal_is_not_ended_by_silence():
    """Never shown by the driver: not being listed is no end (its request may be queued)."""
    goal = unanswered()
    assert goal.status(None, LATE + 1) == [] and goal.lingering
    (cancel,) = goal.answered(True, LATE + 2)
    assert isinstance(cancel, CancelGoalAtDriver) and goal.phase is Phase.UNCONFIRMED

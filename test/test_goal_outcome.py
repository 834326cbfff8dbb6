"""The one goal vocabulary (skill_lanes/goal_outcome.py) against the action protocol itself."""
from __future__ import annotations

import json

from action_msgs.msg import GoalStatus

from skill_lanes.goal_outcome import (ACTIVE_STATUSES, TERMINAL_STATUSES, GoalStatusCode,
                                       Outcome, outcome_of_status)


def test_status_codes_are_the_installed_action_msgs_constants():
    for code in GoalStatusCode:
        assert getattr(GoalStatus, f'STATUS_{code.name}') == code.value, code
    constants = {v for k, v in vars(GoalStatus).items() if k.startswith('STATUS_')}
    assert constants == {c.value for c in GoalStatusCode}


def test_every_status_is_active_terminal_or_unknown_and_maps_once():
    assert ACTIVE_STATUSES.isdisjoint(TERMINAL_STATUSES)
    assert ACTIVE_STATUSES | TERMINAL_STATUSES | {GoalStatusCode.UNKNOWN} == set(GoalStatusCode)
    assert {outcome_of_status(c) for c in TERMINAL_STATUSES} == {
        Outcome.SUCCEEDED, Outcome.CANCELED, Outcome.ABORTED}
    assert outcome_of_status(GoalStatus.STATUS_SUCCEEDED) == 'succeeded'
    for code in (*ACTIVE_STATUSES, GoalStatusCode.UNKNOWN, 99):
        assert outcome_of_status(code) is None


def test_outcomes_read_and_serialize_as_the_plain_strings_of_the_lane_state():
    assert json.dumps({'outcome': Outcome.ABORTED}) == '{"outcome": "aborted"}'
    assert f'{Outcome.CANCELED}' == 'canceled' and Outcome('released') is Outcome.RELEASED

"""The gateway's copy of the lane state (mcp_gateway/lane_state_reader.py), without ROS.

Valid messages become the state, typed and as published; refused ones (not JSON, wrong
types, not an object) are kept out, logged once per run of them; unknown keys are kept.
"""
from __future__ import annotations

import copy
import json

import pytest

from mcp_gateway.lane_state_reader import LatestLaneState
from test_lane_state import _readme_example


def _message(seq: int, **changes) -> dict:
    state = json.loads(_readme_example())
    state['seq'] = seq
    state.update(changes)
    return state


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def latest(log) -> LatestLaneState:
    return LatestLaneState(log.warnings.append, log.infos.append)


def _mistyped(seq: int) -> dict:
    state = _message(seq)
    state['lanes']['motion']['counters']['started'] = 'six'
    return state


def test_nothing_heard_is_no_state(latest):
    assert latest.latest() is None and not latest.heard


def test_a_valid_message_is_the_state_typed_and_as_published(latest):
    sent = _message(7, future_key={'from': 'a newer lane manager'})
    sent['lanes']['motion']['holder']['colour'] = 'blue'
    text = json.dumps(sent)
    latest.offer(text)
    message = latest.latest()
    assert message.body == json.loads(text)  # unknown keys included: what lanes_status says
    assert message.model.seq == 7
    assert message.model.lanes['motion'].holder.skill == 'navigate'
    assert message.model.lanes['motion'].holder.model_extra == {'colour': 'blue'}
    assert latest.latest() is message  # parsed once: the same object until the next message


@pytest.mark.parametrize('bad', [
    'not json {', json.dumps([1, 2]), json.dumps(None), '[' * 100000,
    json.dumps(_mistyped(2)),
    json.dumps({**_message(2), 'lanes': {'motion': 'free'}}),
    json.dumps({key: value for key, value in _message(2).items() if key != 'lanes'}),
], ids=['not-json', 'a-list', 'null', 'too-deep', 'mistyped', 'lane-not-object',
        'lanes-missing'])
def test_a_refused_message_keeps_the_last_valid_one(latest, log, bad):
    latest.offer(json.dumps(_message(1)))
    assert latest.latest().model.seq == 1
    latest.offer(bad)
    assert latest.heard
    message = latest.latest()
    assert message is not None and message.model.seq == 1 and message.body['seq'] == 1
    assert latest.refused == 1
    assert len(log.warnings) == 1 and 'keeping the last valid one (seq 1)' in log.warnings[0]


def test_a_refused_first_message_is_no_state(latest, log):
    latest.offer(json.dumps(_mistyped(3)))
    assert latest.latest() is None
    assert latest.heard  # the lane manager has discovered us, even so
    (warning,) = log.warnings
    assert 'lanes.motion.counters.started' in warning and 'integer' in warning
    assert "node '/lane_manager', seq 3" in warning
    assert 'no lane state until a valid one arrives' in warning


def test_refused_messages_are_logged_once_per_run(latest, log):
    for seq in range(1, 6):
        latest.offer(json.dumps(_mistyped(seq)))
        assert latest.latest() is None
    assert latest.refused == 5 and len(log.warnings) == 1
    latest.offer(json.dumps(_message(6)))
    assert latest.latest().model.seq == 6
    assert log.infos == ['lane state: a valid message again, after 5 refused one(s)']
    latest.offer(json.dumps(_mistyped(7)))
    assert latest.latest().model.seq == 6
    assert len(log.warnings) == 2  # a new run of refusals: said again


def test_only_the_newest_arrival_is_parsed(latest, log):
    for seq in range(1, 4):
        latest.offer(json.dumps(_mistyped(seq) if seq < 3 else _message(seq)))
    assert latest.latest().model.seq == 3
    assert latest.refused == 0 and not log.warnings  # superseded unread: never parsed


def test_every_readme_record_reads_by_attribute(latest):
    state = _message(1)
    lane = state['lanes']['motion']
    lane['last_refusals'][0].update(goal_id='r1', reason='limits: order 11 > 10',
                                    field='order', value=11, limit='max 10')
    lane['last_endings'][0]['goal_id'] = 'e1'
    latest.offer(json.dumps(copy.deepcopy(state)))
    model = latest.latest().model.lanes['motion']
    refusal = model.last_refusals[0]
    assert (refusal.goal_id, refusal.field, refusal.value, refusal.limit) == (
        'r1', 'order', 11, 'max 10')
    assert refusal.holder.skill == 'navigate' and refusal.retry_after_ms == 1000
    assert model.last_endings[0].driver_result is True
    assert model.awaiting_approval[0].deadline == 1795350989.0
    assert model.approvals[0].by == "operator 'alice' (MCP)"

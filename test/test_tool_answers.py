"""Every answer body a gateway tool can return conforms to that tool's outputSchema.

Clients on the official TypeScript SDK throw away a result whose structuredContent does not
match the tool's outputSchema, error results included. Here every shape (success, busy,
invalid arguments, aborted, canceled, result null, lane manager unavailable, internal error,
goal rejected) is built by the gateway's own functions and checked with jsonschema, both as
draft-07 (what the TypeScript SDK's Ajv speaks by default) and as draft 2020-12. The same
check runs on every real answer of test_gateway.py (see `conforming_answers` there).
"""
from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import test_msgs.action as actions
from hypothesis import given, settings
from hypothesis import strategies as st

from skill_lanes.config import LaneConfig, SkillConfig
from skill_lanes.lane_state import Ending, HolderRef, Refusal
from mcp_gateway.node import GoalOutcome
from mcp_gateway.results import error_result, output_schema, tool_result
from mcp_gateway.skill_tools import busy_result, goal_answer
from mcp_gateway.tool_defs import builtin_tools, skill_output_schema, skill_tool

GOAL_ID = '3f1e0c9a-0000-4000-8000-000000000001'
ACTIONS = [actions.Fibonacci, actions.NestedMessage]


def validators(schema: dict[str, Any]) -> list[Any]:
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    return [jsonschema.Draft7Validator(schema), jsonschema.Draft202012Validator(schema)]


def assert_conforms(schema: dict[str, Any], body: dict[str, Any]) -> None:
    body = json.loads(json.dumps(body, allow_nan=False))  # as a client receives it
    for validator in validators(schema):
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (errors, body)


def _ending(outcome: str, reason: str, driver_result: bool) -> Ending:
    """A lane state ending record, as the gateway reads it (typed)."""
    return Ending(goal_id=GOAL_ID, skill='navigate', outcome=outcome, reason=reason,
                  driver_result=driver_result, at=1.5)


def skill_bodies(action: Any, lane: str = 'motion') -> dict[str, dict]:
    """Every answer a skill tool gives, by shape."""
    result = action.Result()
    shapes = {
        'succeeded': goal_answer('navigate', lane, GoalOutcome(
            GOAL_ID, True, 'succeeded', result)),
        'succeeded_no_lane': goal_answer('navigate', None, GoalOutcome(
            GOAL_ID, True, 'succeeded', result)),
        'aborted': goal_answer('navigate', lane, GoalOutcome(
            GOAL_ID, True, 'aborted', result,
            ending=_ending('aborted', 'the driver aborted the goal', True))),
        'canceled_no_result': goal_answer('navigate', lane, GoalOutcome(
            GOAL_ID, True, 'canceled', result,
            ending=_ending('canceled', 'canceled while queued', False))),
        'stopped': goal_answer('navigate', lane, GoalOutcome(
            GOAL_ID, True, 'canceled', result,
            ending=_ending('canceled', 'canceled by its caller', True)),
            stopped_by_lane_stop=True),
        'busy': busy_result('navigate', lane, GoalOutcome(
            GOAL_ID, False, refusal=Refusal(
                goal_id=GOAL_ID, skill='navigate', reason='held by x', retry_after_ms=500,
                at=1.5, holder=HolderRef(goal_id=GOAL_ID, skill='dock'), held_because=None)),
            1000),
        'busy_unknown_reason': busy_result('navigate', lane, GoalOutcome(GOAL_ID, False), 1000),
        'invalid_arguments': error_result('invalid_arguments', 'order: expected an integer',
                                          field='order', problem='expected', skill='navigate'),
        'unavailable': error_result('lane_manager_unavailable', 'no lane manager',
                                    hint='retry', skill='navigate', lane=lane,
                                    retry_after_ms=2000),
        'internal': error_result('internal_error', 'RuntimeError: boom'),
        'rejected': error_result('goal_rejected', 'refused', skill='navigate',
                                 goal_id=GOAL_ID),
        'unknown_tool': error_result('unknown_tool', 'unknown tool', known=['a']),
    }
    return {name: result.structured_content for name, result in shapes.items()}


@pytest.mark.parametrize('action', ACTIONS, ids=lambda a: a.__name__)
def test_every_skill_answer_conforms(action):
    schema = skill_output_schema(action.Result)
    for name, body in skill_bodies(action).items():
        assert_conforms(schema, body)
    assert skill_bodies(action)['canceled_no_result']['result'] is None
    assert 'no result' in skill_bodies(action)['canceled_no_result']['message']
    assert skill_bodies(action)['stopped']['message'] == 'stopped by lane_stop'


def test_non_finite_results_conform():
    """A Result may carry NaN (as the string "NaN"): the result schema allows it."""
    result = actions.NestedMessage.Result()
    result.nested_field.float64_value = float('nan')
    body = goal_answer('inspect', None, GoalOutcome(GOAL_ID, True, 'succeeded', result))
    assert_conforms(skill_output_schema(actions.NestedMessage.Result), body.structured_content)


@pytest.mark.parametrize('body', [
    {'status': 'succeeded', 'goal_id': GOAL_ID},                  # no result
    {'status': 'finished', 'goal_id': GOAL_ID, 'result': None},  # unknown status
    {'success': False, 'error': 'x'},                             # no message
    {'success': True, 'error': 'x', 'message': 'y'},              # not an error envelope
    {'status': 'succeeded', 'goal_id': GOAL_ID, 'result': {'sequence': ['a']}},
])
def test_bodies_that_fit_neither_shape_are_refused(body):
    """The check can fail: what is neither success nor error envelope does not conform."""
    schema = skill_output_schema(actions.Fibonacci.Result)
    for validator in validators(schema):
        assert not validator.is_valid(body)


def test_skill_tool_lists_an_output_schema_with_defs_resolvable_from_its_root():
    markers = pytest.importorskip(
        'visualization_msgs.msg', reason='the ros-visualization-msgs wheel (test extra) is absent')
    tool = skill_tool('follow', SkillConfig(lane='arm', action_type='test_msgs/action/Fibonacci',
                                            driver='/arm/follow'), LaneConfig(),
                      {'type': 'object'}, markers.MarkerArray)
    schema = tool.output_schema
    refs = re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema))
    assert refs and set(refs) <= set(schema['$defs'])  # repeated types are written once
    message = markers.MarkerArray(markers=[markers.Marker()])
    body = goal_answer('follow', 'arm', GoalOutcome(GOAL_ID, True, 'succeeded', message))
    assert_conforms(schema, body.structured_content)
    assert tool.description.endswith('.') and "lane 'arm'" in tool.description


def readme_lane_state() -> dict:
    """A whole lane state message (the README's example, checked against the typed model
    in test_lane_state.py): what lanes_status answers.
    """
    from test_lane_state import _readme_example
    return json.loads(_readme_example())


def test_every_builtin_answer_conforms():
    tools = {t.name: t.output_schema for t in builtin_tools(['navigate'], ['motion'])}
    job = {'goal_id': GOAL_ID, 'skill': 'navigate', 'state': 'accepted', 'lane': 'motion',
           'feedback': None, 'feedback_count': 0, 'result': None, 'started_at': 1.5}
    finished = {**job, 'state': 'succeeded', 'result': skill_bodies(actions.Fibonacci)[
        'succeeded'], 'feedback': {'sequence': [1]}, 'feedback_count': 1}
    refused = {**job, 'state': 'refused', 'result': skill_bodies(actions.Fibonacci)['busy']}
    unavailable = error_result('lane_manager_unavailable', 'x', hint='retry',
                               retry_after_ms=2000).structured_content
    invalid = error_result('invalid_arguments', 'x', field='lane').structured_content
    answers = {
        'lanes_status': [readme_lane_state(), unavailable],
        'lane_stop': [{'lane': 'motion', 'stopped': True, 'cancelled': None, 'detail': 'ok'},
                      {'lane': 'motion', 'stopped': True, 'cancelled': 2, 'detail': 'x'},
                      unavailable, invalid,
                      error_result('lane_stop_failed', 'no', lane='motion').structured_content],
        'lane_release': [{'lane': 'motion', 'released': True, 'detail': 'freed'},
                         error_result('unsupported', 'x', lane='motion').structured_content,
                         error_result('release_refused', 'x', lane='motion').structured_content,
                         unavailable, invalid],
        'skill_start': [job, invalid],
        'skill_status': [job, finished, refused,
                         error_result('unknown_goal', 'no job').structured_content],
        'skill_cancel': [{**job, 'state': 'canceled'},
                         error_result('unknown_goal', 'no job').structured_content],
    }
    assert set(answers) == set(tools)
    for name, bodies in answers.items():
        for body in bodies:
            assert_conforms(tools[name], body)


@settings(max_examples=50, deadline=None)
@given(extra=st.dictionaries(st.sampled_from(['retry_after_ms', 'lane', 'field', 'known']),
                             st.integers() | st.text(max_size=5) | st.none(), max_size=3),
       hint=st.none() | st.just('retry'))
def test_any_error_envelope_conforms_to_any_tool(extra, hint):
    body = error_result('some_error', 'what went wrong', hint, **extra).structured_content
    assert_conforms(skill_output_schema(actions.Fibonacci.Result), body)
    for tool in builtin_tools(['navigate'], ['motion']):
        assert_conforms(tool.output_schema, body)


def test_output_schema_refuses_success_keys_that_clash_with_the_envelope():
    with pytest.raises(ValueError, match='clash'):
        output_schema({'error': {'type': 'string'}}, ['error'])
    assert tool_result({'a': 1}).structured_content == {'a': 1}

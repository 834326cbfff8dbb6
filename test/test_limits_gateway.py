"""Skill limits through the MCP gateway, in front of a real lane manager and simulated driver
(both OS processes): the tool's inputSchema shows them, a call breaking one is refused with
invalid_arguments naming field, value and limit before anything is sent (judged at the
simulated driver's counters), and a gateway whose own config has no limits is still held to
them by the lane manager.

This module uses a lane manager namespace and driver names of its own.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from skill_lanes.config import load_config
from support import sim_robot_client
from test_gateway import InProcessGateway, assert_error, assert_succeeded, run, write_config
from test_gateway import conforming_answers  # noqa: F401 - every answer fits its outputSchema

NAMESPACE = '/limits_test_lm'
SKILLS = """
    skills:
      count:  {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /limsim/count
               {count}}}
      survey: {{lane: arm, action_type: test_msgs/action/NestedMessage, driver: /limsim/survey,
               allow_non_finite: true {survey}}}
"""
LIMITS = {
    'count': ', limits: {order: {min: 1, max: 10}}',
    'survey': ', limits: {nested_field.float64_value: {min: -1.5, max: 2}, '
              'nested_different_pkg.sec: {max: 60}}',
}
REST = f"""
    lanes: {{motion: {{policy: queue}}, arm: {{policy: queue}}}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0}}
    gateway: {{lane_manager_wait_s: 10.0, refusal_wait_s: 3.0}}
    sim: {{default: {{duration_s: 0.2, feedback_hz: 10}}}}
"""
LANES = {'count': 'motion', 'survey': 'arm'}


def config_text(limited: bool) -> str:
    limits = LIMITS if limited else {'count': '', 'survey': ''}
    return textwrap.dedent(SKILLS.format(**limits)) + textwrap.dedent(REST)


@pytest.fixture(scope='module')
def config_file(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp('lim_cfg'), config_text(True))


@pytest.fixture(scope='module')
def stack(config_file, rclpy_context):
    with sim_robot_client(config_file, NAMESPACE, 'limits_test_lane_manager',
                          ('count',), 'motion') as client:
        yield client


@pytest.fixture(scope='module')
def gateway(stack, config_file):
    with InProcessGateway(config_file) as gw:
        gw.wait_ready()
        yield gw


def call(gateway: InProcessGateway, tool: str, arguments: dict):
    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool(tool, arguments)
    return run(scenario)


def goals_at_driver(stack, skill: str) -> int:
    return stack.wait_stats(lambda s: skill in s['drivers'])['drivers'][skill]['goals']


def taken_in(stack, lane: str) -> int:
    """How many goals the lane manager has taken in for `lane` (its `submitted` counter),
    counting everything sent before this call: a plain client's goal that breaks the limits
    is sent as a marker, and its refusal seen in the lane state (then counted here too).
    """
    from test_msgs.action import Fibonacci, NestedMessage
    if lane == 'motion':
        marker = stack.send('count', Fibonacci.Goal(order=99))
    else:
        goal = NestedMessage.Goal()
        goal.nested_field.float64_value = 99.0
        marker = stack.send('survey', goal, NestedMessage)
    assert not marker.accepted()
    stack.refusal(lane, marker.id)
    return stack.lane_state['lanes'][lane]['counters']['submitted']


def test_input_schema_shows_the_limits(gateway):
    async def scenario():
        async with gateway.client() as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}
    schemas = run(scenario)
    order = schemas['count']['properties']['order']
    assert (order['minimum'], order['maximum']) == (1, 10)
    survey = schemas['survey']
    number = survey['properties']['nested_field']['properties']['float64_value']
    assert (number['type'], number['minimum'], number['maximum']) == ('number', -1.5, 2)
    assert survey['properties']['nested_different_pkg']['properties']['sec']['maximum'] == 60
    # The other Time of the goal (both were one $defs entry) keeps its type's own range.
    other = survey['properties']['nested_field_no_pkg']
    if '$ref' in other:
        other = survey['$defs'][other['$ref'].removeprefix('#/$defs/')]
    assert other['properties']['time_value']['properties']['sec']['maximum'] == 2 ** 31 - 1


@pytest.mark.parametrize('tool, arguments, field, value, limit', [
    ('count', {'order': 11}, 'order', 11, 'max 10'),
    ('count', {}, 'order', 0, 'min 1'),  # the default breaks it: the caller must give it
    ('survey', {'nested_field': {'float64_value': 2.5}}, 'nested_field.float64_value', 2.5,
     'max 2'),
    ('survey', {'nested_field': {'float64_value': 'NaN'}}, 'nested_field.float64_value',
     'NaN', 'min -1.5, max 2'),
    ('survey', {'nested_different_pkg': {'sec': 61}}, 'nested_different_pkg.sec', 61,
     'max 60'),
])
def test_a_call_breaking_a_limit_is_refused_before_anything_is_sent(gateway, stack, tool,
                                                                    arguments, field, value,
                                                                    limit):
    before, lane_before = goals_at_driver(stack, tool), taken_in(stack, LANES[tool])
    answer = assert_error(call(gateway, tool, arguments), 'invalid_arguments')
    data = answer['data']
    assert (data['field'], data['value'], data['limit']) == (field, value, limit), answer
    assert limit in data['problem'] and field in answer['message']
    assert 'hint' not in answer  # the same call never succeeds later
    assert goals_at_driver(stack, tool) == before, 'no goal may reach the driver'
    assert taken_in(stack, LANES[tool]) == lane_before + 1, 'nor the lane manager'


def test_skill_start_refuses_too_and_a_call_within_the_limits_runs(gateway, stack):
    answer = assert_error(call(gateway, 'skill_start', {'skill': 'count',
                                                         'arguments': {'order': 0}}),
                          'invalid_arguments')
    assert answer['data']['field'] == 'arguments.order' and answer['data']['value'] == 0
    before = goals_at_driver(stack, 'count')
    assert_succeeded(call(gateway, 'count', {'order': 10}), 'count', LANES)
    assert_succeeded(call(gateway, 'survey', {'nested_field': {'float64_value': -1.5},
                                              'nested_different_pkg': {'sec': 60}}),
                     'survey', LANES)
    stack.wait_stats(lambda s: s['drivers']['count']['goals'] == before + 1,
                     what='the goal within the limits at the driver')


def test_the_lane_manager_holds_a_gateway_without_the_limits_to_them(stack, tmp_path):
    """A gateway started from an older config (no limits) sends the goal; the lane manager
    rejects it, and the gateway answers invalid_arguments with the lane manager's reason.
    """
    config = write_config(tmp_path, config_text(False))
    assert not load_config(config).skills['count'].limits
    gw = InProcessGateway(config)
    try:
        gw.wait_ready()
        before = goals_at_driver(stack, 'count')
        answer = assert_error(call(gw, 'count', {'order': 11}), 'invalid_arguments')
        assert answer['message'] == 'limits: order = 11 exceeds max 10', answer
        data = answer['data']
        assert (data['field'], data['value'], data['limit']) == ('order', 11, 'max 10')
        assert data['lane'] == 'motion' and 'retry_after_ms' not in data
        assert goals_at_driver(stack, 'count') == before, 'no goal may reach the driver'
    finally:
        gw.close()

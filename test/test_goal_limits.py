"""Limits on what a goal may ask (`skills.<s>.limits`): the pure checker, the config checks
against the Goal type, the gateway's schema and argument check.

The checker runs on real generated messages (test_msgs, trajectory_msgs: arrays of messages,
array.array and numpy arrays, as rclpy stores them) and on JSON-like dicts (fixed values).
Hypothesis: a value within the bounds passes and one outside fails, at any depth of nested
arrays, and the violation names the concrete path of the first offending value.
"""
from __future__ import annotations

import math
import textwrap
from typing import Any

import jsonschema
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import test_msgs.action as actions
import test_msgs.msg as msgs
from skill_lanes.config import ConfigError, parse_config
from skill_lanes.goal_limits import GoalLimits, Limit, parse_path
from skill_lanes.limit_types import LimitTypeError, check_limit_types
from mcp_gateway.ros_json import ArgumentError, Limits
from mcp_gateway.ros_schema import skill_schema
from mcp_gateway.skill_args import SkillArguments
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

VELOCITY = 'points[].velocities[]'


def trajectory(velocities: list[list[float]], names: tuple[str, ...] = ('a', 'b')
               ) -> JointTrajectory:
    return JointTrajectory(joint_names=list(names), points=[
        JointTrajectoryPoint(velocities=v) for v in velocities])


# ------------------------------------------------------------------------------ the checker
def test_paths_parse_with_every_element_marks():
    assert [(s.name, s.every) for s in parse_path('points[].velocities[]')] == [
        ('points', True), ('velocities', True)]
    assert [(s.name, s.every) for s in parse_path('a.b.c')] == [
        ('a', False), ('b', False), ('c', False)]
    for bad in ('', 'a..b', 'a[0]', '[]', 'a.[]', 'a[][]', '1a', 'a.b[ ]'):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_velocity_beyond_max_names_the_concrete_path_value_and_limit():
    limits = GoalLimits({VELOCITY: Limit(min=-2.0, max=2.0)})
    goal = trajectory([[0.5, 1.0]] * 5)
    assert limits.check(goal) is None
    goal.points[3].velocities[1] = 3.2
    violation = limits.check(goal)
    assert violation is not None
    assert violation.field == 'points[3].velocities[1]'
    assert violation.value == 3.2 and violation.limit == 'max 2.0'
    assert str(violation) == 'points[3].velocities[1] = 3.2 exceeds max 2.0'
    goal.points[3].velocities[1] = -2.5
    assert str(limits.check(goal)) == 'points[3].velocities[1] = -2.5 is below min -2.0'


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_never_within_bounds(value):
    """NaN compares false with everything: it must fail, not slip through. An infinity
    beyond a one-sided bound's open side fails too: a bounded field is a finite number.
    """
    for limit in (Limit(min=-2.0, max=2.0), Limit(max=2.0), Limit(min=-2.0)):
        goal = trajectory([[0.0, 0.0], [0.0, value]])
        violation = GoalLimits({VELOCITY: limit}).check(goal)
        assert violation is not None and violation.field == 'points[1].velocities[1]', limit
        assert 'not a finite number' in violation.problem or math.isinf(value)


def test_numpy_and_long_arrays_are_checked_too():
    """Fixed-size arrays are numpy arrays in rclpy; long number arrays take the numpy path."""
    goal = msgs.Arrays()
    goal.float64_values = numpy.array([0.0, 1.0, 5.0])
    limits = GoalLimits({'float64_values[]': Limit(max=4)})
    assert limits.check(goal).field == 'float64_values[2]'
    goal.float64_values[2] = math.nan
    assert limits.check(goal).field == 'float64_values[2]'
    long = msgs.UnboundedSequences(float64_values=[1.0] * 1000, int32_values=[7] * 1000)
    limits = GoalLimits({'float64_values[]': Limit(min=0, max=1),
                         'int32_values[]': Limit(max=7)})
    assert limits.check(long) is None
    long.float64_values[777] = math.nan
    assert limits.check(long).field == 'float64_values[777]'
    long.float64_values[777] = 1.0
    long.int32_values[999] = 8
    assert str(limits.check(long)) == 'int32_values[999] = 8 exceeds max 7'


def test_max_items_and_one_of():
    limits = GoalLimits({'joint_names': Limit(max_items=3),
                         'joint_names[]': Limit(one_of=('a', 'b', 'c')),
                         'points': Limit(max_items=2)})
    assert limits.check(trajectory([[0.0]], ('a', 'c'))) is None
    too_many = limits.check(trajectory([[0.0]], ('a', 'b', 'c', 'a')))
    assert str(too_many) == 'joint_names has 4 items, more than max_items 3'
    assert too_many.value == 4 and too_many.limit == 'max_items 3'
    wrong = limits.check(trajectory([[0.0]], ('a', 'x')))
    assert wrong.field == 'joint_names[1]' and wrong.value == 'x'
    assert "'x' is not one of ['a', 'b', 'c']" in str(wrong)
    assert limits.check(trajectory([[0.0]] * 3, ('a',))).field == 'points'


def test_nested_message_fields_and_integers():
    goal = actions.NestedMessage.Goal()
    limits = GoalLimits({'nested_field.int32_value': Limit(min=1, max=10),
                         'nested_different_pkg.sec': Limit(max=100)})
    assert str(limits.check(goal)) == 'nested_field.int32_value = 0 is below min 1'
    goal.nested_field.int32_value = 10
    goal.nested_field_no_pkg.time_value.sec = 1000  # the same type elsewhere: not limited
    assert limits.check(goal) is None
    goal.nested_different_pkg.sec = 101
    assert limits.check(goal).field == 'nested_different_pkg.sec'


def test_float32_fields_compare_as_float32():
    """0.1 is no float32: a float32 field bounded by max 0.1 must take the float32 a client
    sending 0.1 sends (0.10000000149), and the gateway's unrounded 0.1 alike.
    """
    goal = msgs.BasicTypes(float32_value=0.1)  # the gateway's: stored as given
    as_received = msgs.BasicTypes(float32_value=float(numpy.float32(0.1)))  # off the wire
    assert as_received.float32_value > 0.1
    compiled = GoalLimits({'float32_value': Limit(max=0.1)}, {'float32_value'})
    assert compiled.check(goal) is None
    assert compiled.check(as_received) is None
    assert compiled.check(msgs.BasicTypes(float32_value=0.1000001)) is not None
    assert GoalLimits({'float32_value': Limit(max=0.1)}).check(as_received) is not None


def test_json_values_skip_missing_keys_and_name_non_numbers():
    limits = GoalLimits({VELOCITY: Limit(max=1), 'joint_names': Limit(max_items=1)})
    assert limits.check({}) is None
    assert limits.check({'points': [{}, {'velocities': [0, 1]}]}) is None
    assert limits.check({'points': [{'velocities': [0, 'x']}]}).problem == "'x' is not a number"
    assert limits.check({'points': [{'velocities': [True]}]}).problem == 'True is not a number'


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=150, deadline=None)
@given(low=finite, span=st.floats(min_value=0, max_value=1e6),
       shape=st.lists(st.integers(min_value=0, max_value=5), max_size=6),
       where=st.tuples(st.integers(min_value=0), st.integers(min_value=0)),
       outside=st.sampled_from(['above', 'below', 'nan', 'inf']),
       data=st.data())
def test_property_inside_passes_outside_fails_at_the_first_offender(low, span, shape, where,
                                                                    outside, data):
    high = low + span
    if not math.isfinite(high):
        return
    inside = st.floats(min_value=low, max_value=high)
    rows = [data.draw(st.lists(inside, min_size=n, max_size=n)) for n in shape]
    limits = GoalLimits({VELOCITY: Limit(min=low, max=high)})
    goal = trajectory(rows)
    assert limits.check(goal) is None
    cells = [(i, j) for i, row in enumerate(rows) for j in range(len(row))]
    if not cells:
        return
    i, j = cells[where[0] % len(cells)]
    bad = {'above': math.nextafter(high, math.inf), 'below': math.nextafter(low, -math.inf),
           'nan': math.nan, 'inf': math.inf}[outside]
    if not math.isfinite(bad) and outside in ('above', 'below'):
        return
    goal.points[i].velocities[j] = bad
    violation = limits.check(goal)
    assert violation is not None and violation.field == f'points[{i}].velocities[{j}]'
    # the same goal as JSON (what `fixed` holds) is judged the same
    as_json = {'points': [{'velocities': list(p.velocities)} for p in goal.points]}
    assert limits.check(as_json).field == violation.field


def test_keeper_records_a_limits_refusal_in_every_lane_of_the_skill_and_nothing_else():
    from skill_lanes.config import LaneConfig, LaneManagerConfig
    from lane_manager.keeper import LaneKeeper, SkillRoute
    keeper = LaneKeeper({'arm': LaneConfig(), 'base': LaneConfig()}, {
        'reach': SkillRoute('arm', '/d', 0, ('arm', 'base')),
        'look': SkillRoute(None, '/e')}, LaneManagerConfig())
    details = {'field': 'order', 'value': 11, 'limit': 'max 10'}
    decision = keeper.refuse('g1', 'reach', 'limits: order = 11 exceeds max 10', 5.0, details)
    assert not decision.accepted and decision.reason == 'limits: order = 11 exceeds max 10'
    lanes = keeper.snapshot(5.0)
    for name in ('arm', 'base'):
        lane = lanes[name]
        (record,) = lane['last_refusals']
        assert record['goal_id'] == 'g1' and record['skill'] == 'reach'
        assert {k: record[k] for k in details} == details
        assert lane['counters']['rejected'] == 1 and lane['counters']['submitted'] == 1
        assert lane['holder'] is None and lane['queue'] == []
    assert not keeper.refuse('g2', 'look', 'limits: x', 6.0).accepted  # no lane: no record
    keeper.check_invariants()


def test_violation_as_json_spells_non_finite_numbers_and_cuts_long_strings():
    nan = GoalLimits({VELOCITY: Limit(max=1)}).check(trajectory([[math.nan]]))
    assert nan.as_json() == {'field': 'points[0].velocities[0]', 'value': 'NaN',
                             'limit': 'max 1'}
    long = GoalLimits({'joint_names[]': Limit(one_of=('a',))}).check(
        trajectory([], ('x' * 500,)))
    assert len(long.as_json()['value']) == 83 and len(str(long)) < 200


# ------------------------------------------------------------------------------ the config
def config(limits: str, action: str = 'test_msgs/action/NestedMessage', extra: str = '') -> Any:
    text = textwrap.dedent(f"""
        skills:
          s:
            action_type: {action}
            driver: /d
            limits: {limits}
            {extra}
    """)
    import yaml
    return parse_config(yaml.safe_load(text), 'robot.yaml')


@pytest.mark.parametrize('limits, action, message', [
    ('{order: {min: 3, max: 2}}', 'Fibonacci',
     'skills.s.limits.order: min 3 is above max 2: nothing could pass'),
    ('{order: {}}', 'Fibonacci', 'skills.s.limits.order: give min, max, max_items or one_of'),
    ('{order: {max: .nan}}', 'Fibonacci', 'skills.s.limits.order: max must be a finite number'),
    ('{order: {max: x}}', 'Fibonacci', "skills.s.limits.order.max: must be a number, got 'x'"),
    ('{order: {max: true}}', 'Fibonacci', 'skills.s.limits.order.max: must be a number'),
    ('{order: {maximum: 3}}', 'Fibonacci', 'skills.s.limits.order.maximum: unknown key'),
    ('{order: {one_of: []}}', 'Fibonacci', 'skills.s.limits.order.one_of:'),
    ("{order: {one_of: ['']}}", 'Fibonacci', 'skills.s.limits.order: one_of entries must be'),
    ('{order: {max: 3, max_items: 2}}', 'Fibonacci', 'one kind per path'),
    ('{order: {max_items: -1}}', 'Fibonacci', 'skills.s.limits.order.max_items:'),
    ('{"order[0]": {max: 1}}', 'Fibonacci', 'skills.s.limits.order[0]: invalid limit path'),
    ('{speed: {max: 1}}', 'Fibonacci',
     "skills.s.limits.speed: no field 'speed' in the goal; fields there: order"),
    ('{order: {max_items: 3}}', 'Fibonacci',
     'skills.s.limits.order: max_items bounds an array; this field is int32'),
    ('{order: {one_of: [a]}}', 'Fibonacci',
     'skills.s.limits.order: one_of applies to strings; this field is int32'),
    ('{"order[]": {max: 3}}', 'Fibonacci', "'order' is int32, not an array: drop the []"),
    ('{order: {min: 1.2, max: 1.8}}', 'Fibonacci', 'no integer lies within min 1.2, max 1.8'),
    ('{nested_field.uint8_value: {min: 256}}', 'NestedMessage',
     'skills.s.limits.nested_field.uint8_value: min 256 is above the largest uint8 (255)'),
    ('{nested_field.int8_value: {max: -129}}', 'NestedMessage', 'below the smallest int8'),
    ('{nested_field.bool_value: {max: 1}}', 'NestedMessage',
     'min/max apply to numbers; this field is boolean'),
    ('{nested_field.byte_value: {max: 1}}', 'NestedMessage', 'this field is octet'),
    ('{nested_field: {max: 1}}', 'NestedMessage',
     'min/max apply to numbers; this field is test_msgs/msg/BasicTypes'),
    ('{nested_field.int32_value.x: {max: 1}}', 'NestedMessage',
     "'int32_value' is int32: it has no fields"),
    ('{nested_field.nope: {max: 1}}', 'NestedMessage', "no field 'nope' in nested_field"),
])
def test_config_errors_are_one_line_naming_the_limit(limits, action, message):
    with pytest.raises(ConfigError) as caught:
        config(limits, f'test_msgs/action/{action}')
    text = str(caught.value)
    assert '\n' not in text and text.startswith('robot.yaml: skills.s.limits.')
    assert message in text, text


def test_a_fixed_value_breaking_a_limit_is_a_config_error():
    with pytest.raises(ConfigError, match='robot.yaml: skills.s.limits.order: the fixed value '
                                          'breaks it: order = 7 exceeds max 5'):
        config('{order: {max: 5}}', 'test_msgs/action/Fibonacci', 'fixed: {order: 7}')
    assert config('{order: {max: 5}}', 'test_msgs/action/Fibonacci', 'fixed: {order: 5}')


def test_good_limits_load_and_a_hidden_field_may_be_limited():
    loaded = config('{nested_field.float64_value: {min: -1.5, max: 2}, '
                    'nested_field.int32_value: {max: 10}, nested_different_pkg.sec: {max: 60}}',
                    extra='fields: [nested_field.float64_value]')
    assert set(loaded.skills['s'].limits) == {
        'nested_field.float64_value', 'nested_field.int32_value', 'nested_different_pkg.sec'}


@pytest.mark.parametrize('path, limit, problem', [
    ('points', Limit(min=0), 'this field is an array (trajectory_msgs/msg/JointTrajectoryPoint'),
    ('points.velocities', Limit(max=1), "'points' is an array: write points[] to reach"),
    ('points[].velocities', Limit(max=1), 'add [] to the path to limit its elements'),
    ('joint_names[]', Limit(min=0), 'min/max apply to numbers; this field is string'),
    ('header.frame_id', Limit(max_items=2), 'max_items bounds an array; this field is string'),
])
def test_limit_types_on_arrays_of_messages(path, limit, problem):
    with pytest.raises(LimitTypeError) as caught:
        check_limit_types(JointTrajectory, {path: limit})
    assert caught.value.path == path and problem in caught.value.problem


def test_limit_types_bounded_and_fixed_arrays_and_float32_paths():
    assert check_limit_types(msgs.BoundedSequences, {
        'float32_values[]': Limit(max=1), 'float64_values': Limit(max_items=10),
        'string_values[]': Limit(one_of=('a',)), 'int8_values[]': Limit(min=-3)}) == {
        'float32_values[]'}
    with pytest.raises(LimitTypeError, match='fixed-size array of 3 items'):
        check_limit_types(msgs.Arrays, {'int32_values': Limit(max_items=2)})
    with pytest.raises(LimitTypeError, match='longer than this string<=22'):
        check_limit_types(msgs.Strings, {'bounded_string_value': Limit(one_of=('x' * 23,))})


# ------------------------------------------------------------------------------ the gateway
def _walk(schema: dict, pointer: str) -> dict:
    node = schema
    for part in pointer.split('/'):
        node = node[part]
    if '$ref' in node:
        return _walk(schema, node['$ref'].removeprefix('#/'))
    return node


def test_schema_shows_limits_where_they_apply_intersected_with_the_type():
    schema = skill_schema(msgs.UnboundedSequences, Limits(max_items=100), goal_limits={
        'float32_values[]': Limit(min=-1e39, max=2.5), 'int8_values[]': Limit(min=-200, max=7),
        'string_values': Limit(max_items=1000), 'int32_values': Limit(max_items=4),
        'string_values[]': Limit(one_of=('up', 'down'))})
    props = schema['properties']
    assert props['float32_values']['items'] == {
        'type': 'number', 'minimum': -3.4028234663852886e+38, 'maximum': 2.5}
    assert props['int8_values']['items'] == {'type': 'integer', 'minimum': -128, 'maximum': 7}
    assert props['string_values']['maxItems'] == 100  # never widened past the type's own
    assert props['int32_values']['maxItems'] == 4
    assert props['string_values']['items']['enum'] == ['up', 'down']


def test_schema_limit_on_a_shared_type_binds_only_its_own_field():
    """builtin_interfaces/Time occurs twice in NestedMessage's goal: written once under
    $defs. A limit on one of them must not reach the other.
    """
    plain = skill_schema(actions.NestedMessage.Goal)
    assert '$defs' in plain and 'builtin_interfaces.Time' in plain['$defs']
    limited = skill_schema(actions.NestedMessage.Goal, goal_limits={
        'nested_different_pkg.sec': Limit(min=0, max=60)})
    sec = _walk(limited, 'properties/nested_different_pkg')['properties']['sec']
    assert sec['minimum'] == 0 and sec['maximum'] == 60
    other = _walk(limited, 'properties/nested_field_no_pkg/properties/time_value')
    assert other['properties']['sec']['maximum'] == 2 ** 31 - 1
    validator = jsonschema.Draft202012Validator(limited)
    assert not validator.is_valid({'nested_different_pkg': {'sec': 61}})
    assert validator.is_valid({'nested_field_no_pkg': {'time_value': {'sec': 61}}})


def test_schema_limited_float_drops_the_non_finite_strings():
    schema = skill_schema(actions.NestedMessage.Goal, Limits(allow_non_finite=True),
                          goal_limits={'nested_field.float64_value': Limit(max=2)})
    field = _walk(schema, 'properties/nested_field')['properties']['float64_value']
    assert 'anyOf' not in field and field['type'] == 'number' and field['maximum'] == 2
    assert field['description'] == 'double'  # the field's own description stays
    free = _walk(schema, 'properties/nested_field')['properties']['float32_value']
    assert 'anyOf' in free


def test_gateway_arguments_out_of_limits_raise_naming_field_value_and_limit():
    limits = GoalLimits({'nested_field.float64_value': Limit(min=-1, max=2),
                         'nested_field.int32_value': Limit(min=1)})
    arguments = SkillArguments(actions.NestedMessage.Goal, Limits(allow_non_finite=True),
                               goal_limits=limits)
    goal = arguments.to_goal({'nested_field': {'float64_value': 2, 'int32_value': 1}})
    assert goal.nested_field.float64_value == 2
    with pytest.raises(ArgumentError) as caught:
        arguments.to_goal({'nested_field': {'float64_value': 2.5, 'int32_value': 1}})
    error = caught.value
    assert error.field == 'nested_field.float64_value'
    assert error.problem == '2.5 exceeds max 2'
    assert error.details == {'value': 2.5, 'limit': 'max 2'}
    with pytest.raises(ArgumentError) as caught:
        arguments.to_goal({'nested_field': {'float64_value': 'NaN', 'int32_value': 1}})
    assert caught.value.details['value'] == 'NaN'
    with pytest.raises(ArgumentError, match='nested_field.int32_value: 0 is below min 1'):
        arguments.to_goal({})  # the default breaks the limit: the caller must give it


def test_gateway_refuses_to_start_when_a_hidden_default_breaks_a_limit():
    limits = GoalLimits({'nested_different_pkg.sec': Limit(min=1),  # exposed: give it
                         'nested_field.int32_value': Limit(min=1)})
    with pytest.raises(ValueError, match='limits: nested_field.int32_value = 0 is below min 1, '
                                         'the default of a field the tool does not expose'):
        SkillArguments(actions.NestedMessage.Goal, Limits(), fields=['nested_different_pkg'],
                       goal_limits=limits)
    SkillArguments(actions.NestedMessage.Goal, Limits(), fields=['nested_different_pkg'],
                   fixed={'nested_field.int32_value': 3}, goal_limits=limits)


AGREEMENT_LIMITS = {
    'float64_values[]': Limit(min=-1.5, max=2), 'int8_values[]': Limit(min=-3),
    'int32_values': Limit(max_items=3), 'string_values[]': Limit(one_of=('a', 'b')),
    'uint16_values': Limit(max_items=2), 'uint16_values[]': Limit(max=9.5)}


@settings(max_examples=200, deadline=None)
@given(arguments=st.fixed_dictionaries({}, optional={
    'float64_values': st.lists(st.one_of(st.floats(-3, 3), st.sampled_from([-1.5, 2, 2.0001])),
                               max_size=4),
    'int8_values': st.lists(st.integers(-6, 3), max_size=4),
    'int32_values': st.lists(st.integers(-5, 5), max_size=5),
    'string_values': st.lists(st.sampled_from(['a', 'b', 'c', '']), max_size=3),
    'uint16_values': st.lists(st.integers(0, 12), max_size=3)}))
def test_property_the_schema_and_the_check_agree(arguments):
    """What the inputSchema says of a call is what the gateway does with it."""
    limits = GoalLimits(AGREEMENT_LIMITS)
    skill = SkillArguments(msgs.UnboundedSequences, Limits(max_items=100), goal_limits=limits)
    valid = jsonschema.Draft202012Validator(skill.schema).is_valid(arguments)
    try:
        skill.to_goal(arguments)
    except ArgumentError:
        assert not valid, arguments
    else:
        assert valid, arguments

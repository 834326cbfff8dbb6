"""The gateway's side of the operator services, its resource errors, and per-skill schemas.

`lane_release` and `lane_stop` call the lane manager's per-lane std_srvs/Trigger services
(`<ns>/lanes/<lane>/release|stop`). Here a test node serves them for real over DDS, in a
namespace of this module where no lane manager runs, and records each call: the gateway
must call them, pass their answer on, and say clearly when no lane manager serves them.
The lane state resource read before any lane state exists is a retryable error; an unknown
resource is MCP's resource-not-found (-32002). A skill's config shapes its tool's schema.
"""
from __future__ import annotations

import os
import textwrap
import threading

import pytest
from mcp.shared.exceptions import MCPError

from support import wait_until
from test_gateway import InProcessGateway, assert_error, body, run, write_config

NAMESPACE = '/gw_operator_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      arm:  {{policy: queue}}
      base: {{policy: queue}}
    skills:
      reach: {{lane: arm, action_type: test_msgs/action/NestedMessage, driver: /gwop/reach,
              fields: [nested_field.int8_value, nested_field.float64_value, nested_different_pkg],
              fixed: {{nested_field.bool_value: true, nested_field.uint8_value: 7}},
              required: [nested_field.int8_value]}}
      count: {{lane: base, action_type: test_msgs/action/Fibonacci, driver: /gwop/count}}
    lane_manager: {{namespace: {NAMESPACE}}}
    gateway: {{lane_manager_wait_s: 1.0, max_array_items: 5, max_request_bytes: 2000}}
""")


@pytest.fixture(scope='module')
def gateway(tmp_path_factory, rclpy_context):
    config_file = write_config(tmp_path_factory.mktemp('gw_operator'), CONFIG)
    with InProcessGateway(config_file) as gw:
        yield gw


class TriggerServices:
    """Real std_srvs/Trigger servers named as the lane manager's, recording their calls."""

    def __init__(self, rclpy, answers: dict[str, tuple[bool, str]]) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import Trigger

        from skill_lanes.interfaces import lane_service_name
        self.calls: list[str] = []
        self.node = rclpy.create_node(f'gw_operator_services_{os.getpid()}')
        for key, (success, message) in answers.items():
            lane, verb = key.split('/')

            def handle(request, response, key=key, success=success, message=message):
                self.calls.append(key)
                response.success, response.message = success, message
                return response
            self.node.create_service(Trigger, lane_service_name(NAMESPACE, lane, verb), handle)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(5)


def call(gateway: InProcessGateway, name: str, arguments: dict):
    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool(name, arguments)
    return run(scenario)


def test_release_and_stop_without_the_lane_managers_services_say_so(gateway):
    answer = assert_error(call(gateway, 'lane_release', {'lane': 'arm', 'force': True}),
                          'unsupported')
    assert f'{NAMESPACE}/lanes/arm/release' in answer['message']
    # lane_stop falls back to cancel-all, which needs the lane manager's action servers.
    answer = assert_error(call(gateway, 'lane_stop', {'lane': 'arm'}),
                          'lane_manager_unavailable')
    assert answer['hint'] == 'retry'


def test_release_needs_force_true(gateway):
    answer = assert_error(call(gateway, 'lane_release', {'lane': 'arm', 'force': False}),
                          'invalid_arguments')
    assert answer['data']['field'] == 'force'
    answer = assert_error(call(gateway, 'lane_release', {'lane': 'arm'}), 'invalid_arguments')


def test_release_and_stop_call_the_lane_managers_trigger_services(gateway, rclpy_context):
    services = TriggerServices(rclpy_context, {
        'arm/release': (True, 'lane arm released by an operator'),
        'base/release': (False, 'lane base is not held'),
        'arm/stop': (True, 'stopped 2 goals')})
    try:
        client = gateway.ros.node._lane_services[('arm', 'release')]
        wait_until(client.service_is_ready, 20, what='the gateway to see the services')
        released = call(gateway, 'lane_release', {'lane': 'arm', 'force': True})
        assert not released.is_error
        assert body(released) == {'lane': 'arm', 'released': True,
                                  'detail': 'lane arm released by an operator'}
        refused = assert_error(call(gateway, 'lane_release', {'lane': 'base', 'force': True}),
                               'release_refused')
        assert refused['message'] == 'lane base is not held'
        stopped = call(gateway, 'lane_stop', {'lane': 'arm'})
        assert not stopped.is_error
        assert body(stopped) == {'lane': 'arm', 'stopped': True, 'cancelled': None,
                                 'detail': 'stopped 2 goals'}
        assert services.calls == ['arm/release', 'base/release', 'arm/stop']
    finally:
        services.close()


def test_resources_answer_mcp_errors_not_tracebacks(gateway):
    async def read(uri):
        async with gateway.client() as client:
            try:
                await client.read_resource(uri)
            except MCPError as exc:
                return exc
        return None
    missing = run(read, 'skill-lanes://nope')
    assert missing is not None and missing.code == -32002, missing
    assert 'skill-lanes://nope' in missing.message and 'Traceback' not in missing.message
    early = run(read, 'skill-lanes://lane-state')  # no lane manager: no lane state yet
    assert early is not None and early.code == -32010, early
    assert early.data['hint'] == 'retry' and early.data['retry_after_ms'] > 0


def test_skill_config_shapes_the_schema(gateway):
    async def tools():
        async with gateway.client() as client:
            return {t.name: t for t in (await client.list_tools()).tools}
    schema = run(tools)['reach'].input_schema
    assert set(schema['properties']) == {'nested_field', 'nested_different_pkg'}
    nested = schema['properties']['nested_field']
    assert set(nested['properties']) == {'int8_value', 'float64_value'}  # fixed ones hidden
    assert nested['required'] == ['int8_value'] and schema['required'] == ['nested_field']
    assert nested['properties']['float64_value'] == {'type': 'number', 'description': 'double'}
    assert len(str(schema)) < 1500


@pytest.mark.parametrize('arguments,field,problem', [
    ({}, 'nested_field', 'required by this skill'),
    ({'nested_field': {}}, 'nested_field.int8_value', 'required by this skill'),
    ({'nested_field': {'int8_value': 1, 'bool_value': False}}, 'nested_field.bool_value',
     'fixed by the skill configuration'),
    ({'nested_field': {'int8_value': 1, 'int16_value': 3}}, 'nested_field.int16_value',
     'unknown field: this skill takes only int8_value, float64_value'),
    ({'nested_field': {'int8_value': 1}, 'nested_field_no_pkg': {}}, 'nested_field_no_pkg',
     'unknown field'),
    ({'nested_field': {'int8_value': 1, 'float64_value': 'NaN'}}, 'nested_field.float64_value',
     'expected a finite number'),
    ({'nested_field': {'int8_value': 1}, 'nested_different_pkg': {'nanosec': 10 ** 9}},
     'nested_different_pkg.nanosec', 'must be below 1e9'),
])
def test_skill_config_is_enforced_with_the_field_named(gateway, arguments, field, problem):
    answer = assert_error(call(gateway, 'reach', arguments), 'invalid_arguments')
    assert answer['data']['field'] == field, answer
    assert answer['data']['problem'].startswith(problem), answer


def test_fixed_values_are_filled_in(gateway):
    goal = gateway.tools.make_goal('reach', {'nested_field': {'int8_value': -3}})
    assert goal.nested_field.int8_value == -3
    assert goal.nested_field.bool_value is True and goal.nested_field.uint8_value == 7


def test_size_limits_refuse_big_arguments_unread(gateway):
    answer = assert_error(call(gateway, 'count', {'order': 1, 'x': 'y' * 3000}),
                          'invalid_arguments')
    assert 'configured limit of 2000' in answer['message']


def test_unbounded_arrays_are_bounded_by_the_configured_limit():
    from test_msgs.msg import UnboundedSequences

    from mcp_gateway.ros_json import ArgumentError, Limits
    from mcp_gateway.skill_args import SkillArguments
    arguments = SkillArguments(UnboundedSequences, Limits(max_items=5))
    assert arguments.schema['properties']['int32_values']['maxItems'] == 5
    assert list(arguments.to_goal({'int32_values': list(range(5))}).int32_values) == \
        list(range(5))
    with pytest.raises(ArgumentError, match='at most 5 items') as error:
        arguments.to_goal({'int32_values': list(range(6))})
    assert error.value.field == 'int32_values'


def test_bad_skill_config_paths_are_config_errors():
    from test_msgs.action import Fibonacci

    from mcp_gateway.ros_json import Limits
    from mcp_gateway.skill_args import SkillArguments
    for kwargs in ({'fields': ['speed']}, {'required': ['order.x']}, {'fixed': {'nope': 1}}):
        with pytest.raises(ValueError):
            SkillArguments(Fibonacci.Goal, Limits(), **kwargs)
    with pytest.raises(Exception, match='out of range'):
        SkillArguments(Fibonacci.Goal, Limits(), fixed={'order': 2 ** 40})


def test_skill_arguments_accept_what_their_schema_says_and_keep_fixed_values():
    """Property: any value the cut schema allows converts, with the fixed values in place;
    adding any field the skill hides is refused, naming that field.
    """
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from test_msgs.action import NestedMessage

    from mcp_gateway.ros_json import ArgumentError, Limits
    from mcp_gateway.skill_args import SkillArguments
    arguments = SkillArguments(
        NestedMessage.Goal, Limits(), ['nested_field.int8_value', 'nested_field.float64_value',
                                       'nested_different_pkg'],
        {'nested_field.bool_value': True, 'nested_field.uint8_value': 7},
        ['nested_field.int8_value'])
    time_value = st.fixed_dictionaries({}, optional={
        'sec': st.integers(-2 ** 31, 2 ** 31 - 1), 'nanosec': st.integers(0, 999_999_999)})
    nested = st.fixed_dictionaries({'int8_value': st.integers(-128, 127)}, optional={
        'float64_value': st.floats(allow_nan=False, allow_infinity=False)})
    valid = st.fixed_dictionaries({'nested_field': nested},
                                  optional={'nested_different_pkg': time_value})
    hidden = st.sampled_from([('nested_field', 'int16_value'), ('nested_field', 'bool_value'),
                              ('', 'nested_field_no_pkg')])

    @settings(max_examples=60, deadline=None)
    @given(value=valid, extra=hidden)
    def check(value, extra):
        goal = arguments.to_goal(value)
        assert goal.nested_field.int8_value == value['nested_field']['int8_value']
        assert goal.nested_field.bool_value is True and goal.nested_field.uint8_value == 7
        parent, name = extra
        bad = {**value, 'nested_field': dict(value['nested_field'])}
        (bad[parent] if parent else bad)[name] = 1
        with pytest.raises(ArgumentError) as error:
            arguments.to_goal(bad)
        assert error.value.field == (f'{parent}.{name}' if parent else name)
    check()

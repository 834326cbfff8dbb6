"""The MCP gateway in front of a real lane manager and simulated driver (both OS processes).

In-process gateways (RosRuntime + SkillTools + build_server, reached with the SDK's in-memory
client, `mode="legacy"` for real JSON-RPC) test the tool surface; gateway processes test the
stdio and streamable HTTP transports, and the tool-lanes topic. Every effect on the robot is
checked where it happens: the simulated driver's counters (`/sim_driver/stats`).

This module uses a lane manager namespace and driver names of its own (NAMESPACE, /gwsim/...).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from skill_lanes.config import load_config
from ros_client import RosTestClient
from support import PYTHON, ROOT, ProcessGroup, sim_robot_client, wait_until

NAMESPACE = '/gw_test_lm'
ABSENT_NAMESPACE = '/gw_test_absent_lm'
BUILTIN_TOOLS = {'lanes_status', 'lane_stop', 'lane_release', 'skill_start', 'skill_status',
                 'skill_cancel'}

CONFIG = textwrap.dedent(f"""
    lanes:
      motion:       {{policy: queue, max_queue: 4}}
      manipulation: {{policy: reject, retry_after_ms: 700}}
      arm:          {{policy: queue}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwsim/navigate,
                 description: Drive to a goal.}}
      dock:     {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwsim/dock,
                 hints: {{destructive: false, idempotent: true, open_world: false}}}}
      patrol:   {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwsim/patrol}}
      grasp:    {{lane: manipulation, action_type: test_msgs/action/Fibonacci,
                 driver: /gwsim/grasp}}
      arm_move: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /gwsim/arm_move}}
      arm_home: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /gwsim/arm_home}}
      inspect:  {{action_type: test_msgs/action/NestedMessage, driver: /gwsim/inspect,
                 allow_non_finite: true, hints: {{read_only: true, destructive: false}}}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0, driver_lost_s: 1.5}}
    gateway: {{lane_manager_wait_s: 10.0, progress_interval_s: 0.25, refusal_wait_s: 3.0}}
    sim:
      default: {{duration_s: 0.6, feedback_hz: 10}}
      skills:
        patrol:   {{duration_s: 60.0, feedback_hz: 2}}
        arm_move: {{duration_s: 60.0, feedback_hz: 2}}
        grasp:    {{duration_s: 2.0, feedback_hz: 5}}
        arm_home: {{duration_s: 0.3}}
        inspect:  {{duration_s: 0.3}}
""")
LANES = {'navigate': 'motion', 'dock': 'motion', 'patrol': 'motion', 'grasp': 'manipulation',
         'arm_move': 'arm', 'arm_home': 'arm', 'inspect': None}
POLICIES = {'motion': 'queue', 'manipulation': 'reject', 'arm': 'queue'}


# ------------------------------------------------------------------------------ helpers
def write_config(directory: Path, text: str, name: str = 'robot.yaml') -> Path:
    path = directory / name
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run(scenario, *args, timeout: float = 60.0):
    """Run an async scenario on asyncio with an overall time limit; return its result."""
    async def bounded():
        with anyio.fail_after(timeout):
            return await scenario(*args)
    return anyio.run(bounded)


def body(result: types.CallToolResult) -> dict[str, Any]:
    assert isinstance(result, types.CallToolResult), result
    assert result.structured_content is not None, result
    text = [c.text for c in result.content if isinstance(c, types.TextContent)]
    assert text and json.loads(text[0]) == result.structured_content, \
        'text content must carry the same JSON as the structured content'
    return result.structured_content


def assert_error(result: types.CallToolResult, error: str) -> dict[str, Any]:
    answer = body(result)
    assert result.is_error is True, answer
    assert answer['success'] is False and answer['error'] == error, answer
    assert 'Traceback' not in result.content[0].text
    return answer


def assert_succeeded(result: types.CallToolResult, skill: str,
                     lanes: dict[str, Optional[str]] = LANES) -> dict[str, Any]:
    answer = body(result)
    assert not result.is_error, answer
    assert answer['status'] == 'succeeded' and answer['skill'] == skill, answer
    assert answer['lane'] == lanes[skill], answer
    assert isinstance(answer['goal_id'], str) and len(answer['goal_id']) == 36
    return answer


def gateway_env(**extra: str) -> dict[str, str]:
    """The environment of a gateway process: this test run's ROS domain and discovery."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    env.pop('SKILL_LANES_TOKEN', None)
    env.update(extra)
    return env


def stdio_gateway(config_file: Path, **client_options) -> Client:
    """A gateway process spawned by the SDK's stdio client, as an MCP host would."""
    return Client(StdioServerParameters(
        command=PYTHON, args=['-m', 'mcp_gateway', '--config', str(config_file),
                              '--transport', 'stdio'],
        env=gateway_env(), cwd=str(ROOT)), **client_options)


@asynccontextmanager
async def http_client(url: str, headers: Optional[dict] = None):
    """An SDK client over streamable HTTP, with extra headers (e.g. the bearer token)."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    async with httpx2.AsyncClient(headers=headers or {},
                                  timeout=httpx2.Timeout(30.0, read=120.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


class InProcessGateway:
    """The gateway's pieces in this process; `client()` connects a new in-memory session."""

    def __init__(self, config_file: Path) -> None:
        from mcp_gateway.main import package_version
        from mcp_gateway.node import RosRuntime
        from mcp_gateway.server import build_server
        from mcp_gateway.skill_tools import SkillTools
        self.config = load_config(config_file)
        self.ros = RosRuntime.start(self.config, f'gw_test_{os.getpid()}_{id(self)}')
        self.tools = SkillTools(self.config, self.ros.node)
        self.server = build_server(self.config.gateway.name, package_version(), [self.tools],
                                   lambda: self.ros.node.lane_state)

    def client(self, mode: str = 'legacy') -> Client:
        return Client(self.server, mode=mode)

    def wait_ready(self, *skills: str, timeout: float = 20.0) -> None:
        for skill in skills or tuple(self.config.skills):
            wait_until(lambda: self.ros.node.server_ready(skill), timeout,
                       what=f'the gateway to discover the lane manager action for {skill}')

    def close(self) -> None:
        self.ros.stop()

    def __enter__(self) -> 'InProcessGateway':
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def conforming_answers(monkeypatch):
    """Every answer a test here receives conforms to the outputSchema its tool lists.

    The Python SDK does not check it; clients on the TypeScript SDK do, and throw a result
    away when it does not match. So each real answer is checked as they would (draft-07).
    """
    import jsonschema
    original = Client.call_tool
    failures: list = []

    async def call_tool(self, name, arguments=None, *args, **kwargs):
        result = await original(self, name, arguments, *args, **kwargs)
        try:
            tools = {t.name: t for t in (await self.list_tools()).tools}
        except Exception:  # the session ended with the call (e.g. a killed server)
            return result
        tool = tools.get(name)
        if tool is not None and tool.output_schema is not None:
            validator = jsonschema.Draft7Validator(tool.output_schema)
            errors = [e.message for e in validator.iter_errors(result.structured_content)]
            if errors:
                failures.append((name, errors[:3], result.structured_content))
        return result
    monkeypatch.setattr(Client, 'call_tool', call_tool)
    yield
    assert not failures, f'answers not conforming to their outputSchema: {failures}'


@pytest.fixture(scope='module')
def config_file(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp('gw_cfg'), CONFIG)


@pytest.fixture(scope='module')
def stack(config_file, rclpy_context):
    """sim_driver + lane_manager processes and a test ROS client, for this module."""
    with sim_robot_client(config_file, NAMESPACE, 'gw_test_lane_manager',
                          ('navigate', 'grasp', 'arm_move'), 'motion') as client:
        yield client


@pytest.fixture(scope='module')
def gateway(stack, config_file) -> InProcessGateway:
    with InProcessGateway(config_file) as gw:
        gw.wait_ready()
        wait_until(lambda: gw.ros.node.lane_state is not None, 20,
                   what='the gateway to receive the lane state')
        yield gw


def lane_counts(stack: RosTestClient, lane: str) -> dict:
    return stack.wait_stats(lambda s: lane in s['lanes'])['lanes'][lane]


def wait_lane_free(stack: RosTestClient, lane: str, timeout: float = 20.0) -> None:
    stack.wait_state(lambda s: s['lanes'][lane]['holder'] is None
                     and not s['lanes'][lane]['queue'],
                     timeout, what=f'lane {lane} to be free')
    stack.wait_stats(lambda s: s['lanes'][lane]['active'] == 0, timeout,
                     what=f'no {lane} goal active at the driver')


async def wait_async(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:g} s waiting for {what}')
        await anyio.sleep(0.02)


# ------------------------------------------------------------------------------ tools/list
def test_tools_list_one_tool_per_skill_with_lane_meta_and_schemas(gateway):
    from test_msgs.action import Fibonacci, NestedMessage
    from mcp_gateway.ros_json import Limits
    from mcp_gateway.ros_schema import skill_schema

    async def scenario():
        async with gateway.client() as client:
            return (await client.list_tools()).tools
    tools = {t.name: t.model_dump(by_alias=True, exclude_none=True, mode='json')
             for t in run(scenario)}
    assert set(tools) == set(LANES) | BUILTIN_TOOLS

    for skill, lane in LANES.items():
        tool = tools[skill]
        action = NestedMessage if skill == 'inspect' else Fibonacci
        meta = tool['_meta']
        assert meta['skill-lanes/lanes'] == meta['lanes'] == ([] if lane is None else [lane])
        if lane is None:
            assert 'lane' not in meta and 'skill-lanes/lane' not in meta
            assert 'skill-lanes/policy' not in meta and 'skill_lanes/policy' not in meta
        else:
            assert meta['skill-lanes/lane'] == meta['lane'] == lane
            assert meta['skill-lanes/policy'] == meta['skill_lanes/policy'] == POLICIES[lane]
        assert meta['skill-lanes/action_type'] == meta['skill_lanes/action_type'] == (
            'test_msgs/action/NestedMessage' if skill == 'inspect'
            else 'test_msgs/action/Fibonacci')
        limits = Limits(allow_non_finite=skill == 'inspect', max_items=100_000)
        assert tool['inputSchema'] == skill_schema(action.Goal, limits)
        assert tool['inputSchema']['additionalProperties'] is False
        output = tool['outputSchema']
        assert output['type'] == 'object'
        assert {'required': ['status', 'goal_id', 'result']} in output['anyOf']
        assert output['properties']['result']['anyOf'][1] == {'type': 'null'}
        assert tool['description'].endswith('.')
    assert tools['navigate']['description'].startswith('Drive to a goal. ')
    assert "lane 'motion'" in tools['navigate']['description']
    assert 'refused with error "operation_busy"' in tools['grasp']['description']

    # Annotations: robot skills default to destructive, open world; config hints override.
    assert tools['navigate']['annotations'] == {
        'readOnlyHint': False, 'destructiveHint': True, 'idempotentHint': False,
        'openWorldHint': True}
    assert tools['dock']['annotations'] == {
        'readOnlyHint': False, 'destructiveHint': False, 'idempotentHint': True,
        'openWorldHint': False}
    assert tools['inspect']['annotations']['readOnlyHint'] is True
    assert tools['inspect']['annotations']['destructiveHint'] is False

    for name in BUILTIN_TOOLS:
        schema = tools[name]['inputSchema']
        assert schema['type'] == 'object' and schema['additionalProperties'] is False
        assert tools[name]['outputSchema']['type'] == 'object'
    assert tools['lanes_status']['annotations']['readOnlyHint'] is True
    assert tools['lane_stop']['inputSchema']['properties']['lane']['enum'] == sorted(POLICIES)
    assert tools['lane_release']['inputSchema']['required'] == ['lane', 'force']
    assert tools['skill_start']['inputSchema']['properties']['skill']['enum'] == sorted(LANES)
    assert tools['skill_status']['inputSchema']['required'] == ['goal_id']
    assert tools['skill_cancel']['inputSchema']['required'] == ['goal_id']


def test_tools_list_same_over_direct_in_memory_dispatch(gateway):
    """The SDK's default in-memory mode (no JSON-RPC framing) lists the same tools."""
    async def scenario(mode):
        async with gateway.client(mode) as client:
            return [t.model_dump(by_alias=True, exclude_none=True, mode='json')
                    for t in (await client.list_tools()).tools]
    assert run(scenario, 'auto') == run(scenario, 'legacy')


def test_schema_of_nested_message_covers_every_field_kind(gateway):
    async def scenario():
        async with gateway.client() as client:
            return (await client.list_tools()).tools
    tools = run(scenario)
    tool = next(t for t in tools if t.name == 'inspect')
    schema = tool.input_schema
    assert schema['description'] == 'test_msgs/action/NestedMessage_Goal'
    assert set(schema['properties']) == {'nested_field_no_pkg', 'nested_field',
                                         'nested_different_pkg'}

    basic = schema['properties']['nested_field']
    assert basic['type'] == 'object' and basic['additionalProperties'] is False
    assert basic['description'].startswith('test_msgs/')
    fields = basic['properties']
    integers = {'int8_value': (-128, 127), 'uint8_value': (0, 255), 'char_value': (0, 255),
                'byte_value': (0, 255), 'int16_value': (-2**15, 2**15 - 1),
                'uint16_value': (0, 2**16 - 1), 'int32_value': (-2**31, 2**31 - 1),
                'uint32_value': (0, 2**32 - 1), 'int64_value': (-2**63, 2**63 - 1),
                'uint64_value': (0, 2**64 - 1)}
    for name, (low, high) in integers.items():
        assert fields[name]['type'] == 'integer', name
        assert (fields[name]['minimum'], fields[name]['maximum']) == (low, high), name
        assert 'default' not in fields[name]  # zero goes without saying
    assert fields['byte_value']['description'] == 'octet'
    assert fields['bool_value'] == {'description': 'boolean', 'type': 'boolean'}
    # This skill allows non-finite floats (config allow_non_finite): number or its names.
    for name, bounds in (('float32_value', {'minimum': -3.4028234663852886e+38,
                                            'maximum': 3.4028234663852886e+38}),
                         ('float64_value', {})):
        number, non_finite = fields[name]['anyOf']
        assert number == {'type': 'number', **bounds}, name
        assert non_finite == {'enum': ['NaN', 'Infinity', '-Infinity']}
    # Other skills take plain numbers.
    navigate = next(t for t in tools if t.name == 'navigate')
    assert 'anyOf' not in json.dumps(navigate.input_schema)

    builtins = schema['properties']['nested_field_no_pkg']
    assert builtins['description'].startswith('test_msgs/msg/Builtins')
    # Time appears three times: written once, under $defs.
    time_def = schema['$defs']['builtin_interfaces.Time']
    assert time_def['description'].startswith('builtin_interfaces/msg/Time: a point in time')
    duration = builtins['properties']['duration_value']
    assert duration['description'].startswith('builtin_interfaces/msg/Duration: a span of time')
    for stamp in (duration, time_def):
        assert stamp['type'] == 'object' and stamp['additionalProperties'] is False
        assert stamp['properties']['sec']['minimum'] == -2**31
        assert stamp['properties']['nanosec']['maximum'] == 999_999_999
    for ref in (builtins['properties']['time_value'],
                schema['properties']['nested_different_pkg']):
        assert ref['$ref'] == '#/$defs/builtin_interfaces.Time'
    # Unbounded sequences: the Result's int32[] of Fibonacci.
    result = navigate.output_schema['properties']['result']['anyOf'][0]
    sequence = result['properties']['sequence']
    assert sequence['type'] == 'array' and 'maxItems' not in sequence
    assert sequence['items'] == {'type': 'integer', 'minimum': -2**31, 'maximum': 2**31 - 1}
    assert navigate.input_schema['properties']['order']['type'] == 'integer'


# ------------------------------------------------------------------------------ tools/call
def test_call_skill_returns_result_with_monotonic_progress(gateway, stack):
    before = lane_counts(stack, 'motion')['goals']
    progress: list[tuple[float, Optional[float], Optional[str]]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool('navigate', {'order': 5},
                                          progress_callback=on_progress)
    answer = assert_succeeded(run(scenario), 'navigate')
    assert answer['result'] == {'sequence': []}
    assert lane_counts(stack, 'motion')['goals'] == before + 1
    values = [p[0] for p in progress]
    assert len(values) >= 2, progress
    assert all(b > a for a, b in zip(values, values[1:])), f'progress must increase: {values}'
    messages = [p[2] or '' for p in progress]
    assert any('accepted' in m and answer['goal_id'] in m for m in messages), messages
    assert any(m.startswith('navigate: {') for m in messages), messages


def test_call_nested_skill_without_lane(gateway, stack):
    before = stack.wait_stats(lambda s: 'inspect' in s['drivers'])['drivers']['inspect']['goals']

    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool('inspect', {
                'nested_field': {'int8_value': -5, 'float32_value': 'NaN', 'bool_value': True,
                                 'uint64_value': 2**64 - 1},
                'nested_different_pkg': {'sec': 3, 'nanosec': 5}})
    answer = assert_succeeded(run(scenario), 'inspect')
    assert answer['lane'] is None
    assert set(answer['result']) == {'nested_field_no_pkg', 'nested_field',
                                     'nested_different_pkg'}
    assert stack.sim_stats['drivers']['inspect']['goals'] == before + 1


@pytest.mark.parametrize('skill, arguments, field', [
    ('navigate', {'order': 'fast'}, 'order'),
    ('navigate', {'order': 2**31}, 'order'),
    ('navigate', {'order': 1.5}, 'order'),
    ('navigate', {'bogus': 1}, 'bogus'),
    ('inspect', {'nested_field': {'int8_value': 128}}, 'nested_field.int8_value'),
    ('inspect', {'nested_field': {'float64_value': 'nan'}}, 'nested_field.float64_value'),
    ('inspect', {'nested_different_pkg': {'sec': 1, 'extra': 2}}, 'nested_different_pkg.extra'),
    ('inspect', {'nested_field_no_pkg': []}, 'nested_field_no_pkg'),
])
def test_bad_argument_is_an_error_result_naming_the_field(gateway, stack, skill, arguments,
                                                          field):
    before = stack.sim_stats['drivers'][skill]['goals']

    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool(skill, arguments)
    answer = assert_error(run(scenario), 'invalid_arguments')
    assert answer['data']['field'] == field, answer
    assert answer['data']['skill'] == skill
    assert answer['message'] and answer['data']['problem']
    assert stack.sim_stats['drivers'][skill]['goals'] == before, 'no goal may be sent'


def test_unknown_tool_is_an_error_result(gateway):
    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool('teleport', {'order': 1})
    answer = assert_error(run(scenario), 'unknown_tool')
    assert 'teleport' in answer['message']
    assert set(answer['data']['known']) == set(LANES) | BUILTIN_TOOLS


def test_skill_start_status_cancel_round_trip(gateway, stack):
    canceled_before = lane_counts(stack, 'arm')['canceled']

    async def status(client, goal_id):
        return body(await client.call_tool('skill_status', {'goal_id': goal_id}))

    async def wait_state(client, goal_id, states, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            answer = await status(client, goal_id)
            if answer['state'] in states:
                return answer
            assert time.monotonic() < deadline, f'job stuck in {answer}'
            await anyio.sleep(0.05)

    async def scenario():
        async with gateway.client() as client:
            started = body(await client.call_tool('skill_start', {
                'skill': 'arm_home', 'arguments': {'order': 3}}))
            assert started['skill'] == 'arm_home' and started['lane'] == 'arm'
            done = await wait_state(client, started['goal_id'], {'succeeded', 'failed'})
            assert done['state'] == 'succeeded', done
            assert done['result']['status'] == 'succeeded'
            assert done['result']['goal_id'] == started['goal_id']
            assert done['feedback_count'] >= 1 and done['feedback'] == {'sequence': []}

            long = body(await client.call_tool('skill_start', {'skill': 'arm_move'}))
            await wait_state(client, long['goal_id'], {'accepted'})
            await wait_async(lambda: lane_counts(stack, 'arm')['active'] == 1, 15,
                             'arm_move running at the driver')
            canceled = await client.call_tool('skill_cancel', {'goal_id': long['goal_id']})
            assert not canceled.is_error and body(canceled)['state'] == 'canceled'
            assert (await status(client, long['goal_id']))['state'] == 'canceled'

            bad = await client.call_tool('skill_start', {'skill': 'arm_move',
                                                         'arguments': {'order': 'x'}})
            assert assert_error(bad, 'invalid_arguments')['data']['field'] == 'arguments.order'
            assert_error(await client.call_tool('skill_status', {'goal_id': 'nope'}),
                         'unknown_goal')
            assert_error(await client.call_tool('skill_cancel', {'goal_id': 'nope'}),
                         'unknown_goal')
    run(scenario)
    stack.wait_stats(lambda s: s['lanes']['arm']['canceled'] == canceled_before + 1, 15,
                     what='the driver to see the cancel of the job')
    wait_lane_free(stack, 'arm')


def test_lane_stop_cancels_running_and_queued_goals(gateway, stack):
    counts = lane_counts(stack, 'motion')
    results: dict[str, types.CallToolResult] = {}

    async def call(client, key, skill):
        results[key] = await client.call_tool(skill, {})

    async def scenario():
        async with gateway.client() as client, anyio.create_task_group() as group:
            group.start_soon(call, client, 'running', 'patrol')
            await wait_async(lambda: (stack.sim_stats['lanes']['motion']['active'] == 1), 15,
                             'patrol running at the driver')
            group.start_soon(call, client, 'queued', 'navigate')
            await wait_async(lambda: len((stack.lane_state or {})['lanes']['motion']['queue'])
                             == 1, 15, 'navigate queued behind patrol')
            stopped = await client.call_tool('lane_stop', {'lane': 'motion'})
            assert not stopped.is_error, stopped
            answer = body(stopped)
            assert answer['lane'] == 'motion' and answer['stopped'] is True, answer
            # cancelled: a count where the gateway fell back to cancel-all (no stop service).
            assert answer['cancelled'] in (None, 2), answer
    run(scenario)
    for key in ('running', 'queued'):
        answer = body(results[key])
        assert results[key].is_error and answer['success'] is False, answer
        # canceled (cancel-all) or as the lane manager's stop service ends them; either way
        # the reason names lane_stop.
        assert answer['status'] in ('canceled', 'aborted'), answer
        assert answer['error'] == f"goal_{answer['status']}" and answer['lane'] == 'motion'
        assert 'lane_stop' in answer['message'], answer
    stack.wait_stats(lambda s: s['lanes']['motion']['canceled'] == counts['canceled'] + 1, 15,
                     what='the driver to see the running goal cancelled')
    wait_lane_free(stack, 'motion')
    # The queued goal never reached a driver.
    assert lane_counts(stack, 'motion')['goals'] == counts['goals'] + 1


def test_lane_stop_rejects_unknown_lane(gateway):
    async def scenario():
        async with gateway.client() as client:
            return await client.call_tool('lane_stop', {'lane': 'warp'})
    answer = assert_error(run(scenario), 'invalid_arguments')
    assert answer['data']['field'] == 'lane'


def test_lanes_status_and_lane_state_resource(gateway, stack):
    async def scenario():
        async with gateway.client() as client:
            status = await client.call_tool('lanes_status', {})
            resources = (await client.list_resources()).resources
            content = await client.read_resource('skill-lanes://lane-state')
            return status, resources, content
    status, resources, content = run(scenario)
    answer = body(status)
    assert not status.is_error
    assert set(answer['lanes']) == set(POLICIES)
    for lane, policy in POLICIES.items():
        record = answer['lanes'][lane]
        assert record['policy'] == policy
        assert {'holder', 'queue', 'last_refusals', 'last_endings', 'counters'} <= set(record)
    assert sorted(answer['lanes']['motion']['skills']) == ['dock', 'navigate', 'patrol']
    assert isinstance(answer['stamp'], float)

    assert [str(r.uri) for r in resources] == ['skill-lanes://lane-state',
                                               'skill-lanes://lane-state/schema']
    assert resources[0].mime_type == 'application/json'
    (text,) = content.contents
    state = json.loads(text.text)
    assert set(state['lanes']) == set(POLICIES)
    assert set(state['skills']) == set(LANES)
    assert state['skills']['grasp']['server'] == f'{NAMESPACE}/skills/grasp'


def test_the_lane_state_resource_points_to_its_schema_and_conforms(gateway, stack):
    """The lane-state resource names its JSON Schema (description and `_meta`), served as a
    resource of its own: a valid draft 2020-12 schema, the typed model's, which the lane
    state read next to it conforms to (and so does lanes_status's answer).
    """
    import jsonschema

    from skill_lanes.lane_state import json_schema

    async def scenario():
        async with gateway.client() as client:
            resources = (await client.list_resources()).resources
            schema = await client.read_resource('skill-lanes://lane-state/schema')
            content = await client.read_resource('skill-lanes://lane-state')
            status = await client.call_tool('lanes_status', {})
            return resources, schema, content, status
    resources, schema, content, status = run(scenario)
    listed = {str(r.uri): r for r in resources}
    state_entry = listed['skill-lanes://lane-state']
    schema_entry = listed['skill-lanes://lane-state/schema']
    assert 'skill-lanes://lane-state/schema' in state_entry.description
    assert state_entry.meta == {'skill-lanes/schema': 'skill-lanes://lane-state/schema'}
    assert schema_entry.mime_type == 'application/schema+json'
    assert schema_entry.meta == {'skill-lanes/schema_of': 'skill-lanes://lane-state'}
    (schema_text,) = schema.contents
    assert schema_text.mime_type == 'application/schema+json'
    served = json.loads(schema_text.text)
    assert schema_entry.size == len(schema_text.text.encode())
    jsonschema.Draft202012Validator.check_schema(served)
    assert served['$schema'] == 'https://json-schema.org/draft/2020-12/schema'
    assert {k: v for k, v in served.items() if k != '$schema'} == json_schema()
    validator = jsonschema.Draft202012Validator(served)
    (text,) = content.contents
    assert list(validator.iter_errors(json.loads(text.text))) == []
    assert list(validator.iter_errors(body(status))) == []
    # The schema is strict enough to say no: a mistyped key fails it.
    state = json.loads(text.text)
    state['lanes']['motion']['counters']['started'] = 'six'
    assert not validator.is_valid(state)


def test_busy_reject_lane_answers_operation_busy(gateway, stack):
    goals_before = lane_counts(stack, 'manipulation')['goals']
    results: list[types.CallToolResult] = []

    async def call(client):
        results.append(await client.call_tool('grasp', {'order': 1}))

    async def scenario():
        async with gateway.client() as client, anyio.create_task_group() as group:
            group.start_soon(call, client)
            group.start_soon(call, client)
    run(scenario)
    ok = [r for r in results if not r.is_error]
    busy = [r for r in results if r.is_error]
    assert len(ok) == 1 and len(busy) == 1, [body(r) for r in results]
    winner = assert_succeeded(ok[0], 'grasp')
    answer = assert_error(busy[0], 'operation_busy')
    assert answer['hint'] == 'retry'
    data = answer['data']
    assert data['lane'] == 'manipulation' and data['skill'] == 'grasp'
    assert data['retry_after_ms'] == 700
    assert data['holder']['goal_id'] == winner['goal_id']
    assert data['holder']['skill'] == 'grasp'
    assert 'held by' in data['reason'] and data['reason'] == answer['message']
    assert data['goal_id'] != winner['goal_id']
    assert lane_counts(stack, 'manipulation')['goals'] == goals_before + 1


def test_mcp_cancellation_cancels_goal_at_driver_and_frees_lane(gateway, stack):
    counts = lane_counts(stack, 'arm')
    progress: list[str] = []

    async def on_progress(value, total, message):
        progress.append(message or '')

    async def scenario():
        async with gateway.client() as client:
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: client.call_tool('arm_move', {},
                                                          progress_callback=on_progress))
                await wait_async(lambda: any('accepted' in m for m in progress), 15,
                                 'the goal accepted')
                await wait_async(lambda: stack.sim_stats['lanes']['arm']['active'] == 1, 15,
                                 'arm_move running at the driver')
                group.cancel_scope.cancel()  # the client sends notifications/cancelled
            await wait_async(
                lambda: stack.sim_stats['lanes']['arm']['canceled'] == counts['canceled'] + 1,
                15, 'the driver to see the cancel')
            # The lane is free again: the next goal runs at once.
            return await client.call_tool('arm_home', {})
    started = time.monotonic()
    assert_succeeded(run(scenario), 'arm_home')
    assert time.monotonic() - started < 30
    stats = lane_counts(stack, 'arm')
    assert stats['goals'] == counts['goals'] + 2 and stats['overlaps'] == 0
    wait_lane_free(stack, 'arm')


def test_big_goal_is_sent_off_the_event_loop(gateway, stack, monkeypatch):
    """Sending a goal converts it to its wire form in the sending thread (0.3 s for a
    150k-point trajectory, an action type no PyPI package has): a big goal is sent from a
    worker thread, so the calls of other lanes go on meanwhile. Here every goal counts as
    big, and navigate's send holds its thread as such a conversion would.
    """
    from skill_lanes import interfaces
    monkeypatch.setattr(interfaces, 'BIG_GOAL_ELEMENTS', 1)
    action_client = gateway.ros.node._links['navigate'].client
    send_goal = action_client.send_goal_async
    release, hold_over = threading.Event(), threading.Event()
    send_threads: list[int] = []

    def held_send(*args, **kwargs):
        send_threads.append(threading.get_ident())
        release.wait(20.0)  # bounded: a send on the event loop blocks it this long
        hold_over.set()
        return send_goal(*args, **kwargs)
    monkeypatch.setattr(action_client, 'send_goal_async', held_send)
    answers: dict[str, types.CallToolResult] = {}

    async def call(client: Client, tool: str) -> None:
        answers[tool] = await client.call_tool(tool, {'order': 2})

    async def scenario():
        async with gateway.client() as agent_a, gateway.client() as agent_b:
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(call, agent_a, 'navigate')
                    await wait_async(lambda: send_threads, 15, "navigate's send to start")
                    await call(agent_b, 'arm_home')
                    arm_home_ended_during_hold = not hold_over.is_set()
                    release.set()
            finally:
                release.set()
        return threading.get_ident(), arm_home_ended_during_hold
    loop_thread, arm_home_ended_during_hold = run(scenario)
    assert send_threads and send_threads[0] != loop_thread, 'sent on the event loop'
    assert arm_home_ended_during_hold, "another lane's call waited for the big goal's send"
    assert_succeeded(answers['arm_home'], 'arm_home')
    assert_succeeded(answers['navigate'], 'navigate')
    wait_lane_free(stack, 'motion')


def test_lane_manager_unreachable_then_recovers(stack, config_file, tmp_path, processes):
    text = CONFIG.replace(f'namespace: {NAMESPACE}', f'namespace: {ABSENT_NAMESPACE}')
    text = text.replace('lane_manager_wait_s: 10.0', 'lane_manager_wait_s: 2.0')
    absent_config = write_config(tmp_path, text)
    gw = InProcessGateway(absent_config)
    try:
        async def call():
            async with gw.client() as client:
                started = time.monotonic()
                result = await client.call_tool('navigate', {})
                return result, time.monotonic() - started
        result, took = run(call)
        answer = assert_error(result, 'lane_manager_unavailable')
        assert 2.0 <= took < 8, f'an unreachable lane manager took {took:.1f} s to report'
        assert gw.ros.node.lane_state is None
        assert answer['hint'] == 'retry' and answer['data']['retry_after_ms'] > 0
        assert ABSENT_NAMESPACE in answer['message']

        manager = processes.python('lane_manager.node', '--config', str(absent_config),
                                   '--ros-args', '-r', '__node:=gw_late_lane_manager',
                                   name='late_lane_manager')
        manager.wait_for_output('lane_manager ready')
        gw.wait_ready('navigate', timeout=20)
        # A lane manager that just started may not have discovered the drivers yet (its
        # config allows driver_wait_s=1): wait until its lane state says it has.
        wait_until(lambda: ((gw.ros.node.lane_state or {}).get('skills', {})
                            .get('navigate', {}).get('driver_available')), 20,
                   what='the late lane manager to see the navigate driver')
        result, _ = run(call)
        assert_succeeded(result, 'navigate')
    finally:
        gw.close()


# ------------------------------------------------------------------------------ stdio
def test_stdio_gateway_process_call_works(stack, config_file):
    before = lane_counts(stack, 'motion')['goals']

    async def scenario():
        async with stdio_gateway(config_file) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == set(LANES) | BUILTIN_TOOLS
            return await client.call_tool('dock', {'order': 2})
    assert_succeeded(run(scenario, timeout=90), 'dock')
    assert lane_counts(stack, 'motion')['goals'] == before + 1


def _jsonrpc(proc, message: dict) -> None:
    proc.popen.stdin.write((json.dumps(message) + '\n').encode())
    proc.popen.stdin.flush()


def test_stdio_client_gone_mid_call_cancels_goal_at_driver(stack, config_file, processes):
    """The host closes the gateway's stdin (the client went away) while a goal runs."""
    counts = lane_counts(stack, 'arm')
    proc = processes.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'stdio', env=gateway_env(), name='stdio_gateway',
                            stdin=subprocess.PIPE)
    proc.wait_for_output('mcp_gateway ready', timeout=60)
    _jsonrpc(proc, {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize', 'params': {
        'protocolVersion': '2025-11-25', 'capabilities': {},
        'clientInfo': {'name': 'raw-test-client', 'version': '0'}}})
    proc.wait_for_output('"id":1', timeout=30)
    _jsonrpc(proc, {'jsonrpc': '2.0', 'method': 'notifications/initialized'})
    _jsonrpc(proc, {'jsonrpc': '2.0', 'id': 2, 'method': 'tools/call', 'params': {
        'name': 'arm_move', 'arguments': {}, '_meta': {'progressToken': 'tok'}}})
    proc.wait_for_output('accepted (goal', timeout=30)
    stack.wait_stats(lambda s: s['lanes']['arm']['active'] == 1, 15,
                     what='arm_move running at the driver')
    proc.popen.stdin.close()
    stack.wait_stats(lambda s: s['lanes']['arm']['canceled'] == counts['canceled'] + 1, 15,
                     what='the driver to see the cancel after stdin closed')
    wait_lane_free(stack, 'arm')
    proc.popen.wait(timeout=20)
    assert proc.popen.returncode == 0, proc.output()[-3000:]
    assert 'Traceback' not in proc.output(), proc.output()[-3000:]


# ------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope='module')
def http_gateway(stack, config_file):
    """A long-running gateway process on streamable HTTP (127.0.0.1, no token)."""
    group = ProcessGroup()
    port = free_port()
    try:
        proc = group.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'http', '--port', str(port), env=gateway_env(),
                            name='http_gateway')
        proc.wait_for_output(f'mcp_gateway ready on http://127.0.0.1:{port}/mcp', timeout=60)
        yield proc, f'http://127.0.0.1:{port}/mcp'
    finally:
        group.stop_all()


INITIALIZE = {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize', 'params': {
    'protocolVersion': '2025-11-25', 'capabilities': {},
    'clientInfo': {'name': 'raw', 'version': '0'}}}
MCP_HEADERS = {'content-type': 'application/json',
               'accept': 'application/json, text/event-stream'}


def post(url: str, headers: dict, payload: dict = INITIALIZE):
    import httpx2
    return httpx2.post(url, headers={**MCP_HEADERS, **headers}, json=payload, timeout=30)


def test_http_gateway_call_works(stack, http_gateway):
    import importlib.metadata
    _, url = http_gateway
    before = lane_counts(stack, 'motion')['goals']

    async def scenario():
        async with Client(url) as client:
            return client.server_info, await client.call_tool('navigate', {'order': 1})
    server_info, result = run(scenario)
    assert_succeeded(result, 'navigate')
    assert lane_counts(stack, 'motion')['goals'] == before + 1
    # serverInfo.version is the installed package's, not a second copy of it
    assert server_info.version == importlib.metadata.version('skill_lanes')


def test_the_gateway_version_is_the_package_metadata(monkeypatch):
    import importlib.metadata

    from mcp_gateway.main import package_version

    def version(name: str) -> str:
        if name != 'skill_lanes':
            raise importlib.metadata.PackageNotFoundError(name)
        return '7.7.7'
    monkeypatch.setattr(importlib.metadata, 'version', version)
    assert package_version() == '7.7.7'
    monkeypatch.setattr(importlib.metadata, 'version', lambda name: version('not installed'))
    assert package_version() == '0+unknown'


def test_http_gateway_checks_host_and_origin(http_gateway):
    _, url = http_gateway
    port = url.split(':')[2].split('/')[0]
    assert post(url, {}).status_code == 200
    assert post(url, {'Origin': f'http://127.0.0.1:{port}'}).status_code == 200
    assert post(url, {'Host': 'evil.example.com'}).status_code == 421
    assert post(url, {'Host': f'attacker.test:{port}'}).status_code == 421
    assert post(url, {'Origin': 'http://evil.example.com'}).status_code == 403


def test_tool_lanes_topic_lists_each_tool_lane_and_policy(http_gateway, rclpy_context):
    from std_msgs.msg import String
    from skill_lanes.interfaces import LANE_STATE_QOS
    from skill_lanes.runtime import BackgroundExecutor
    from rclpy.node import Node
    proc, _ = http_gateway
    seen: dict[int, dict] = {}
    node = Node(f'gw_tool_lanes_listener_{os.getpid()}')
    node.create_subscription(String, '/skill_lanes/tool_lanes',
                             lambda msg: seen.__setitem__(json.loads(msg.data)['pid'],
                                                          json.loads(msg.data)),
                             LANE_STATE_QOS)
    executor = BackgroundExecutor(node)
    try:
        wait_until(lambda: proc.pid in seen, 20,
                   what='the gateway tool lanes (transient local) on /skill_lanes/tool_lanes')
    finally:
        executor.shutdown()
        node.destroy_node()
    message = seen[proc.pid]
    assert message['transport'] == 'http' and message['server_name'] == 'skill_lanes'
    assert message['gateway'].startswith('/mcp_gateway_')
    tools = {t['tool']: t for t in message['tools']}
    assert set(tools) == set(LANES)
    for name, lane in LANES.items():
        assert tools[name]['lane'] == lane
        assert tools[name]['policy'] == (POLICIES[lane] if lane else None)
        assert tools[name]['action_type'].startswith('test_msgs/action/')


def test_http_public_bind_without_token_refuses_to_start(config_file):
    port = free_port()
    done = subprocess.run(
        [PYTHON, '-m', 'mcp_gateway', '--config', str(config_file), '--transport', 'http',
         '--host', '127.0.0.2', '--port', str(port)],
        env=gateway_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert 'refusing to serve HTTP on 127.0.0.2' in done.stderr
    assert 'SKILL_LANES_TOKEN' in done.stderr
    assert 'Traceback' not in done.stderr


def test_http_bearer_token(stack, config_file, processes):
    port = free_port()
    token = 'test-token-' + os.urandom(8).hex()
    proc = processes.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'http', '--host', '127.0.0.2', '--port', str(port),
                            env=gateway_env(SKILL_LANES_TOKEN=token), name='token_gateway')
    proc.wait_for_output('mcp_gateway ready on http://127.0.0.2', timeout=60)
    url = f'http://127.0.0.2:{port}/mcp'
    for headers in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': token},
                    {'Authorization': f'Bearer {token}x'}):
        response = post(url, headers)
        assert response.status_code == 401, (headers, response.status_code)
        assert response.headers['www-authenticate'].startswith('Bearer')
    assert post(url, {'Authorization': f'Bearer {token}'}).status_code == 200
    before = lane_counts(stack, 'motion')['goals']

    async def scenario():
        async with http_client(url, {'Authorization': f'Bearer {token}'}) as client:
            return await client.call_tool('navigate', {})
    assert_succeeded(run(scenario), 'navigate')
    assert lane_counts(stack, 'motion')['goals'] == before + 1
    assert token not in proc.output()

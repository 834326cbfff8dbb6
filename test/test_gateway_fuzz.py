"""Fuzzing every tool's arguments through a real MCP session (in-memory, JSON-RPC framing).

Arguments inside and outside each tool's advertised `inputSchema`: whatever arrives, the answer
is a tool result (never a JSON-RPC error or an exception); what the schema rejects is an
`invalid_arguments` error naming a field; what it accepts is never `invalid_arguments`.

Only argument handling matters here, so the skills point at a lane manager namespace where
nothing runs and the gateway waits for it only briefly: valid skill arguments end in
`lane_manager_unavailable`.
"""
from __future__ import annotations

import json
import textwrap
from typing import Any, Optional

import anyio
import anyio.from_thread
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_gateway import InProcessGateway, body, write_config

CONFIG = textwrap.dedent("""
    lanes:
      motion:       {policy: queue}
      manipulation: {policy: reject, retry_after_ms: 300}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwfuzz/navigate}
      grasp:    {lane: manipulation, action_type: test_msgs/action/Fibonacci,
                 driver: /gwfuzz/grasp}
      inspect:  {action_type: test_msgs/action/NestedMessage, driver: /gwfuzz/inspect}
    lane_manager: {namespace: /gw_fuzz_nobody_home}
    gateway: {lane_manager_wait_s: 0.05, refusal_wait_s: 0.1}
""")
EXAMPLES = 60
# What a valid call may answer with no lane manager (never invalid_arguments).
VALID_ERRORS = {'lane_manager_unavailable', 'unknown_goal'}

JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=12)
                | st.sampled_from(['NaN', 'Infinity', '-Infinity', '', 'motion', 'navigate']))
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=12)


def from_schema(schema: dict, root: Optional[dict] = None) -> st.SearchStrategy:
    """Values valid for the subset of JSON Schema the gateway's tools use."""
    root = schema if root is None else root
    if '$ref' in schema:  # '#/$defs/<name>': repeated message types are written once
        return from_schema(root['$defs'][schema['$ref'].rsplit('/', 1)[1]], root)
    if 'const' in schema:
        return st.just(schema['const'])
    if 'enum' in schema:
        return st.sampled_from(schema['enum'])
    if 'anyOf' in schema:
        return st.one_of([from_schema(s, root) for s in schema['anyOf']])
    kind = schema.get('type')
    if kind == 'boolean':
        return st.booleans()
    if kind == 'integer':
        low, high = schema.get('minimum'), schema.get('maximum')
        return st.one_of(st.integers(low, high),
                         st.sampled_from([v for v in (low, high) if v is not None] or [0]))
    if kind == 'number':
        low, high = schema.get('minimum'), schema.get('maximum')
        return st.one_of(st.floats(low, high, allow_nan=False, allow_infinity=False),
                         st.sampled_from([v for v in (low, high) if v is not None] or [0.0]))
    if kind == 'string':
        return st.text(st.characters(blacklist_characters='\x00',
                                     blacklist_categories=('Cs',)),
                       max_size=min(schema.get('maxLength', 16), 16))
    if kind == 'array':
        return st.lists(from_schema(schema['items'], root), min_size=schema.get('minItems', 0),
                        max_size=min(schema.get('maxItems', 4), 4))
    if kind == 'object':
        properties = schema.get('properties', {})
        required = set(schema.get('required', ()))
        if not properties:
            return st.just({})
        return st.fixed_dictionaries(
            {k: from_schema(v, root) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, root) for k, v in properties.items()
                      if k not in required})
    return ANY_JSON


@st.composite
def mutated(draw, schema: dict) -> dict:
    """A valid value with one part replaced by any JSON, or an unknown key added."""
    value = draw(from_schema(schema))
    if not isinstance(value, dict):
        return value

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for key, item in node.items():
                yield from paths(item, prefix + (key,))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                yield from paths(item, prefix + (index,))

    where = draw(st.sampled_from(list(paths(value))[1:] or [()]))
    if not where or draw(st.booleans()):
        target = value
        for part in where:
            target = target[part]
        if isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=8))] = draw(ANY_JSON)
            return value
    if where:
        parent = value
        for part in where[:-1]:
            parent = parent[part]
        parent[where[-1]] = draw(ANY_JSON)
    return value


def arguments_for(schema: dict) -> st.SearchStrategy:
    return st.one_of(from_schema(schema), mutated(schema),
                     st.dictionaries(st.text(max_size=10), ANY_JSON, max_size=4))


def roundtrip_json(value: Any) -> Any:
    """What the server receives: JSON text decoded again (ints stay ints, floats floats)."""
    return json.loads(json.dumps(value, allow_nan=False))


@pytest.fixture(scope='module')
def fuzz_gateway(tmp_path_factory, rclpy_context):
    gw = InProcessGateway(write_config(tmp_path_factory.mktemp('gw_fuzz'), CONFIG))
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            with portal.wrap_async_context_manager(gw.client('legacy')) as client:
                tools = {t.name: t for t in portal.call(client.list_tools).tools}
                yield gw, portal, client, tools
    finally:
        gw.close()


def skill_validity(gw: InProcessGateway, tools: dict, name: str, arguments: dict) -> bool:
    """Whether the arguments are valid: the tool's schema, and for skill_start the schema of
    the skill it starts (its `arguments` are that tool's arguments).
    """
    if not jsonschema.Draft202012Validator(tools[name].input_schema).is_valid(arguments):
        return False
    if name == 'skill_start':
        inner = tools[arguments['skill']].input_schema
        return jsonschema.Draft202012Validator(inner).is_valid(arguments.get('arguments', {}))
    return True


TOOLS = ['navigate', 'grasp', 'inspect', 'lanes_status', 'lane_stop', 'skill_start',
         'skill_status', 'skill_cancel']


@pytest.mark.parametrize('name', TOOLS)
def test_fuzzed_arguments_always_get_a_tool_result(fuzz_gateway, name):
    gw, portal, client, tools = fuzz_gateway
    schema = tools[name].input_schema
    if name == 'skill_start':
        # Valid starts need valid inner arguments too: draw them from the skills' schemas.
        candidates = st.one_of(
            arguments_for(schema),
            st.sampled_from(sorted(gw.config.skills)).flatmap(lambda skill: st.fixed_dictionaries(
                {'skill': st.just(skill)},
                optional={'arguments': arguments_for(tools[skill].input_schema)})))
    else:
        candidates = arguments_for(schema)
    seen = {'valid': 0, 'invalid': 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(arguments=candidates)
    def check(arguments):
        arguments = roundtrip_json(arguments)
        valid = skill_validity(gw, tools, name, arguments)
        result = portal.call(lambda: client.call_tool(name, arguments))
        answer = body(result)
        if valid:
            seen['valid'] += 1
            if result.is_error:
                assert answer['error'] in VALID_ERRORS, (arguments, answer)
        else:
            seen['invalid'] += 1
            assert result.is_error, (arguments, answer)
            assert answer['error'] == 'invalid_arguments', (arguments, answer)
            assert isinstance(answer['data']['field'], str), answer
            assert 'Traceback' not in result.content[0].text

    check()
    # Both sides of the schema were exercised (tools without arguments have few valid ones).
    assert seen['invalid'] >= 5, seen
    assert seen['valid'] >= 1, seen


def test_fuzz_helpers_generate_schema_valid_values(fuzz_gateway):
    """The generator itself is right: what from_schema draws, the schema accepts."""
    _, _, _, tools = fuzz_gateway
    for name in ('inspect', 'navigate', 'lane_stop', 'skill_status'):
        schema = tools[name].input_schema
        validator = jsonschema.Draft202012Validator(schema)

        @settings(max_examples=20, deadline=None, database=None)
        @given(value=from_schema(schema))
        def check(value):
            value = roundtrip_json(value)
            assert validator.is_valid(value), (value, list(validator.iter_errors(value)))
        check()

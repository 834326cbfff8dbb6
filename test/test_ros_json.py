"""Tests of mcp_gateway.ros_json on test_msgs, which has every kind of ROS field.

Layers: exact schema facts (bounds, lengths, defaults) written out by hand; valid values
generated from the ROS types (independently of the module) that must convert, round-trip
and survive serialization; and fuzzing (boundary values in every field, arbitrary JSON, one
bad value deep inside a valid one), where the module and `jsonschema` must agree on what is
valid and every rejection is an ArgumentError naming the field. The only disagreements
allowed are what JSON Schema cannot express: raw NaN/Infinity floats and lone surrogates,
which the module always rejects.
"""
from __future__ import annotations

import array
import functools
import importlib
import json
import math
import re
from typing import Any

import builtin_interfaces.msg
import jsonschema
import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from rosidl_parser import definition as idl

import test_msgs.action as actions
import test_msgs.msg as msgs
from mcp_gateway import ros_json, ros_schema
from mcp_gateway.ros_json import ArgumentError, Limits, to_json

# Most tests use the widest limits (non-finite floats allowed, no array bound) so that every
# value `to_json` produces converts back; the skill limits have tests of their own.
ALL = Limits(allow_non_finite=True)


def to_message(msg_class: Any, value: Any, path: str = '', limits: Limits = ALL) -> Any:
    return ros_json.to_message(msg_class, value, path, limits)


def message_schema(msg_class: Any, limits: Limits = ALL) -> dict[str, Any]:
    return ros_schema.message_schema(msg_class, limits)


MESSAGE_TYPES = [
    msgs.BasicTypes, msgs.Arrays, msgs.BoundedSequences, msgs.UnboundedSequences,
    msgs.BoundedPlainSequences, msgs.MultiNested, msgs.Nested, msgs.Strings, msgs.WStrings,
    msgs.Builtins, msgs.Defaults, msgs.Constants, msgs.Empty,
    actions.Fibonacci.Goal, actions.Fibonacci.Result, actions.Fibonacci.Feedback,
    actions.NestedMessage.Goal, actions.NestedMessage.Result, actions.NestedMessage.Feedback,
    builtin_interfaces.msg.Time, builtin_interfaces.msg.Duration,
]
# MultiNested values have thousands of leaves: generating many of them is slow.
SMALL_TYPES = [t for t in MESSAGE_TYPES if t is not msgs.MultiNested]

FLT_MAX = 3.4028234663852886e+38
DBL_MAX = 1.7976931348623157e+308
BASIC_INTEGER_BOUNDS = {  # BasicTypes field -> (minimum, maximum), written out by hand
    'byte_value': (0, 255),
    'char_value': (0, 255),
    'int8_value': (-128, 127),
    'uint8_value': (0, 255),
    'int16_value': (-32768, 32767),
    'uint16_value': (0, 65535),
    'int32_value': (-2147483648, 2147483647),
    'uint32_value': (0, 4294967295),
    'int64_value': (-9223372036854775808, 9223372036854775807),
    'uint64_value': (0, 18446744073709551615),
}
Validator = jsonschema.Draft202012Validator


def type_id(msg_class: Any) -> str:
    return msg_class.__name__


@functools.cache
def validator_of(msg_class: Any) -> jsonschema.protocols.Validator:
    """One validator per message type: building one per example is slow."""
    return Validator(message_schema(msg_class))


def walk_schemas(schema: dict[str, Any]):
    """Every sub-schema of a schema (properties, items, anyOf branches)."""
    yield schema
    for child in schema.get('properties', {}).values():
        yield from walk_schemas(child)
    if 'items' in schema:
        yield from walk_schemas(schema['items'])
    for branch in schema.get('anyOf', []):
        yield from walk_schemas(branch)


# ---------------------------------------------------------------------------------------
# schema derivation


@pytest.mark.parametrize('field', sorted(BASIC_INTEGER_BOUNDS))
def test_integer_fields_have_the_exact_bounds_of_their_width(field):
    low, high = BASIC_INTEGER_BOUNDS[field]
    prop = message_schema(msgs.BasicTypes)['properties'][field]
    assert (prop['type'], prop['minimum'], prop['maximum']) == ('integer', low, high)
    assert to_message(msgs.BasicTypes, {field: high}) is not None
    assert to_message(msgs.BasicTypes, {field: low}) is not None
    for outside in (low - 1, high + 1):
        with pytest.raises(ArgumentError) as error:
            to_message(msgs.BasicTypes, {field: outside})
        assert error.value.field == field
        assert f'[{low}, {high}]' in error.value.problem


@pytest.mark.parametrize('field,limit', [('float32_value', FLT_MAX), ('float64_value', DBL_MAX)])
def test_floats_are_numbers_or_non_finite_strings_where_allowed(field, limit):
    prop = message_schema(msgs.BasicTypes)['properties'][field]
    number, names = prop['anyOf']
    bounds = {'minimum': -limit, 'maximum': limit} if limit == FLT_MAX else {}
    assert number == {'type': 'number', **bounds}
    assert names == {'enum': ['NaN', 'Infinity', '-Infinity']}
    finite = message_schema(msgs.BasicTypes, Limits())['properties'][field]
    assert {k: v for k, v in finite.items() if k != 'description'} == number
    for text in ('NaN', 'Infinity', '-Infinity'):
        with pytest.raises(ArgumentError, match='does not accept NaN') as error:
            to_message(msgs.BasicTypes, {field: text}, limits=Limits())
        assert error.value.field == field
    assert to_json(to_message(msgs.BasicTypes, {field: limit}))[field] == limit
    with pytest.raises(ArgumentError, match=field):
        to_message(msgs.BasicTypes, {field: math.nextafter(limit, math.inf)})


def test_float32_limit_is_flt_max_and_round_trips_over_the_wire():
    """The real FLT_MAX (what a C++ node can send) is accepted; rosidl's own check is not."""
    assert FLT_MAX == float(numpy.float32(FLT_MAX)) == float(numpy.finfo(numpy.float32).max)
    message = to_message(msgs.Arrays, {'float32_values': [FLT_MAX, -FLT_MAX, 0.0]})
    wire = deserialize_message(serialize_message(message), msgs.Arrays)
    assert to_json(wire)['float32_values'] == [FLT_MAX, -FLT_MAX, 0.0]


def test_boolean_and_unbounded_string_kinds():
    props = message_schema(msgs.BasicTypes)['properties']
    assert props['bool_value']['type'] == 'boolean'
    strings = message_schema(msgs.Strings)['properties']
    assert strings['string_value']['type'] == 'string'
    assert 'maxLength' not in strings['string_value']


def test_bounded_strings_have_max_length_and_strings_exclude_nul():
    props = message_schema(msgs.Strings)['properties']
    for name, prop in props.items():
        assert prop['type'] == 'string'
        assert prop.get('maxLength') == (22 if name.startswith('bounded') else None)
        assert not Validator(prop).is_valid('a\x00b')
    assert Validator(props['bounded_string_value']).is_valid('x' * 22)
    assert not Validator(props['bounded_string_value']).is_valid('x' * 23)
    with pytest.raises(ArgumentError, match='bounded_string_value: longer than 22'):
        to_message(msgs.Strings, {'bounded_string_value': 'x' * 23})
    with pytest.raises(ArgumentError, match='string_value: must not contain NUL'):
        to_message(msgs.Strings, {'string_value': 'a\x00b'})


def test_wstrings_allow_nul_and_survive_the_wire():
    props = message_schema(msgs.WStrings)['properties']
    assert props['wstring_value']['type'] == 'string'
    assert 'pattern' not in props['wstring_value']
    assert props['array_of_wstrings']['minItems'] == props['array_of_wstrings']['maxItems'] == 3
    assert props['bounded_sequence_of_wstrings']['maxItems'] == 3
    assert props['unbounded_sequence_of_wstrings']['items'] == {'type': 'string'}
    value = {'wstring_value': 'a\x00b\U0001F600', 'unbounded_sequence_of_wstrings': ['ü', '']}
    wire = deserialize_message(serialize_message(to_message(msgs.WStrings, value)),
                               msgs.WStrings)
    assert to_json(wire)['wstring_value'] == value['wstring_value']


@pytest.mark.parametrize('text', ['\ud800', 'a\udfffb'])
@pytest.mark.parametrize('msg_class,field', [(msgs.Strings, 'string_value'),
                                             (msgs.WStrings, 'wstring_value')])
def test_lone_surrogates_are_rejected(msg_class, field, text):
    with pytest.raises(ArgumentError, match='lone surrogate') as error:
        to_message(msg_class, {field: text})
    assert error.value.field == field


@pytest.mark.parametrize('msg_class,min_items', [
    (msgs.Arrays, 3), (msgs.BoundedSequences, None), (msgs.UnboundedSequences, None)])
def test_array_lengths(msg_class, min_items):
    max_items = None if msg_class is msgs.UnboundedSequences else 3
    for name, prop in message_schema(msg_class)['properties'].items():
        if name == 'alignment_check':
            assert prop['type'] == 'integer'
            continue
        assert prop['type'] == 'array'
        assert (prop.get('minItems'), prop.get('maxItems')) == (min_items, max_items)


def test_array_length_errors_name_the_field():
    with pytest.raises(ArgumentError, match=r'^int32_values: expected exactly 3 items, got 2$'):
        to_message(msgs.Arrays, {'int32_values': [1, 2]})
    with pytest.raises(ArgumentError, match=r'^int32_values: expected at most 3 items, got 4$'):
        to_message(msgs.BoundedSequences, {'int32_values': [1, 2, 3, 4]})
    big = to_message(msgs.UnboundedSequences, {'int32_values': list(range(1000))})
    assert list(big.int32_values) == list(range(1000))


@pytest.mark.parametrize('field', ['byte_values', 'uint8_values', 'char_values'])
@pytest.mark.parametrize('msg_class', [msgs.Arrays, msgs.BoundedSequences,
                                       msgs.UnboundedSequences])
def test_byte_arrays_are_lists_of_integers_0_to_255(msg_class, field):
    items = message_schema(msg_class)['properties'][field]['items']
    assert (items['type'], items['minimum'], items['maximum']) == ('integer', 0, 255)
    message = to_message(msg_class, {field: [0, 128, 255]})
    wire = deserialize_message(serialize_message(message), msg_class)
    assert to_json(wire)[field] == [0, 128, 255]


def test_values_are_stored_as_the_generated_classes_store_them():
    """The C conversion expects numpy arrays, array.array and one-byte bytes."""
    arrays = to_message(msgs.Arrays, {'int16_values': [1, 2, 3], 'byte_values': [1, 2, 3],
                                      'float32_values': [1, 2, 3.5]})
    assert arrays.int16_values.dtype == numpy.int16
    assert arrays.float32_values.dtype == numpy.float32
    assert arrays.byte_values == [b'\x01', b'\x02', b'\x03']
    sequences = to_message(msgs.UnboundedSequences, {'uint64_values': [2 ** 64 - 1]})
    assert isinstance(sequences.uint64_values, array.array)
    assert sequences.uint64_values.typecode == 'Q'
    assert to_message(msgs.BasicTypes, {'byte_value': 65}).byte_value == b'A'


def test_nested_messages_are_inlined_objects():
    nested = message_schema(msgs.Nested)['properties']['basic_types_value']
    basic = message_schema(msgs.BasicTypes)
    assert nested['type'] == 'object'
    assert nested['properties'] == basic['properties']
    multi = message_schema(msgs.MultiNested)['properties']
    items = multi['unbounded_sequence_of_arrays']['items']
    assert items['properties']['basic_types_values']['items']['properties'] == \
        basic['properties']
    assert '$ref' not in json.dumps(multi)


@pytest.mark.parametrize('field,kind', [('time_value', 'Time'), ('duration_value', 'Duration')])
def test_time_and_duration_are_sec_nanosec_objects(field, kind):
    prop = message_schema(msgs.Builtins)['properties'][field]
    assert prop['type'] == 'object'
    assert prop['description'].startswith(f'builtin_interfaces/msg/{kind}: ')
    assert prop['additionalProperties'] is False
    sec, nanosec = prop['properties']['sec'], prop['properties']['nanosec']
    assert (sec['minimum'], sec['maximum']) == (-2 ** 31, 2 ** 31 - 1)
    assert (nanosec['minimum'], nanosec['maximum']) == (0, 999_999_999)
    message = to_message(msgs.Builtins, {field: {'sec': -5, 'nanosec': 999_999_999}})
    assert (getattr(message, field).sec, getattr(message, field).nanosec) == (-5, 999_999_999)
    with pytest.raises(ArgumentError, match='must be below 1e9') as error:
        to_message(msgs.Builtins, {field: {'sec': 0, 'nanosec': 1_000_000_000}}, 'goal')
    assert error.value.field == f'goal.{field}.nanosec'


def test_declared_defaults_appear_in_the_schema():
    props = message_schema(msgs.Defaults)['properties']
    assert {name: prop['default'] for name, prop in props.items()} == {
        'bool_value': True, 'byte_value': 50, 'char_value': 100, 'float32_value': 1.125,
        'float64_value': 1.125, 'int8_value': -50, 'uint8_value': 200, 'int16_value': -1000,
        'uint16_value': 2000, 'int32_value': -30000, 'uint32_value': 60000,
        'int64_value': -40000000, 'uint64_value': 50000000}
    arrays = message_schema(msgs.Arrays)['properties']
    assert arrays['int64_values_default']['default'] == [0, 2 ** 63 - 1, -2 ** 63]
    assert arrays['byte_values_default']['default'] == [0, 1, 255]
    assert arrays['string_values_default']['default'] == ['', 'max value', 'min value']
    assert 'default' not in arrays['int32_values']  # zero/empty defaults go unsaid
    strings = message_schema(msgs.Strings)['properties']
    assert strings['bounded_string_value_default1']['default'] == 'Hello world!'


@pytest.mark.parametrize('msg_class', MESSAGE_TYPES, ids=type_id)
def test_schema_is_valid_and_every_stated_default_is_the_real_one(msg_class):
    schema = message_schema(msg_class)
    Validator.check_schema(schema)
    for sub in walk_schemas(schema):
        if sub.get('type') == 'object':
            assert sub['additionalProperties'] is False
            assert 'required' not in sub  # every ROS field has a default
            for prop in sub['properties'].values():
                assert prop['description']
                if 'default' in prop:
                    assert Validator(prop).is_valid(prop['default'])
                    assert not ros_schema.is_zero(prop['default'])
    real = to_json(msg_class())
    for name, prop in schema['properties'].items():
        if 'default' in prop:
            assert prop['default'] == real[name]
        elif prop.get('type') != 'object':
            assert ros_schema.is_zero(real[name]), name
    assert to_message(msg_class, {}) == msg_class()
    json.dumps(schema, allow_nan=False)


def test_action_message_schemas_name_their_type_and_use_the_interface_comments():
    goal = message_schema(actions.Fibonacci.Goal)
    assert goal['properties']['order']['maximum'] == 2 ** 31 - 1
    assert goal['properties']['order']['description'].startswith('int32')
    result = message_schema(actions.Fibonacci.Result)
    assert result['properties']['sequence']['items']['type'] == 'integer'
    feedback = message_schema(actions.Fibonacci.Feedback)
    assert feedback['description'] == 'test_msgs/action/Fibonacci_Feedback'
    duration = message_schema(builtin_interfaces.msg.Duration)['properties']['nanosec']
    assert 'nanoseconds component' in duration['description'].lower()  # from Duration.msg


# ---------------------------------------------------------------------------------------
# conversion details


def test_error_paths_are_dotted_with_indices():
    value = {'unbounded_sequence_of_arrays': [
        to_json(msgs.Arrays()),
        {'basic_types_values': [{}, {}, {'int8_value': 128}]}]}
    with pytest.raises(ArgumentError) as error:
        to_message(msgs.MultiNested, value, 'goal')
    assert error.value.field == \
        'goal.unbounded_sequence_of_arrays[1].basic_types_values[2].int8_value'
    assert str(error.value) == f'{error.value.field}: {error.value.problem}'
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize('msg_class,value,field,problem', [
    (msgs.BasicTypes, [], '', 'expected an object, got array'),
    (msgs.BasicTypes, {'nope': 1}, 'nope', 'unknown field; fields are: bool_value, '),
    (msgs.Empty, {'x': 1}, 'x', 'unknown field: this message has no fields'),
    (msgs.BasicTypes, {'bool_value': 1}, 'bool_value', 'expected true or false, got integer'),
    (msgs.BasicTypes, {'int8_value': True}, 'int8_value', 'expected an integer (int8), got bo'),
    (msgs.BasicTypes, {'int8_value': 1.5}, 'int8_value', 'expected an integer (int8), got nu'),
    (msgs.BasicTypes, {'uint64_value': 10 ** 5000}, 'uint64_value', 'out of range'),
    (msgs.BasicTypes, {'float64_value': 10 ** 5000}, 'float64_value', 'out of range'),
    (msgs.BasicTypes, {'float64_value': '1.0'}, 'float64_value', 'expected a number'),
    (msgs.BasicTypes, {'float64_value': float('nan')}, 'float64_value', 'JSON has no NaN'),
    (msgs.BasicTypes, {'float32_value': float('-inf')}, 'float32_value', 'JSON has no NaN'),
    (msgs.Nested, {'basic_types_value': None}, 'basic_types_value', 'expected an object, got n'),
    (msgs.Arrays, {'string_values': 'abc'}, 'string_values', 'expected an array, got string'),
    (msgs.Strings, {'string_value': 5}, 'string_value', 'expected a string, got integer'),
])
def test_rejections_say_where_and_why(msg_class, value, field, problem):
    with pytest.raises(ArgumentError) as error:
        to_message(msg_class, value)
    assert error.value.field == field
    assert error.value.problem.startswith(problem)


def test_integral_numbers_are_integers_and_integers_are_numbers():
    message = to_message(msgs.BasicTypes, {'int64_value': 3.0, 'float64_value': 2,
                                           'uint64_value': 2 ** 64 - 1})
    assert to_json(message) == {**to_json(msgs.BasicTypes()), 'int64_value': 3,
                                'float64_value': 2.0, 'uint64_value': 2 ** 64 - 1}
    assert type(message.int64_value) is int and type(message.float64_value) is float


def test_non_finite_floats_are_strings_in_json():
    value = {'float32_values': ['NaN', 'Infinity', '-Infinity'], 'float64_values': [1, 2, 3]}
    message = to_message(msgs.Arrays, value)
    assert math.isnan(message.float32_values[0])
    produced = to_json(message)
    assert produced['float32_values'] == value['float32_values']
    assert json.loads(json.dumps(produced, allow_nan=False)) == produced


def test_omitted_fields_keep_their_defaults():
    message = to_message(msgs.Defaults, {'int8_value': 7})
    assert to_json(message) == {**to_json(msgs.Defaults()), 'int8_value': 7}


# ---------------------------------------------------------------------------------------
# generated valid values: convert, round-trip, survive the wire

FLOAT_WIDTHS = {'float': 32, 'double': 64}
GOOD_TEXT = st.characters(exclude_categories=['Cs'], exclude_characters=['\x00'])


def nested_class(slot: idl.NamespacedType) -> Any:
    return getattr(importlib.import_module('.'.join(slot.namespaces)), slot.name)


def non_finite_as_text(number: float) -> float | str:
    if math.isnan(number):
        return 'NaN'
    return number if math.isfinite(number) else ('Infinity' if number > 0 else '-Infinity')


def valid_json(slot: idl.AbstractType) -> st.SearchStrategy:
    """Values a field of this ROS type must accept, derived from the type, not the schema."""
    if isinstance(slot, idl.BasicType):
        return valid_basic_json(slot.typename)
    if isinstance(slot, idl.AbstractGenericString):
        limit = slot.maximum_size if slot.has_maximum_size() else 8
        characters = GOOD_TEXT if isinstance(slot, idl.AbstractString) \
            else st.characters(exclude_categories=['Cs'])
        return st.text(characters, max_size=limit)
    if isinstance(slot, idl.NamespacedType):
        return valid_message_json(nested_class(slot))
    if isinstance(slot, idl.Array):
        return st.lists(valid_json(slot.value_type), min_size=slot.size, max_size=slot.size)
    if isinstance(slot, idl.BoundedSequence):
        return st.lists(valid_json(slot.value_type), max_size=slot.maximum_size)
    if isinstance(slot, idl.UnboundedSequence):
        return st.lists(valid_json(slot.value_type), max_size=4)
    raise AssertionError(f'no strategy for {slot!r}')


def valid_basic_json(typename: str) -> st.SearchStrategy:
    if typename == 'boolean':
        return st.booleans()
    if typename in FLOAT_WIDTHS:
        exact = st.floats(width=FLOAT_WIDTHS[typename]).map(non_finite_as_text)
        return exact | st.integers(-2 ** 24, 2 ** 24)
    bits = 8 if typename == 'octet' else int(typename.removeprefix('u').removeprefix('int'))
    low, high = (0, 2 ** bits - 1) if typename.startswith(('u', 'o')) \
        else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    integers = st.integers(low, high)
    return integers | integers.filter(lambda n: abs(n) <= 2 ** 53).map(float)


def valid_message_json(msg_class: Any) -> st.SearchStrategy:
    fields = zip(msg_class.get_fields_and_field_types(), msg_class.SLOT_TYPES)
    optional = {name: valid_json(slot) for name, slot in fields}
    if msg_class in (builtin_interfaces.msg.Time, builtin_interfaces.msg.Duration):
        optional['nanosec'] = st.integers(0, 999_999_999)  # normalized: below 1e9
    return st.fixed_dictionaries({}, optional=optional)


def assert_matches(produced: Any, given_value: Any, where: str = '') -> None:
    """`produced` (from to_json) holds `given_value`, where numbers compare by value."""
    if isinstance(given_value, dict):
        for key, item in given_value.items():
            assert_matches(produced[key], item, f'{where}.{key}')
    elif isinstance(given_value, list):
        assert len(produced) == len(given_value), where
        for index, item in enumerate(given_value):
            assert_matches(produced[index], item, f'{where}[{index}]')
    else:
        assert produced == given_value, where
        assert isinstance(produced, bool) == isinstance(given_value, bool), where


@pytest.mark.parametrize('msg_class', SMALL_TYPES, ids=type_id)
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_valid_values_convert_round_trip_and_survive_the_wire(msg_class, data):
    value = data.draw(valid_message_json(msg_class))
    assert validator_of(msg_class).is_valid(value)
    message = to_message(msg_class, value)
    produced = to_json(message)
    assert_matches(produced, value)
    assert validator_of(msg_class).is_valid(produced)
    assert json.loads(json.dumps(produced, allow_nan=False)) == produced
    assert to_json(to_message(msg_class, produced)) == produced
    wire = deserialize_message(serialize_message(message), msg_class)
    assert to_json(wire) == produced


# ---------------------------------------------------------------------------------------
# fuzzing: the module and jsonschema agree; every rejection is an ArgumentError

FIELD_NAMES = sorted({name for t in MESSAGE_TYPES for name in t.get_fields_and_field_types()})
ANY_TEXT = st.text(st.characters() | st.sampled_from(['\x00', '\ud800', '\udc00', 'é', '😀']),
                   max_size=6)
# Values just inside or outside some field type's rules, so fuzzing hits every boundary.
NEAR_MISSES = [
    None, True, False, 0, -0.0, 3.0, 1.5, -1, 127, 128, -128, -129, 255, 255.0, 256, 65535,
    65536, 2 ** 31 - 1, 2 ** 31, -2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
    -2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64, 10 ** 400, FLT_MAX, -FLT_MAX,
    math.nextafter(FLT_MAX, math.inf), math.nextafter(-FLT_MAX, -math.inf), DBL_MAX, -DBL_MAX,
    math.inf, math.nan, 'NaN', 'nan', 'Infinity', 'inf', '-Infinity', '1', '', 'a\x00',
    '\ud800', 'x' * 22, 'x' * 23, [], {}, [0, 0, 0], [0, 0, 0, 0], {'sec': 1, 'nanosec': 2}]
JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(-2 ** 1100, 2 ** 1100)
               | st.floats() | st.sampled_from(NEAR_MISSES) | ANY_TEXT)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | ANY_TEXT, children, max_size=4),
    max_leaves=12)


def has_non_json(value: Any) -> bool:
    """NaN/Infinity floats or lone surrogates: not JSON, and beyond what a schema can say;
    integers beyond a double's range (a double's schema is a plain `number`).
    """
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > DBL_MAX
    if isinstance(value, str):
        return any('\ud800' <= c <= '\udfff' for c in value)
    if isinstance(value, dict):
        return any(has_non_json(k) or has_non_json(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_non_json(item) for item in value)
    return False


def check_against_schema(msg_class: Any, value: Any, path: str = 'goal') -> ArgumentError | None:
    """Convert; assert the outcome matches jsonschema's verdict. Return the error, if any."""
    try:
        message = to_message(msg_class, value, path)
    except ArgumentError as error:
        assert error.field.startswith(path) and error.problem
        assert not validator_of(msg_class).is_valid(value) or has_non_json(value)
        return error
    assert not has_non_json(value)
    assert validator_of(msg_class).is_valid(value)
    assert to_json(to_message(msg_class, to_json(message))) == to_json(message)
    return None


def message_json(msg_class: Any) -> st.SearchStrategy:
    names = list(msg_class.get_fields_and_field_types()) or ['x']
    return st.dictionaries(st.sampled_from(names) | ANY_TEXT, ANY_JSON, max_size=5)


def near_miss_values(msg_class: Any):
    """Each near miss in each field, and as every item of each array field."""
    for name, slot in zip(msg_class.get_fields_and_field_types(), msg_class.SLOT_TYPES):
        for near_miss in NEAR_MISSES:
            yield {name: near_miss}
            if isinstance(slot, idl.AbstractNestedType):
                yield {name: [near_miss] * (slot.size if isinstance(slot, idl.Array) else 1)}


@pytest.mark.parametrize('msg_class', MESSAGE_TYPES, ids=type_id)
def test_near_misses_in_every_field_convert_iff_schema_valid(msg_class):
    for value in near_miss_values(msg_class):
        check_against_schema(msg_class, value)


@pytest.mark.parametrize('msg_class', MESSAGE_TYPES, ids=type_id)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_arbitrary_json_converts_iff_schema_valid(msg_class, data):
    value = data.draw(ANY_JSON | message_json(msg_class))
    check_against_schema(msg_class, value)


def value_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys and indices) to every value inside a JSON value, including itself."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += value_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += value_paths(item, prefix + (index,))
    return paths


def replaced(value: Any, path: tuple, new: Any) -> Any:
    """A copy of `value` with the value at `path` replaced by `new`."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def dotted(prefix: str, path: tuple) -> str:
    return prefix + ''.join(f'[{step}]' if isinstance(step, int) else f'.{step}'
                            for step in path)


@pytest.mark.parametrize('msg_class', MESSAGE_TYPES, ids=type_id)
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_one_bad_value_deep_inside_is_found_at_its_path(msg_class, data):
    base = to_json(msg_class()) if msg_class is msgs.MultiNested \
        else data.draw(valid_message_json(msg_class))
    path = data.draw(st.sampled_from(value_paths(base)))
    bad = data.draw(st.sampled_from(NEAR_MISSES) | ANY_JSON)
    error = check_against_schema(msg_class, replaced(base, path, bad))
    if error is not None:
        where = dotted('goal', path)
        assert error.field == where or error.field.startswith((where + '.', where + '['))


# ---------------------------------------------------------------------------------------
# compaction: the published schema ($defs for repeated types) says what the inlined one says


@functools.cache
def compact_validator_of(msg_class: Any) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(ros_schema.skill_schema(msg_class, ALL))


@pytest.mark.parametrize('msg_class', MESSAGE_TYPES, ids=type_id)
def test_compact_schema_refers_only_to_its_own_defs(msg_class):
    schema = ros_schema.skill_schema(msg_class, ALL)
    jsonschema.Draft7Validator.check_schema(schema)
    refs = set(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(schema)))
    assert refs == set(schema.get('$defs', {}))
    assert 'x-ros' not in json.dumps(schema)  # build-time marks are never published


@pytest.mark.parametrize('msg_class', SMALL_TYPES, ids=type_id)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_compact_and_inlined_schemas_agree(msg_class, data):
    base = data.draw(valid_message_json(msg_class))
    value = base
    if data.draw(st.booleans()):
        value = replaced(base, data.draw(st.sampled_from(value_paths(base))),
                         data.draw(st.sampled_from(NEAR_MISSES) | ANY_JSON))
    if has_non_json(value):
        return
    assert compact_validator_of(msg_class).is_valid(value) == \
        validator_of(msg_class).is_valid(value)

"""ROS 2 messages <-> JSON values, for the MCP gateway (the schemas: `ros_schema.py`).

The gateway turns the tool arguments an agent sends into a Goal message and Result/Feedback
messages back into JSON. No rosidl_runtime_py wheel exists, so this module walks the message
classes itself: every generated class has `get_fields_and_field_types()` and `SLOT_TYPES`
(type objects from `rosidl_parser.definition`), which is all the information needed.

JSON conventions (one representation per ROS value, so `to_json` and `to_message` are inverses):

- message: a JSON object with one property per field. Every ROS field has a default (zero,
  empty, or the value declared in the .msg file) that a missing property takes. Unknown
  properties are rejected. (Which fields a skill requires is the skill's config.)
- integers (int8..uint64; `.msg` `char` is uint8, `byte` is octet): JSON integers with the
  exact bounds of the width. `octet` is an integer 0..255, so byte arrays (octet[]/uint8[])
  are lists of integers. A number with no fraction (`3.0`) is an integer, as in JSON Schema.
  int64/uint64 stay JSON numbers: exact here, but JavaScript clients round beyond 2**53.
- float/double: JSON numbers within the type's finite range (float32: |x| <= FLT_MAX).
  JSON has no NaN or infinities: they are the strings "NaN", "Infinity", "-Infinity" (the
  protobuf JSON mapping's spelling), in results always and in arguments only where the
  skill allows them (`Limits.allow_non_finite`). Raw non-finite floats (Python's json
  accepts `NaN` tokens) are rejected. float32 values are stored as given, rounded on the wire.
- string: a JSON string without NUL (the C side stores it NUL-terminated and would cut it
  there); `string<N>`: at most N characters (as rosidl_generator_py checks it).
  wstring: a JSON string (NUL allowed, sent as UTF-16). Strings with lone surrogates cannot
  be encoded and are rejected.
- T[N]: exactly N items; sequence<T, N>: at most N; sequence<T>: at most `Limits.max_items`.
- builtin_interfaces Time and Duration are objects {sec, nanosec}; nanosec must be < 1e9.
- IDL-only types that no .msg file produces (char, wchar, long double) are not supported:
  TypeError names them.

Conversion checks everything itself instead of relying on `check_fields=True`: those checks
are `assert` statements (gone under `python -O`), fail with AssertionError and no field path,
and bound float32 by 3.402823466e+38, below FLT_MAX, so they would reject FLT_MAX read from
a C++ node. Messages are therefore built with `check_fields=False` from validated values.
"""
from __future__ import annotations

import importlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy
from rosidl_parser import definition as idl

MessageClass = Any  # a generated ROS message class (no common base class exists)
JsonValue = Any  # None, bool, int, float, str, list, or dict with str keys

_INTEGER_BOUNDS: dict[str, tuple[int, int]] = {
    'octet': (0, 255),
    **{f'int{n}': (-2 ** (n - 1), 2 ** (n - 1) - 1) for n in (8, 16, 32, 64)},
    **{f'uint{n}': (0, 2 ** n - 1) for n in (8, 16, 32, 64)},
}
_FLOAT_LIMITS: dict[str, float] = {
    'float': float(numpy.finfo(numpy.float32).max),
    'double': sys.float_info.max,
}
_NON_FINITE: dict[str, float] = {'NaN': math.nan, 'Infinity': math.inf, '-Infinity': -math.inf}


class ArgumentError(ValueError):
    """A JSON value that does not fit the message type, with where and why.

    `field` is the dotted path of the offending value (`goal.points[3].x`; the `path` given to
    `to_message`, possibly '', when the value itself is wrong) so an agent can fix its call.
    """

    def __init__(self, field: str, problem: str, **details: JsonValue) -> None:
        super().__init__(field, problem)
        self.field = field
        self.problem = problem
        self.details = details  # more for the error's `data` (a broken limit: value, limit)

    def __str__(self) -> str:
        return f'{self.field}: {self.problem}' if self.field else self.problem


# ---------------------------------------------------------------------------------------
# JSON -> message


@dataclass(frozen=True)
class Limits:
    """What a skill accepts beyond the message type itself.

    allow_non_finite: accept "NaN"/"Infinity"/"-Infinity" for floats (off by default: a NaN
    joint position or pose is never what an agent meant). max_items: the longest unbounded
    sequence accepted (None: no bound), so one huge argument cannot occupy the gateway.
    """

    allow_non_finite: bool = False
    max_items: Optional[int] = None


DEFAULT_LIMITS = Limits()
# Types whose nanosec must be normalized (< 1e9): a larger value is a different time.
NORMALIZED_TIME_TYPES = frozenset({'builtin_interfaces/msg/Time',
                                   'builtin_interfaces/msg/Duration'})
NANOSEC_MAX = 999_999_999
YIELD_EVERY = 16  # items of a long array of messages converted between GIL hand-overs


def to_message(msg_class: MessageClass, value: JsonValue, path: str = '',
               limits: Limits = DEFAULT_LIMITS) -> Any:
    """Build a `msg_class` message from a JSON object; omitted fields keep their defaults.

    Raises ArgumentError (and nothing else, whatever the JSON) when the value does not fit:
    wrong JSON type, out of range, too long, wrong array length, unknown field, a time whose
    nanosec is not below 1e9. `path` prefixes the field paths in errors (e.g. 'goal').
    """
    if not isinstance(value, dict):
        raise ArgumentError(path, f'expected an object, got {_json_type(value)}')
    slots = {name: slot for name, _, slot in _fields(msg_class)}
    message = msg_class(check_fields=False)
    for name, item in value.items():
        slot = slots.get(name)
        if slot is None:
            raise ArgumentError(_join(path, str(name)), _unknown_field_problem(slots))
        setattr(message, name, _from_json(slot, item, _join(path, name), limits))
    if _message_name(msg_class) in NORMALIZED_TIME_TYPES and message.nanosec > NANOSEC_MAX:
        raise ArgumentError(_join(path, 'nanosec'),
                            f'must be below 1e9 (at most {NANOSEC_MAX}): carry whole seconds '
                            'in sec')
    return message


def _unknown_field_problem(slots: dict[str, idl.AbstractType]) -> str:
    if not slots:
        return 'unknown field: this message has no fields'
    return 'unknown field; fields are: ' + ', '.join(slots)


def _from_json(slot: idl.AbstractType, value: JsonValue, path: str, limits: Limits) -> Any:
    if isinstance(slot, idl.BasicType):
        return _basic_from_json(slot.typename, value, path, limits)
    if isinstance(slot, idl.AbstractGenericString):
        return _string_from_json(slot, value, path)
    if isinstance(slot, idl.NamespacedType):
        return to_message(_message_class(slot), value, path, limits)
    if isinstance(slot, idl.AbstractNestedType):
        return _array_from_json(slot, value, path, limits)
    raise TypeError(f'unsupported ROS type {slot!r}')


def _basic_from_json(typename: str, value: JsonValue, path: str, limits: Limits) -> Any:
    if typename == 'boolean':
        if not isinstance(value, bool):
            raise ArgumentError(path, f'expected true or false, got {_json_type(value)}')
        return value
    if typename == 'octet':
        return bytes([_integer_from_json(typename, value, path)])
    if typename in _INTEGER_BOUNDS:
        return _integer_from_json(typename, value, path)
    if typename in _FLOAT_LIMITS:
        return _float_from_json(typename, value, path, limits.allow_non_finite)
    raise TypeError(f'unsupported ROS basic type {typename!r}')


def _integer_from_json(typename: str, value: JsonValue, path: str) -> int:
    low, high = _INTEGER_BOUNDS[typename]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(path, f'expected an integer ({typename}), got {_json_type(value)}')
    if not low <= value <= high:
        raise ArgumentError(path, f'out of range for {typename}: must be in [{low}, {high}]')
    return value


def _float_from_json(typename: str, value: JsonValue, path: str,
                     allow_non_finite: bool) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        if not allow_non_finite:
            raise ArgumentError(path, f'expected a finite number ({typename}): this skill '
                                      'does not accept NaN or infinities')
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wanted = (f'a number ({typename}) or "NaN", "Infinity", "-Infinity"'
                  if allow_non_finite else f'a number ({typename})')
        raise ArgumentError(path, f'expected {wanted}, got {_json_type(value)}')
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentError(path, 'JSON has no NaN or Infinity' + (
            ': send the string "NaN", "Infinity" or "-Infinity"' if allow_non_finite
            else ' (and this skill accepts finite numbers only)'))
    limit = _FLOAT_LIMITS[typename]
    if not -limit <= value <= limit:  # exact comparison, also for huge integers
        raise ArgumentError(path, f'out of range for {typename}: must be in [{-limit}, {limit}]')
    return float(value)


def _string_from_json(slot: idl.AbstractGenericString, value: JsonValue, path: str) -> str:
    if not isinstance(value, str):
        raise ArgumentError(path, f'expected a string, got {_json_type(value)}')
    if slot.has_maximum_size() and len(value) > slot.maximum_size:
        raise ArgumentError(path, f'longer than {slot.maximum_size} characters')
    if isinstance(slot, idl.AbstractString) and '\x00' in value:
        raise ArgumentError(path, 'must not contain NUL (\\u0000)')
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise ArgumentError(path, 'not valid Unicode (lone surrogate)') from None
    return value


def _array_from_json(slot: idl.AbstractNestedType, value: JsonValue, path: str,
                     limits: Limits) -> Any:
    if not isinstance(value, list):
        raise ArgumentError(path, f'expected an array, got {_json_type(value)}')
    if isinstance(slot, idl.Array) and len(value) != slot.size:
        raise ArgumentError(path, f'expected exactly {slot.size} items, got {len(value)}')
    if isinstance(slot, idl.BoundedSequence) and len(value) > slot.maximum_size:
        raise ArgumentError(path, f'expected at most {slot.maximum_size} items, got {len(value)}')
    if (isinstance(slot, idl.UnboundedSequence) and limits.max_items is not None
            and len(value) > limits.max_items):
        raise ArgumentError(path, f'expected at most {limits.max_items} items (the '
                                  f'configured limit), got {len(value)}')
    # A list is enough: the generated setters store numeric arrays as numpy/array.array.
    if len(value) <= YIELD_EVERY or isinstance(slot.value_type, idl.BasicType):
        return [_from_json(slot.value_type, item, f'{path}[{index}]', limits)
                for index, item in enumerate(value)]
    items = []
    for index, item in enumerate(value):
        if index % YIELD_EVERY == 0:
            time.sleep(0)  # let the event loop's thread have the GIL (we run in a worker)
        items.append(_from_json(slot.value_type, item, f'{path}[{index}]', limits))
    return items


# ---------------------------------------------------------------------------------------
# message -> JSON


def to_json(msg: Any) -> dict[str, JsonValue]:
    """Return the JSON object of a message (plain dict/list/str/int/float/bool values).

    numpy arrays and array.array become lists, octets become integers, non-finite floats
    become "NaN"/"Infinity"/"-Infinity": `json.dumps(..., allow_nan=False)` accepts the
    result and `to_message(type(msg), to_json(msg))` gives the message back.
    """
    return {name: _to_json(slot, getattr(msg, name)) for name, _, slot in _fields(type(msg))}


def _to_json(slot: idl.AbstractType, value: Any) -> JsonValue:
    if isinstance(slot, idl.BasicType):
        return _basic_to_json(slot.typename, value)
    if isinstance(slot, idl.AbstractGenericString):
        return str(value)
    if isinstance(slot, idl.NamespacedType):
        return to_json(value)
    if isinstance(slot, idl.AbstractNestedType):
        return [_to_json(slot.value_type, item) for item in value]
    raise TypeError(f'unsupported ROS type {slot!r}')


def _basic_to_json(typename: str, value: Any) -> JsonValue:
    if typename == 'boolean':
        return bool(value)
    if typename == 'octet':  # bytes of length 1 as generated classes store it
        return value[0] if isinstance(value, (bytes, bytearray)) else int(value)
    if typename in _INTEGER_BOUNDS:
        return int(value)
    if typename in _FLOAT_LIMITS:
        return _float_to_json(float(value))
    raise TypeError(f'unsupported ROS basic type {typename!r}')


def _float_to_json(value: float) -> float | str:
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return 'Infinity' if value > 0 else '-Infinity'
    return value


# ---------------------------------------------------------------------------------------
# helpers


def _fields(msg_class: MessageClass) -> list[tuple[str, str, idl.AbstractType]]:
    """(name, ROS type string, rosidl type object) of every field, in declaration order."""
    return [(name, ros_type, slot) for (name, ros_type), slot
            in zip(msg_class.get_fields_and_field_types().items(), msg_class.SLOT_TYPES)]


def _message_class(slot: idl.NamespacedType) -> MessageClass:
    """The generated class of a nested message type (imported lazily, as rosidl does)."""
    return getattr(importlib.import_module('.'.join(slot.namespaces)), slot.name)


def _message_name(msg_class: MessageClass) -> str:
    """'pkg/msg/Type' from the generated module path ('pkg.msg._type')."""
    package, kind = msg_class.__module__.split('.')[:2]
    return f'{package}/{kind}/{msg_class.__name__}'


def _join(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


def _json_type(value: JsonValue) -> str:
    """The JSON type name of a value, for error messages (never the value: it can be huge)."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, (int, float)):
        return 'integer' if isinstance(value, int) else 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, list):
        return 'array'
    if isinstance(value, dict):
        return 'object'
    return type(value).__name__

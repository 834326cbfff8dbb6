"""A skill's `limits` checked against its action's Goal type (at config load, check_types).

Kept apart from skill_lanes/goal_limits.py, which stays free of ROS imports: this module
reads the generated message classes (`get_fields_and_field_types()`, `SLOT_TYPES`, the
rosidl_parser type objects) to prove each limit path exists and that each limit fits its
field: min/max on numbers, max_items on arrays, one_of on strings, `[]` only after an array.
A limit no goal could pass (min 300 on a uint8, a one_of entry longer than a string<8>) is
an error too: it would refuse every goal.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from rosidl_parser import definition as idl

from skill_lanes.goal_limits import Limit, parse_path

_INTEGER_RANGE: dict[str, tuple[int, int]] = {
    **{f'int{n}': (-2 ** (n - 1), 2 ** (n - 1) - 1) for n in (8, 16, 32, 64)},
    **{f'uint{n}': (0, 2 ** n - 1) for n in (8, 16, 32, 64)},
}
_FLOAT_MAX = {'float': 3.4028234663852886e+38, 'double': 1.7976931348623157e+308}


class LimitTypeError(ValueError):
    """A limit that does not fit the Goal type: `path` (as configured) and `problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f'{path}: {problem}')
        self.path = path
        self.problem = problem


def _fields(msg_class: Any) -> dict[str, Any]:
    return dict(zip(msg_class.get_fields_and_field_types(), msg_class.SLOT_TYPES))


def _message_class(slot: idl.NamespacedType) -> Any:
    return getattr(importlib.import_module('.'.join(slot.namespaces)), slot.name)


def _type_text(slot: Any) -> str:
    if isinstance(slot, idl.BasicType):
        return slot.typename
    if isinstance(slot, idl.NamespacedType):
        return '/'.join((*slot.namespaces, slot.name))
    if isinstance(slot, idl.AbstractGenericString):
        return 'string' if isinstance(slot, idl.AbstractString) else 'wstring'
    if isinstance(slot, idl.AbstractNestedType):
        return f'{_type_text(slot.value_type)}[]'
    return type(slot).__name__


def check_limit_types(goal_class: Any, limits: Mapping[str, Limit]) -> set[str]:
    """Raise LimitTypeError for the first limit that does not fit the Goal type;
    return the limit paths whose field is a float32 (compared as float32: goal_limits.py).
    """
    float32: set[str] = set()
    for path, limit in limits.items():
        try:
            slot = _leaf(goal_class, path)
            _fits(slot, limit)
        except ValueError as exc:
            raise LimitTypeError(path, str(exc)) from None
        if isinstance(slot, idl.BasicType) and slot.typename == 'float':
            float32.add(path)
    return float32


def _leaf(goal_class: Any, path: str) -> Any:
    """The type object of the field (or array element) a limit path names."""
    segments = parse_path(path)
    msg_class: Any = goal_class
    slot: Any = None
    for index, segment in enumerate(segments):
        fields = _fields(msg_class)
        where = '.'.join(f'{s.name}[]' if s.every else s.name for s in segments[:index])
        if segment.name not in fields:
            raise ValueError(f'no field {segment.name!r} in {where or "the goal"}; fields '
                             f'there: {", ".join(fields) or "none"}')
        slot = fields[segment.name]
        if segment.every:
            if not isinstance(slot, idl.AbstractNestedType):
                raise ValueError(f'{segment.name!r} is {_type_text(slot)}, not an array: '
                                 'drop the []')
            slot = slot.value_type
        last = index == len(segments) - 1
        if not last:
            if isinstance(slot, idl.AbstractNestedType):
                raise ValueError(f'{segment.name!r} is an array: write {segment.name}[] to '
                                 'reach its elements')
            if not isinstance(slot, idl.NamespacedType):
                raise ValueError(f'{segment.name!r} is {_type_text(slot)}: it has no fields')
            msg_class = _message_class(slot)
    return slot


def _fits(slot: Any, limit: Limit) -> None:
    kind = _type_text(slot)
    if limit.max_items is not None:
        if not isinstance(slot, idl.AbstractNestedType):
            raise ValueError(f'max_items bounds an array; this field is {kind}')
        if isinstance(slot, idl.Array):
            raise ValueError(f'a fixed-size array of {slot.size} items: max_items has '
                             'nothing to bound')
        return
    if isinstance(slot, idl.AbstractNestedType):
        raise ValueError(f'this field is an array ({kind}): add [] to the path to limit its '
                         'elements, or use max_items')
    if limit.one_of is not None:
        if not isinstance(slot, idl.AbstractGenericString):
            raise ValueError(f'one_of applies to strings; this field is {kind}')
        if slot.has_maximum_size():
            for text in limit.one_of:
                if len(text) > slot.maximum_size:
                    raise ValueError(f'one_of entry {text!r} is longer than this '
                                     f'string<={slot.maximum_size} can carry')
        return
    if not isinstance(slot, idl.BasicType) or not (
            slot.typename in _INTEGER_RANGE or slot.typename in _FLOAT_MAX):
        raise ValueError(f'min/max apply to numbers; this field is {kind}')
    if slot.typename in _INTEGER_RANGE:
        low, high = _INTEGER_RANGE[slot.typename]
    else:
        high = _FLOAT_MAX[slot.typename]
        low = -high
    if limit.min is not None and limit.min > high:
        raise ValueError(f'min {limit.min!r} is above the largest {kind} ({high}): '
                         'nothing could pass')
    if limit.max is not None and limit.max < low:
        raise ValueError(f'max {limit.max!r} is below the smallest {kind} ({low}): '
                         'nothing could pass')
    if (slot.typename in _INTEGER_RANGE and limit.min is not None and limit.max is not None
            and _ceil(limit.min) > _floor(limit.max)):
        raise ValueError(f'no integer lies within min {limit.min!r}, max {limit.max!r}')


def _ceil(value: float) -> int:
    return -int(-value // 1)


def _floor(value: float) -> int:
    return int(value // 1)

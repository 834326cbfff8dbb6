"""Limits on what a goal may ask (`skills.<s>.limits`), checked on a goal before it is taken.

Pure Python (no ROS import): the lane manager checks every goal at acceptance, whoever sent
it, and the gateway checks the same goal message before sending it, with this one module, so
both ends refuse exactly the same goals. A limit is bound to a dotted field path where `[]`
after a name means "every element": `trajectory.points[].velocities[]`, `pose.position.x`,
`joint_names`. What a limit may say:

- `min` / `max`: a number field (or each element of a number array) must be a finite number
  within the bounds (inclusive). NaN and the infinities are never within bounds.
- `max_items`: an array may carry at most this many items.
- `one_of`: a string field (or each element of a string array) must be one of these.

A goal is a generated ROS message (fields read with getattr; arrays are lists, array.array
or numpy arrays) or a JSON-like dict (the configuration's `fixed` values; a missing key is
not checked). `check` returns the first violation with the concrete path
(`trajectory.points[3].velocities[1]`), the value and the limit, or None.

Cost: a check walks only the limited paths. Long number arrays are checked with numpy at
once; a 150k-point trajectory with one limit on `points[].velocities[]` (6 joints) takes
about 0.1 s, measured by bench/bench_goal_limits.py (README "Limits on what a goal may ask").
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import numpy

# A name, optionally followed by [] (every element), dot-separated.
LIMIT_PATH_RE = r'^[A-Za-z][A-Za-z0-9_]*(\[\])?(\.[A-Za-z][A-Za-z0-9_]*(\[\])?)*$'
_FINITE_MAX = sys.float_info.max
_VECTOR_FROM = 32  # number arrays this long or longer are checked with numpy
_SHOWN_CHARS = 80  # a string value is shown this long in a refusal at most
Number = Union[int, float]
# A lane state refusal whose reason starts so: the goal broke its skill's limits (not busy).
REFUSAL_PREFIX = 'limits: '


@dataclass(frozen=True)
class Segment:
    name: str
    every: bool  # the path goes on into every element of this field's array


def parse_path(path: str) -> tuple[Segment, ...]:
    """`a.b[].c` -> (a, b[], c). Raises ValueError for anything else."""
    if not re.match(LIMIT_PATH_RE, path):
        raise ValueError(f'invalid limit path {path!r} (use dotted field names, [] after an '
                         'array to mean every element: points[].velocities[])')
    return tuple(Segment(part.removesuffix('[]'), part.endswith('[]'))
                 for part in path.split('.'))


@dataclass(frozen=True)
class Limit:
    """One field's limit, as configured (see module doc)."""

    min: Optional[Number] = None
    max: Optional[Number] = None
    max_items: Optional[int] = None
    one_of: Optional[tuple[str, ...]] = None

    def describe(self) -> str:
        """The limit as a model or an operator reads it: `min -1, max 2`."""
        parts = []
        if self.min is not None:
            parts.append(f'min {self.min!r}')
        if self.max is not None:
            parts.append(f'max {self.max!r}')
        if self.max_items is not None:
            parts.append(f'max_items {self.max_items}')
        if self.one_of is not None:
            parts.append('one_of [' + ', '.join(repr(s) for s in self.one_of) + ']')
        return ', '.join(parts)


@dataclass(frozen=True)
class Violation:
    """The first value of a goal that breaks a limit."""

    field: str    # concrete path: trajectory.points[3].velocities[1]
    value: Any    # the number or string (for max_items: the number of items)
    limit: str    # the limit broken: 'max 2.0'
    problem: str  # value and limit: '3.2 exceeds max 2.0'
    text: str     # the whole sentence: 'trajectory.points[3].velocities[1] = 3.2 exceeds max 2.0'

    def __str__(self) -> str:
        return self.text

    def as_json(self) -> dict[str, Any]:
        """{field, value, limit} for JSON (lane state, tool errors): NaN and the infinities
        spelled as strings ("NaN", "Infinity", "-Infinity"), a long string cut.
        """
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = 'NaN' if math.isnan(value) else ('Infinity' if value > 0 else '-Infinity')
        elif isinstance(value, str) and len(value) > _SHOWN_CHARS:
            value = value[:_SHOWN_CHARS] + '...'
        return {'field': self.field, 'value': value, 'limit': self.limit}


@dataclass
class _Node:
    """The limits below one field: its own, its fields' and its elements'."""

    limit: Optional[Limit] = None
    low: float = -_FINITE_MAX   # min/max as compared (float32 fields: float32-rounded)
    high: float = _FINITE_MAX
    float32: bool = False
    children: dict[str, '_Node'] = field(default_factory=dict)
    each: Optional['_Node'] = None


class GoalLimits:
    """A skill's compiled limits. `check(goal)` -> the first Violation or None."""

    def __init__(self, limits: Mapping[str, Limit],
                 float32_paths: Iterable[str] = ()) -> None:
        """limits: limit path -> Limit. float32_paths: the limit paths whose field is a
        float32: their bounds and values are compared as float32 (what the wire carries), so a
        bound of 0.1 admits the float32 nearest 0.1 that a client sending 0.1 sends.
        """
        self.limits = dict(limits)
        self.float32_paths = float32 = frozenset(float32_paths)
        self._root = _Node()
        for path, limit in self.limits.items():
            node = self._root
            for segment in parse_path(path):
                node = node.children.setdefault(segment.name, _Node())
                if segment.every:
                    node.each = node.each or _Node()
                    node = node.each
            node.limit = limit
            node.float32 = path in float32
            if limit.min is not None:
                node.low = _as_float32(limit.min) if node.float32 else limit.min
            if limit.max is not None:
                node.high = _as_float32(limit.max) if node.float32 else limit.max

        self._check = _compile(self._root)

    def __bool__(self) -> bool:
        return bool(self.limits)

    def check(self, goal: Any) -> Optional[Violation]:
        """The first violation in `goal` (a message or a JSON-like dict), or None."""
        miss = self._check(goal)
        if miss is None:
            return None
        return miss.make(''.join(reversed(miss.parts)).lstrip('.'))


# ------------------------------------------------------------------------------ walking
# Limits are compiled to nested closures, one per limited field, that walk only the limited
# paths. A path is built only for a violation, on the way out (`_Miss.parts`, innermost
# first): a 150k-point trajectory is checked without 150k path strings.
Maker = Callable[[str], Violation]  # the violation, given its concrete path
Check = Callable[[Any], Optional['_Miss']]


class _Miss:
    __slots__ = ('make', 'parts')

    def __init__(self, make: Maker, part: str = '') -> None:
        self.make = make
        self.parts = [part] if part else []

    def at(self, part: str) -> '_Miss':
        self.parts.append(part)
        return self


def _compile(node: _Node) -> Check:
    steps: list[Check] = []
    if node.limit is not None:
        steps.append(partial(_check_value, node))
    if node.each is not None:
        steps.append(_each_step(node.each))
    if node.children:
        steps.append(_children_step(node.children))
    if len(steps) == 1:
        return steps[0]

    def every_step(value: Any) -> Optional[_Miss]:
        for step in steps:
            miss = step(value)
            if miss is not None:
                return miss
        return None
    return every_step


def _children_step(children: dict[str, _Node]) -> Check:
    compiled = [(name, f'.{name}', _compile(child)) for name, child in children.items()]

    def step(value: Any) -> Optional[_Miss]:
        if value.__class__ is dict:  # JSON: a missing key is not checked
            for name, part, check in compiled:
                if name in value:
                    miss = check(value[name])
                    if miss is not None:
                        return miss.at(part)
            return None
        for name, part, check in compiled:
            miss = check(getattr(value, name))
            if miss is not None:
                return miss.at(part)
        return None
    return step


def _each_step(each: _Node) -> Check:
    limit = each.limit
    if (not each.children and each.each is None and limit is not None
            and limit.one_of is None and limit.max_items is None):
        return partial(_check_numbers, each)
    check = _compile(each)

    def step(values: Any) -> Optional[_Miss]:
        for index, item in enumerate(values):
            miss = check(item)
            if miss is not None:
                return miss.at(f'[{index}]')
        return None
    return step


def _check_value(node: _Node, value: Any) -> Optional[_Miss]:
    limit = node.limit
    assert limit is not None
    if limit.max_items is not None and len(value) > limit.max_items:
        return _Miss(partial(_too_many, len(value), limit.max_items))
    if limit.one_of is not None and value not in limit.one_of:
        return _Miss(partial(_violation, _plain(value), limit.describe(),
                             f'is not one of {list(limit.one_of)}'))
    if limit.min is not None or limit.max is not None:
        return _check_number(node, value)
    return None


def _check_number(node: _Node, value: Any, part: str = '') -> Optional[_Miss]:
    if isinstance(value, bool) or not isinstance(value, (int, float, numpy.number)):
        assert node.limit is not None
        return _Miss(partial(_violation, _plain(value), node.limit.describe(),
                             'is not a number'), part)
    compared = _as_float32(value) if node.float32 else value
    if node.low <= compared <= node.high:
        return None
    return _Miss(_number_violation(node, _plain(value)), part)


def _check_numbers(node: _Node, values: Any) -> Optional[_Miss]:
    """Every element of a number array within node's bounds (the hot path: one array of
    joint velocities per trajectory point).
    """
    low, high = node.low, node.high
    if len(values) >= _VECTOR_FROM and not isinstance(values, list):
        array = numpy.asarray(values)
        if array.dtype.kind in 'iuf':
            if node.float32:
                array = array.astype(numpy.float32)
            ok = (array >= low) & (array <= high)  # NaN: False
            if bool(ok.all()):
                return None
            index = int(numpy.argmin(ok))
            return _Miss(_number_violation(node, _plain(values[index])), f'[{index}]')
    if not node.float32 and not isinstance(values, list):  # array.array: numbers only
        for index, value in enumerate(values):
            if not low <= value <= high:  # NaN: False
                return _check_number(node, value, f'[{index}]')
        return None
    for index, value in enumerate(values):  # JSON lists (any value), float32 fields
        miss = _check_number(node, value, f'[{index}]')
        if miss is not None:
            return miss
    return None


def _number_violation(node: _Node, value: Any) -> Maker:
    limit = node.limit
    assert limit is not None
    if isinstance(value, float) and not math.isfinite(value):
        return partial(_violation, value, limit.describe(),
                       f'is not a finite number within {limit.describe()}')
    if limit.max is not None and not value <= node.high:
        return partial(_violation, value, f'max {limit.max!r}', f'exceeds max {limit.max!r}')
    return partial(_violation, value, f'min {limit.min!r}', f'is below min {limit.min!r}')


def _violation(value: Any, limit: str, verb: str, path: str) -> Violation:
    problem = f'{_shown(value)} {verb}'
    return Violation(path, value, limit, problem, f'{path} = {problem}')


def _too_many(count: int, max_items: int, path: str) -> Violation:
    problem = f'{count} items, more than max_items {max_items}'
    return Violation(path, count, f'max_items {max_items}', problem, f'{path} has {problem}')


# ------------------------------------------------------------------------------ helpers
def _as_float32(value: Number) -> float:
    with numpy.errstate(over='ignore'):
        return float(numpy.float32(value))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it is (for messages and JSON)."""
    return value.item() if isinstance(value, numpy.generic) else value


def _shown(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + '...'
        return repr(text)
    return repr(value)


def limits_from_config(limits: Mapping[str, Any]) -> dict[str, Limit]:
    """Config `limits` entries (objects with min/max/max_items/one_of) as Limits."""
    return {path: Limit(spec.min, spec.max, spec.max_items,
                        tuple(spec.one_of) if spec.one_of is not None else None)
            for path, spec in limits.items()}


NO_LIMITS = GoalLimits({})

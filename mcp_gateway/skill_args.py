"""A skill's tool arguments -> its Goal message, with the skill's config applied.

Pure logic (no node, no event loop): the gateway runs it in a worker thread, so a huge
argument (a 10k-point trajectory) never holds up another lane's call on the event loop.

Checks, in order, each failing with an ArgumentError that names the field:
size (the arguments as JSON, against `max_request_bytes`), fields the skill has fixed or does
not expose, required fields, then `ros_json.to_message` (types, ranges, array lengths,
normalized times, non-finite floats only where allowed). The skill's fixed values are put
in last: a caller can never override them. Last, the goal message is checked against the
skill's `limits` by the lane manager's own checker (skill_lanes/goal_limits.py), so the
gateway refuses exactly the goals the lane manager would.
"""
from __future__ import annotations

import copy
import json
import re
import time
from typing import Any, Mapping, Optional, Sequence

from skill_lanes.goal_limits import NO_LIMITS, GoalLimits
from mcp_gateway.ros_json import ArgumentError, Limits, MessageClass, _json_type, to_message
from mcp_gateway.ros_schema import path_trie, skill_schema

_ENCODER = json.JSONEncoder(separators=(',', ':'), default=str)


class SkillArguments:
    """How one skill turns tool arguments into a goal (and the schema that says so)."""

    def __init__(self, goal_class: MessageClass, limits: Limits,
                 fields: Optional[Sequence[str]] = None,
                 fixed: Optional[Mapping[str, Any]] = None,
                 required: Sequence[str] = (), max_request_bytes: Optional[int] = None,
                 goal_limits: GoalLimits = NO_LIMITS) -> None:
        self.goal_class = goal_class
        self.limits = limits
        self.goal_limits = goal_limits
        self.fixed = dict(fixed or {})
        self.required = list(required)
        self.max_request_bytes = max_request_bytes
        self._exposed = path_trie(fields) if fields is not None else None
        self._fixed_trie = path_trie(self.fixed)
        # Raises ValueError for a path the goal type lacks; also proves the fixed values fit.
        self.schema = skill_schema(goal_class, limits, fields, self.fixed, self.required,
                                   goal_limits.limits)
        if self.fixed:
            to_message(goal_class, _merge({}, self.fixed), '', limits)
        if goal_limits and self._exposed is not None:
            self._check_hidden_defaults()

    def _check_hidden_defaults(self) -> None:
        """A field a call cannot give keeps its default: if that breaks a limit, every call
        would be refused. Raises ValueError naming the limit.
        """
        hidden = {path: limit for path, limit in self.goal_limits.limits.items()
                  if not _exposed(self._exposed, path)}
        goal = to_message(self.goal_class, _merge({}, self.fixed), '', self.limits)
        violation = GoalLimits(hidden, self.goal_limits.float32_paths).check(goal)
        if violation is not None:
            raise ValueError(f'limits: {violation}, the default of a field the tool does not '
                             'expose (fields): every call would be refused')

    def to_goal(self, arguments: Any) -> Any:
        """The Goal message for these arguments; raises ArgumentError naming the field."""
        if not isinstance(arguments, dict):
            raise ArgumentError('', f'arguments must be an object, got {_json_type(arguments)}')
        if self.max_request_bytes is not None:
            _check_size(arguments, self.max_request_bytes)
        if self._fixed_trie:
            _check_not_fixed(arguments, self._fixed_trie, '')
        if self._exposed is not None:
            _check_exposed(arguments, self._exposed, '')
        for path in self.required:
            _check_required(arguments, path.split('.'), '')
        value = _merge(copy.deepcopy(arguments), self.fixed) if self.fixed else arguments
        goal = to_message(self.goal_class, value, '', self.limits)
        violation = self.goal_limits.check(goal) if self.goal_limits else None
        if violation is not None:
            details = violation.as_json()
            raise ArgumentError(violation.field, violation.problem,
                                value=details['value'], limit=details['limit'])
        return goal


def _check_size(arguments: Any, limit: int) -> None:
    """Refuse arguments longer than `limit` bytes as compact JSON, reading no further.

    The pure-Python encoder (iterencode) on purpose: json.dumps is one C call that holds
    the GIL for its whole run (0.2 s for a 10k-point trajectory), stalling the event loop
    even from a worker thread; this one yields the GIL every few milliseconds.
    """
    size = 0
    for count, chunk in enumerate(_ENCODER.iterencode(arguments)):
        size += len(chunk)
        if count % 1024 == 0:
            time.sleep(0)  # hand the GIL to the event loop's thread now and then
        if size > limit:
            raise ArgumentError('', f'arguments are more than {limit} bytes as JSON (the '
                                    f'configured limit of {limit}): send less')


def _exposed(trie: dict[str, Any], field: str) -> bool:
    """Whether a field path (`a.b[3].c` or `a.b[].c`) is one a call may give."""
    node: Optional[dict[str, Any]] = trie
    for part in re.sub(r'\[\d*\]', '', field).split('.'):
        if node is None:
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _join(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


def _items(value: Any, path: str) -> list[tuple[Any, str]]:
    """The objects a path part applies to: the value, or each item of an array."""
    if isinstance(value, list):
        return [(item, f'{path}[{index}]') for index, item in enumerate(value)]
    return [(value, path)]


def _check_exposed(value: Any, trie: dict[str, Any], path: str) -> None:
    for item, where in _items(value, path):
        if not isinstance(item, dict):
            continue  # to_message names the wrong type
        for key, child in item.items():
            if key not in trie:
                raise ArgumentError(_join(where, str(key)),
                                    'unknown field: this skill takes only '
                                    + ', '.join(trie))
            if trie[key] is not None:
                _check_exposed(child, trie[key], _join(where, key))


def _check_not_fixed(value: Any, trie: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        return
    for key, sub in trie.items():
        if key in value:
            if sub is None:
                raise ArgumentError(_join(path, key),
                                    'fixed by the skill configuration: leave it out')
            _check_not_fixed(value[key], sub, _join(path, key))


def _check_required(value: Any, parts: list[str], path: str) -> None:
    for item, where in _items(value, path):
        if not isinstance(item, dict):
            continue
        if parts[0] not in item:
            raise ArgumentError(_join(where, parts[0]), 'required by this skill: give it')
        if len(parts) > 1:
            _check_required(item[parts[0]], parts[1:], _join(where, parts[0]))


def _merge(target: dict[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Set every dotted path of `fixed` in `target` (creating objects on the way)."""
    for path, value in fixed.items():
        node = target
        parts = path.split('.')
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return target

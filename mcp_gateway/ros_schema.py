"""JSON Schemas of ROS messages, shaped for a model to read: small, described, exact.

`message_schema` gives the full schema tree of a message type, every nested message inlined;
`compact_schema` turns such a tree into what a tool publishes: a message type that occurs
more than once is written once under `$defs` (MoveGroup inlined Constraints three times),
and `skill_schema` first applies a skill's config (which fields are exposed, which are fixed
to given values and so hidden, which are required). What conversion accepts is decided by
`ros_json.to_message` with the same `Limits`; the schema says the same thing to the client.

Size choices (a client pays for every byte in its context): floats are plain `number`
(non-finite strings only where the skill allows them), a property carries `default` only
when the interface declares a non-zero default, and descriptions come from the interface
files' comments and constants (see `ros_docs`), with the ROS type in front. The schemas are
draft-07 compatible ($defs + `#/$defs/..` refs, no `$schema`): the TypeScript SDK's Ajv and
Python's jsonschema both read them.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from rosidl_parser import definition as idl

from skill_lanes.goal_limits import Limit, parse_path
from mcp_gateway.ros_docs import interface_docs
from mcp_gateway.ros_json import (_FLOAT_LIMITS, _INTEGER_BOUNDS, _NON_FINITE, DEFAULT_LIMITS,
                                  NANOSEC_MAX, NORMALIZED_TIME_TYPES, Limits, MessageClass,
                                  _fields, _message_class, _message_name, _to_json)

NO_NUL_PATTERN = '^[^\\u0000]*$'
_TYPE_KEY = 'x-ros-type'  # marks a message node while a schema is built; never published
_DOC_KEY = 'x-ros-doc'  # the message type's own description (the field's is `description`)
_MARKERS = (_TYPE_KEY, _DOC_KEY)
_MESSAGE_HINTS: dict[str, str] = {
    'builtin_interfaces/msg/Time':
        'a point in time: sec + nanosec / 1e9 seconds since the clock epoch '
        '(Unix epoch for system time); nanosec < 1e9',
    'builtin_interfaces/msg/Duration':
        'a span of time: sec + nanosec / 1e9 seconds; nanosec < 1e9',
}


def message_schema(msg_class: MessageClass, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The JSON Schema of a message type, every nested message inlined (see module doc)."""
    return _strip_markers(_message_tree(msg_class, limits))


def skill_schema(msg_class: MessageClass, limits: Limits = DEFAULT_LIMITS,
                 fields: Optional[Sequence[str]] = None,
                 fixed: Optional[Mapping[str, Any]] = None,
                 required: Sequence[str] = (),
                 goal_limits: Optional[Mapping[str, Limit]] = None) -> dict[str, Any]:
    """A tool's inputSchema: the message's schema cut to a skill's config, then compacted.

    fields: dotted paths of the exposed fields (None: all); fixed: dotted path -> value,
    hidden from the schema (the gateway fills them in); required: dotted paths a call must
    give; goal_limits: the skill's `limits` (skill_lanes/goal_limits.py), shown where they
    apply as minimum/maximum, maxItems and enum. Raises ValueError naming a path the message
    does not have.
    """
    tree = _message_tree(msg_class, limits)
    for path, limit in (goal_limits or {}).items():
        _apply_limit(tree, path, limit)
    fixed_at = [_parent(tree, path) for path in fixed or {}]  # proves each path exists
    if fields is not None:
        tree = _keep(tree, path_trie(fields), '')
    for parent, name in fixed_at:  # hidden (a no-op where `fields` already left it out)
        parent['properties'].pop(name, None)
    for path in required:  # `a.b` required means `a` is too
        parts = path.split('.')
        for end in range(1, len(parts) + 1):
            parent, name = _parent(tree, '.'.join(parts[:end]))
            parent.setdefault('required', [])
            if name not in parent['required']:
                parent['required'].append(name)
    return compact_schema(tree)


def compact_schema(tree: dict[str, Any]) -> dict[str, Any]:
    """Write every message type that occurs more than once in `tree` once, under `$defs`.

    `tree` is a schema as built here before publishing (message nodes still marked): use
    `skill_schema`, which builds, cuts and compacts; `message_schema` output has no marks.
    """
    counts: dict[str, int] = {}
    _count(tree, counts)
    defs: dict[str, Any] = {}
    names: dict[str, str] = {}
    root = _factor(tree, counts, defs, names, is_root=True)
    if defs:
        root['$defs'] = defs
    return root


# ------------------------------------------------------------------------------ building
def _message_tree(msg_class: MessageClass, limits: Limits) -> dict[str, Any]:
    full_name = _message_name(msg_class)
    docs = interface_docs(full_name)
    defaults = msg_class()
    properties = {}
    for name, ros_type, slot in _fields(msg_class):
        prop = _type_schema(slot, limits)
        comment = docs.fields.get(name)
        if _TYPE_KEY not in prop:
            prop['description'] = f'{ros_type}: {comment}' if comment else ros_type
        elif comment:  # a message field: the field's comment, else the type's own text
            prop[_DOC_KEY] = prop['description']
            prop['description'] = f'{ros_type}: {comment}'
        default = _to_json(slot, getattr(defaults, name))
        if not is_zero(default) and not isinstance(slot, idl.NamespacedType):
            prop['default'] = default
        if full_name in NORMALIZED_TIME_TYPES and name == 'nanosec':
            prop['maximum'] = NANOSEC_MAX
        properties[name] = prop
    text = _MESSAGE_HINTS.get(full_name) or docs.description
    if docs.constants:
        constants = ', '.join(f'{n}={v}' for n, v in docs.constants)
        text = f'{text} Constants: {constants}' if text else f'Constants: {constants}'
    return {_TYPE_KEY: full_name, 'type': 'object',
            'description': f'{full_name}: {text}' if text else full_name,
            'properties': properties, 'additionalProperties': False}


def is_zero(value: Any) -> bool:
    """0, false, '', or arrays/objects of only those: a default that goes without saying."""
    if isinstance(value, list):
        return all(is_zero(item) for item in value)
    if isinstance(value, dict):
        return all(is_zero(item) for item in value.values())
    return value in (0, '') or value is False


def _type_schema(slot: idl.AbstractType, limits: Limits) -> dict[str, Any]:
    """Schema of one field type (no description or default: those belong to the field)."""
    if isinstance(slot, idl.BasicType):
        return _basic_schema(slot.typename, limits)
    if isinstance(slot, idl.AbstractString):
        return {'type': 'string', 'pattern': NO_NUL_PATTERN, **_max_length(slot)}
    if isinstance(slot, idl.AbstractWString):
        return {'type': 'string', **_max_length(slot)}
    if isinstance(slot, idl.NamespacedType):
        return _message_tree(_message_class(slot), limits)
    if isinstance(slot, idl.AbstractNestedType):
        schema = {'type': 'array', 'items': _type_schema(slot.value_type, limits)}
        if isinstance(slot, idl.Array):
            schema.update(minItems=slot.size, maxItems=slot.size)
        elif isinstance(slot, idl.BoundedSequence):
            schema['maxItems'] = slot.maximum_size
        elif limits.max_items is not None:
            schema['maxItems'] = limits.max_items
        return schema
    raise TypeError(f'unsupported ROS type {slot!r}')


def _basic_schema(typename: str, limits: Limits) -> dict[str, Any]:
    if typename == 'boolean':
        return {'type': 'boolean'}
    if typename in _INTEGER_BOUNDS:
        low, high = _INTEGER_BOUNDS[typename]
        return {'type': 'integer', 'minimum': low, 'maximum': high}
    if typename in _FLOAT_LIMITS:
        number: dict[str, Any] = {'type': 'number'}
        if typename == 'float':  # a double's range is any finite JSON number
            number.update(minimum=-_FLOAT_LIMITS[typename], maximum=_FLOAT_LIMITS[typename])
        if limits.allow_non_finite:
            return {'anyOf': [number, {'enum': list(_NON_FINITE)}]}
        return number
    raise TypeError(f'unsupported ROS basic type {typename!r}')


def _max_length(slot: idl.AbstractGenericString) -> dict[str, int]:
    return {'maxLength': slot.maximum_size} if slot.has_maximum_size() else {}


# ------------------------------------------------------------------------------ cutting
def path_trie(paths: Sequence[str]) -> dict[str, Any]:
    """{'a': {'b': None}} from ['a.b']; None = the whole subtree (exposed or fixed)."""
    trie: dict[str, Any] = {}
    for path in paths:
        node = trie
        parts = path.split('.')
        for part in parts[:-1]:
            if node.get(part, {}) is None:
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = None
    return trie


def _object_node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The message object at `schema` (through arrays: a path applies to every item)."""
    while schema.get('type') == 'array':
        schema = schema['items']
    if 'properties' not in schema:
        raise ValueError(f'{path or "<goal>"} is not a message: it has no fields')
    return schema


def _keep(schema: dict[str, Any], trie: dict[str, Any], path: str) -> dict[str, Any]:
    node = _object_node(schema, path)
    kept = {}
    for name, sub in trie.items():
        if name not in node['properties']:
            raise ValueError(f'unknown field {_join(path, name)!r}; fields there: '
                             + ', '.join(node['properties']))
        prop = node['properties'][name]
        kept[name] = prop if sub is None else _keep(prop, sub, _join(path, name))
    node['properties'] = kept
    return schema


def _parent(tree: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    parts = path.split('.')
    node = tree
    for index, part in enumerate(parts[:-1]):
        node = _object_node(node, '.'.join(parts[:index]))
        if part not in node['properties']:
            raise ValueError(f'unknown or hidden field {".".join(parts[:index + 1])!r}')
        node = node['properties'][part]
    node = _object_node(node, '.'.join(parts[:-1]))
    if parts[-1] not in node['properties']:
        raise ValueError(f'unknown or hidden field {path!r}')
    return node, parts[-1]


def _join(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


# ------------------------------------------------------------------------------ limits
def _apply_limit(tree: dict[str, Any], path: str, limit: Limit) -> None:
    """Narrow the schema of the field (or array elements) `path` names to `limit`.

    Only ever narrows the type's own range. Every message occurrence in the tree is a node
    of its own (built afresh per field), so a limited one differs from the others of its
    type and `compact_schema` gives it a `$defs` entry of its own, or inlines it: a type
    shared elsewhere never takes another field's limit.
    """
    node = tree
    for segment in parse_path(path):
        properties = node.get('properties')
        if properties is None or segment.name not in properties:
            raise ValueError(f'limits.{path}: no field {segment.name!r} there')
        node = properties[segment.name]
        if segment.every:
            if node.get('type') != 'array':
                raise ValueError(f'limits.{path}: {segment.name!r} is not an array')
            node = node['items']
    if limit.max_items is not None:
        node['maxItems'] = min(node.get('maxItems', limit.max_items), limit.max_items)
    if limit.one_of is not None:
        node['enum'] = list(limit.one_of)
    if limit.min is not None or limit.max is not None:
        if 'anyOf' in node:  # "NaN"/"Infinity" allowed by the skill: never within bounds
            node.update(node.pop('anyOf')[0])
        if limit.min is not None:
            node['minimum'] = max(node.get('minimum', limit.min), limit.min)
        if limit.max is not None:
            node['maximum'] = min(node.get('maximum', limit.max), limit.max)


# ------------------------------------------------------------------------------ $defs
def _key(node: dict[str, Any]) -> str:
    """Identity of a message node: its content without the field-level description."""
    return json.dumps({k: v for k, v in node.items() if k != 'description'}, sort_keys=True)


def _count(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, dict):
        if _TYPE_KEY in node:
            key = _key(node)
            counts[key] = counts.get(key, 0) + 1
        for value in node.values():
            _count(value, counts)
    elif isinstance(node, list):
        for value in node:
            _count(value, counts)


def _factor(node: Any, counts: dict[str, int], defs: dict[str, Any], names: dict[str, str],
            is_root: bool = False) -> Any:
    if isinstance(node, list):
        return [_factor(value, counts, defs, names) for value in node]
    if not isinstance(node, dict):
        return node
    if _TYPE_KEY in node and not is_root and counts.get(_key(node), 0) > 1:
        key = _key(node)
        if key not in names:
            names[key] = _def_name(node[_TYPE_KEY], defs)
            body = {k: v for k, v in node.items() if k not in _MARKERS}
            body['description'] = node.get(_DOC_KEY, node['description'])
            defs[names[key]] = _factor(body, counts, defs, names)
        ref = {'$ref': f'#/$defs/{names[key]}'}
        if node.get(_DOC_KEY) and node.get('description'):
            ref['description'] = node['description']
        return ref
    return {k: _factor(v, counts, defs, names) for k, v in node.items() if k not in _MARKERS}


def _def_name(full_name: str, defs: dict[str, Any]) -> str:
    package, _, name = full_name.split('/')
    base = candidate = f'{package}.{name}'
    suffix = 2
    while candidate in defs:
        candidate = f'{base}_{suffix}'
        suffix += 1
    return candidate


def _strip_markers(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_markers(value) for value in node]
    if isinstance(node, dict):
        return {k: _strip_markers(v) for k, v in node.items() if k not in _MARKERS}
    return node

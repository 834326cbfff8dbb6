"""What the gateway's tools look like in tools/list: descriptions, input and output schemas.

Every tool declares an outputSchema built by `results.output_schema`, so each body it can
return (success, busy, invalid arguments, aborted, canceled, lane manager unavailable,
internal error) conforms: clients on the TypeScript SDK reject a result that does not.
Descriptions are sentences a model can act on; the lane and its busy policy are said there
and in `_meta`.
"""
from __future__ import annotations

from typing import Any, Union

import mcp_types as types

from skill_lanes import lane_state
from skill_lanes.config import LaneConfig, SkillConfig
from mcp_gateway.results import nullable, output_schema
from mcp_gateway.ros_json import Limits, MessageClass
from mcp_gateway.ros_schema import skill_schema

# A skill tool's `_meta`. The MCP spec's key grammar: an optional prefix of dot-separated
# labels (letters, digits, hyphens) and a slash, then a name. The project's own prefix is
# `skill-lanes/` (as its resource scheme `skill-lanes://`): every field is published under it.
# Earlier releases published `lane`/`lanes` unprefixed and the rest under `skill_lanes/`,
# which the grammar does not allow (no `_` in a label); both are kept for existing clients.
META_PREFIX = 'skill-lanes/'
LEGACY_META_PREFIX = 'skill_lanes/'
UNPREFIXED_META = ('lane', 'lanes')  # published also without a prefix
LANE_META_KEY = 'lane'
LANES_META_KEY = 'lanes'  # every skill tool: all its lanes ([] = never arbitrated)
OBJECT_NO_EXTRA: dict[str, Any] = {'type': 'object', 'additionalProperties': False}
GOAL_STATUSES = ['succeeded', 'aborted', 'canceled']
_READ_ONLY = {'readOnlyHint': True, 'destructiveHint': False, 'idempotentHint': True,
              'openWorldHint': False}
_STRING = {'type': 'string'}
_LANE_OR_NULL = {'type': ['string', 'null']}


def skill_output_schema(result_class: MessageClass) -> dict[str, Any]:
    """A skill tool's outputSchema: the goal's end (its Result, or null when the driver gave
    none) or the error envelope.
    """
    result = skill_schema(result_class, Limits(allow_non_finite=True))
    defs = result.pop('$defs', None)
    return output_schema({
        'status': {'type': 'string', 'enum': GOAL_STATUSES},
        'goal_id': _STRING, 'skill': _STRING, 'lane': _LANE_OR_NULL,
        'result': nullable(result),
    }, ['status', 'goal_id', 'result'], defs)


def skill_tool(name: str, skill: SkillConfig,
               lanes: Union[list[LaneConfig], LaneConfig, None],
               input_schema: dict[str, Any], result_class: MessageClass) -> types.Tool:
    """The MCP tool of one configured skill (lanes: the configs of all its lanes)."""
    if not isinstance(lanes, list):
        lanes = [] if lanes is None else [lanes]
    fields: dict[str, Any] = {'action_type': skill.action_type,
                              LANES_META_KEY: list(skill.all_lanes)}
    description = skill.description.strip() or f'Run the {name} skill ({skill.action_type}).'
    if not description.endswith('.'):
        description += '.'
    if len(lanes) == 1:
        lane = lanes[0]
        fields[LANE_META_KEY] = skill.lane
        fields['policy'] = lane.policy
        description += (f" It runs in lane '{skill.lane}', where one goal runs at a time; "
                        + {'queue': 'a call made while the lane is busy waits its turn.',
                           'reject': 'a call made while the lane is busy is refused with '
                                     'error "operation_busy" and data.retry_after_ms.',
                           'preempt': 'a new call cancels the running goal and takes over.'
                           }[lane.policy])
    elif lanes:
        names = ', '.join(f"'{n}'" for n in skill.all_lanes)
        fields['policies'] = [lane.policy for lane in lanes]
        description += (f' It needs lanes {names} at once: it starts only when all are free '
                        'and holds none of them while it waits; a call made while one is '
                        'busy waits its turn, or is refused with error "operation_busy" if '
                        'a busy lane refuses waiting goals.')
    if skill.approval == 'operator':
        fields['approval'] = 'operator'
        description += (' An operator must approve each goal before it runs: it waits, '
                        f'holding no lane, up to {skill.approval_timeout_s:g} s (progress '
                        'says "awaiting approval"); denied or not approved in time it ends '
                        'aborted and never reaches the robot.')
    description += (' It answers when the goal ends: status succeeded, aborted or canceled, '
                    "with the driver's result (null when the driver gave none).")
    hints = skill.hints
    return types.Tool.model_validate({
        'name': name,
        'description': description,
        'inputSchema': input_schema,
        'outputSchema': skill_output_schema(result_class),
        'annotations': {'readOnlyHint': hints.read_only, 'destructiveHint': hints.destructive,
                        'idempotentHint': hints.idempotent, 'openWorldHint': hints.open_world},
        '_meta': tool_meta(fields),
    })


def tool_meta(fields: dict[str, Any]) -> dict[str, Any]:
    """A skill tool's `_meta` from its fields (lanes, lane, policy, policies, action_type):
    each under `skill-lanes/`, and as earlier releases published it (see META_PREFIX).
    """
    meta = {META_PREFIX + name: value for name, value in fields.items()}
    for name, value in fields.items():
        legacy = name if name in UNPREFIXED_META else LEGACY_META_PREFIX + name
        meta[legacy] = value
    return meta


def operator_tools(lane_names: list[str]) -> list[types.Tool]:
    """lane_take / lane_give_back, goal_approve / goal_deny: offered only when
    gateway.operator_tools is true.
    """
    lane_arg = {'type': 'string', 'enum': lane_names}
    schema = output_schema({'lane': _STRING, 'taken': {'type': 'boolean'},
                            'detail': _STRING}, ['lane', 'taken'])
    hints = {'readOnlyHint': False, 'destructiveHint': True, 'idempotentHint': True,
             'openWorldHint': True}
    return [types.Tool.model_validate(tool) for tool in [
        {'name': 'lane_take',
         'description': 'Operator action: take a lane from the agents. Its running goal is '
                        'cancelled (or allowed to finish, per lane config), its queue '
                        'emptied, and every agent is refused with reason "operator" until '
                        'lane_give_back.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['lane'],
                         'properties': {'lane': lane_arg}},
         'outputSchema': schema, 'annotations': hints},
        {'name': 'lane_give_back',
         'description': 'Operator action: give a taken lane back to the agents.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['lane'],
                         'properties': {'lane': lane_arg}},
         'outputSchema': schema, 'annotations': hints},
        *approval_tools(),
    ]]


def lane_state_output_schema() -> dict[str, Any]:
    """`lanes_status` answers the whole lane state: its schema is the typed message's
    (skill_lanes/lane_state.py), plus the error envelope.
    """
    schema = lane_state.json_schema()
    return output_schema(schema['properties'], ['lanes'], defs=schema['$defs'],
                         description=schema.get('description'))
def approval_tools() -> list[dict]:
    """goal_approve / goal_deny: an operator decides a goal awaiting approval."""
    schema = output_schema({'goal_id': _STRING,
                            'decision': {'type': 'string', 'enum': ['approved', 'denied']},
                            'by': _STRING, 'detail': _STRING}, ['goal_id', 'decision'])
    goal_arg = {**OBJECT_NO_EXTRA, 'required': ['goal_id'], 'properties': {'goal_id': {
        'type': 'string', 'description': 'a goal listed in lanes_status under '
                                         'awaiting_approval'}}}
    hints = {'readOnlyHint': False, 'destructiveHint': True, 'idempotentHint': False,
             'openWorldHint': True}
    return [
        {'name': 'goal_approve',
         'description': 'Operator action: approve a goal of a skill that needs approval. From '
                        'now on it asks for its lane like a goal arriving now: it runs, '
                        'queues, or (a busy lane that refuses waiting goals) ends aborted.',
         'inputSchema': goal_arg, 'outputSchema': schema, 'annotations': hints},
        {'name': 'goal_deny',
         'description': 'Operator action: deny a goal awaiting approval; it ends aborted '
                        '("denied by ...") and never reaches the robot.',
         'inputSchema': goal_arg, 'outputSchema': schema,
         'annotations': {**hints, 'destructiveHint': False}},
    ]


def builtin_tools(skill_names: list[str], lane_names: list[str]) -> list[types.Tool]:
    """The gateway's own tools: lanes, operator actions and job handles."""
    lane_arg = {'type': 'string', 'enum': lane_names}
    job = output_schema({
        'goal_id': _STRING, 'skill': _STRING, 'lane': _LANE_OR_NULL,
        'state': {'type': 'string', 'description': 'sending, accepted, awaiting_approval, '
                                                   'succeeded, aborted, canceled, refused or '
                                                   'failed'},
        'feedback': {}, 'feedback_count': {'type': 'integer'},
        'result': nullable({'type': 'object',
                            'description': "the skill tool's answer, once the goal ended"}),
        'started_at': {'type': 'number'},
    }, ['goal_id', 'skill', 'state'])
    return [types.Tool.model_validate(tool) for tool in [
        {'name': 'lanes_status',
         'description': 'Show every lane: which goal holds it, what waits in its queue, and '
                        'recent refusals and endings with their reasons. Read-only.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'properties': {}},
         'outputSchema': lane_state_output_schema(),
         'annotations': _READ_ONLY},
        {'name': 'lane_stop',
         'description': 'Stop button for one lane: cancel every goal in it, running and '
                        'queued, whoever sent it. Each stopped goal ends naming lane_stop.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['lane'],
                         'properties': {'lane': lane_arg}},
         'outputSchema': output_schema({
             'lane': _STRING, 'stopped': {'type': 'boolean'},
             'cancelled': {'type': ['integer', 'null']}, 'detail': _STRING}, ['lane']),
         'annotations': {'readOnlyHint': False, 'destructiveHint': False,
                         'idempotentHint': True, 'openWorldHint': True}},
        {'name': 'lane_release',
         'description': 'Operator action: free a lane that stays held because a driver never '
                        'confirmed that its goal ended. Only with force true, and only once '
                        'you know the robot is safe: the goal may still be running.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['lane', 'force'], 'properties': {
             'lane': lane_arg,
             'force': {'const': True, 'description': 'must be true: you take responsibility'},
         }},
         'outputSchema': output_schema({'lane': _STRING, 'released': {'type': 'boolean'},
                                        'detail': _STRING}, ['lane', 'released']),
         'annotations': {'readOnlyHint': False, 'destructiveHint': True,
                         'idempotentHint': True, 'openWorldHint': True}},
        {'name': 'skill_start',
         'description': 'Start a skill and get its goal id at once, for clients whose '
                        'request timeout is shorter than the skill; follow the goal with '
                        'skill_status and stop it with skill_cancel.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['skill'], 'properties': {
             'skill': {'type': 'string', 'enum': skill_names},
             'arguments': {'type': 'object', 'default': {},
                           'description': "the skill tool's arguments"}}},
         'outputSchema': job,
         'annotations': {'destructiveHint': True, 'openWorldHint': True}},
        {'name': 'skill_status',
         'description': 'Get the state, last feedback and, once it ended, the answer of a goal '
                        'started with skill_start.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['goal_id'],
                         'properties': {'goal_id': _STRING}},
         'outputSchema': job, 'annotations': _READ_ONLY},
        {'name': 'skill_cancel',
         'description': 'Cancel a goal started with skill_start and return its state.',
         'inputSchema': {**OBJECT_NO_EXTRA, 'required': ['goal_id'],
                         'properties': {'goal_id': _STRING}},
         'outputSchema': job,
         'annotations': {'destructiveHint': False, 'idempotentHint': True}},
    ]]

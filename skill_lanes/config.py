"""The one configuration file every skill_lanes executable reads (`--config FILE`).

It is a contract: the lane manager, the simulated driver, the MCP gateway and the launch files
all read the same YAML, validated here with pydantic. No ROS import at module level, so the
file can be checked anywhere; importing the named action types (to prove they exist) is done
lazily and can be switched off.

A bad file never produces a traceback: `load_config` raises `ConfigError`, whose message is a
single line `FILE: key.path: what is wrong`, which the executables print before exiting 2
(skill_lanes/runtime.py, mcp_gateway/main.py).
"""
from __future__ import annotations

import fnmatch
import importlib
import math
import re
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr,
                      ValidationError, field_validator, model_validator)

NAME_RE = r'^[A-Za-z][A-Za-z0-9_]{0,63}$'
ACTION_TYPE_RE = r'^[A-Za-z][A-Za-z0-9_]*/action/[A-Z][A-Za-z0-9_]*$'
ROS_NAME_RE = r'^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$'
FIELD_PATH_RE = r'^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$'

class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra='forbid', frozen=True)


class LaneConfig(_Strict):
    """How a lane treats a goal that arrives while another goal holds it."""

    policy: Literal['queue', 'reject', 'preempt'] = 'queue'
    max_queue: int = Field(8, ge=0, description='waiting goals beyond this are rejected')
    max_hold_s: Optional[float] = Field(
        600.0, gt=0, description='a goal running longer is cancelled at the driver and aborted')
    retry_after_ms: int = Field(
        1000, ge=0, description='hint given to a refused caller')
    cancel_grace_s: float = Field(
        5.0, gt=0, description='a cancel the driver has not honoured after this is an ERROR '
        'in /diagnostics (the lane stays held and the cancel is repeated: never a release)')
    external_goals: Literal['hold', 'cancel'] = Field(
        'hold', description='goals sent to a driver of this lane around the lane manager: '
        'hold the lane while they run, or cancel them at once')
    on_take: Literal['cancel', 'wait'] = Field(
        'cancel', description='an operator taking the lane (<ns>/lanes/<lane>/take) cancels '
        'its running goal, or lets it finish; either way the queue is emptied and agents '
        'are refused with reason operator until it is given back')
    max_awaiting_approval: int = Field(
        8, ge=1, description='goals of approval skills waiting for an operator in this lane '
        '(counted apart from max_queue: they hold and queue for nothing); beyond this they '
        'are refused')


class ToolHints(_Strict):
    """MCP tool annotations for a skill (hints only). Robot skills move things: destructive."""

    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True


class FieldLimit(_Strict):
    """A limit on one goal field (see skill_lanes/goal_limits.py): at least one key."""

    min: Optional[StrictInt | StrictFloat] = None
    max: Optional[StrictInt | StrictFloat] = None
    max_items: Optional[StrictInt] = Field(None, ge=0)
    one_of: Optional[list[StrictStr]] = Field(None, min_length=1)

    @field_validator('min', 'max', 'max_items', mode='before')
    @classmethod
    def _a_number(cls, value: Any, info: Any) -> Any:
        wanted = (int,) if info.field_name == 'max_items' else (int, float)
        if value is not None and (isinstance(value, bool) or not isinstance(value, wanted)):
            what = 'an integer' if info.field_name == 'max_items' else 'a number'
            raise ValueError(f'must be {what}, got {value!r}')
        return value

    @model_validator(mode='after')
    def _coherent(self) -> 'FieldLimit':
        numeric = self.min is not None or self.max is not None
        if not numeric and self.max_items is None and self.one_of is None:
            raise ValueError('give min, max, max_items or one_of')
        for key in ('min', 'max'):
            bound = getattr(self, key)
            if isinstance(bound, float) and not math.isfinite(bound):
                raise ValueError(f'{key} must be a finite number, got {bound}')
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f'min {self.min} is above max {self.max}: nothing could pass')
        if sum((numeric, self.max_items is not None, self.one_of is not None)) > 1:
            raise ValueError('min/max bound a number, max_items an array, one_of a string: '
                             'one kind per path (an array and its elements: `a` and `a[]`)')
        for text in self.one_of or []:
            if not text or '\x00' in text:
                raise ValueError(f'one_of entries must be non-empty strings without NUL, '
                                 f'got {text!r}')
        return self


class SkillConfig(_Strict):
    """One robot skill: an action type, the real driver's action server, and its lane."""

    lane: Optional[str] = Field(None, description='no lane = never arbitrated')
    lanes: Optional[list[str]] = Field(
        None, min_length=1, description='a skill needing several lanes at once (whole-body '
        'skills): all of them or none, acquired when its goal starts; give lane or lanes')
    action_type: str = Field(pattern=ACTION_TYPE_RE)
    driver: str = Field(pattern=ROS_NAME_RE, description="the real driver's action server")
    description: str = ''
    priority: int = 0
    hints: ToolHints = ToolHints()
    # What the skill's MCP tool offers a model (dotted goal field paths, e.g. `pose.pose`):
    fields: Optional[list[str]] = Field(
        None, description='the goal fields the tool exposes (default: all)')
    fixed: dict[str, Any] = Field(
        {}, description='goal fields set to these values and hidden from the tool')
    required: list[str] = Field(
        [], description='goal fields a call must give (e.g. [pose])')
    allow_non_finite: bool = Field(
        False, description='accept "NaN"/"Infinity"/"-Infinity" for float goal fields')
    limits: dict[str, FieldLimit] = Field(
        {}, description='goal field path (`points[].velocities[]`) -> limit: enforced by the '
        'lane manager on every goal (skill_lanes/goal_limits.py), shown by the gateway')
    approval: Literal['none', 'operator'] = Field(
        'none', description='operator: every goal waits (holding no lane) until an operator '
        'approves it; denied or not approved within approval_timeout_s it ends aborted, '
        'never sent to the driver')
    approval_timeout_s: float = Field(
        120.0, gt=0, description='how long a goal of an approval skill waits for a decision')

    @model_validator(mode='after')
    def _one_lane_key(self) -> 'SkillConfig':
        if self.lane is not None and self.lanes is not None:
            raise ValueError('give either lane (one lane) or lanes (several), not both')
        if self.approval != 'none' and self.lane is None and self.lanes is None:
            # A waiting goal is shown, approved and denied per lane (lane state, the lane's
            # approve service, the lane view): a skill without a lane has no such place, and
            # running it unapproved would defeat the setting.
            raise ValueError('approval: operator needs a lane (lane or lanes): goals await '
                             "approval in their lane's list")
        if self.lanes is not None and len(set(self.lanes)) != len(self.lanes):
            raise ValueError(f'lanes {self.lanes} names a lane twice')
        return self

    @property
    def all_lanes(self) -> tuple[str, ...]:
        """Every lane the skill holds while it runs (empty: never arbitrated)."""
        if self.lanes is not None:
            return tuple(self.lanes)
        return (self.lane,) if self.lane is not None else ()

    @property
    def primary_lane(self) -> Optional[str]:
        """The first of its lanes (its only one for a single-lane skill)."""
        lanes = self.all_lanes
        return lanes[0] if lanes else None

    @field_validator('fields', 'required')
    @classmethod
    def _dotted_paths(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        for path in value or []:
            if not re.match(FIELD_PATH_RE, path):
                raise ValueError(f'invalid field path {path!r} (use dotted field names)')
        return value

    @field_validator('fixed')
    @classmethod
    def _fixed_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        cls._dotted_paths(list(value))
        return value

    @model_validator(mode='after')
    def _limits_fit(self) -> 'SkillConfig':
        from skill_lanes.goal_limits import GoalLimits, limits_from_config, parse_path
        for path in self.limits:
            try:
                parse_path(path)
            except ValueError as exc:
                raise _KeyedError(('limits', path), str(exc)) from None
        if self.fixed:  # a fixed value must keep its own skill's limits
            violation = GoalLimits(limits_from_config(self.limits)).check(
                _fixed_tree(self.fixed))
            if violation is not None:
                path = next(p for p in self.limits if _covers(p, violation.field))
                raise _KeyedError(('limits', path),
                                  f'the fixed value breaks it: {violation}')
        return self


class SimSkillConfig(_Strict):
    """How the simulated driver behaves for one skill."""

    duration_s: float = Field(1.0, ge=0)
    duration_max_s: Optional[float] = Field(
        None, ge=0, description='if set, each goal runs a random time in [duration_s, this]')
    feedback_hz: float = Field(5.0, ge=0)
    outcome: Literal['succeed', 'abort', 'reject', 'hang', 'ignore_cancel', 'absent',
                     'accept_cancel_but_run'] = 'succeed'
    answer_delay_s: float = Field(0.0, ge=0, description='answer goal requests this late')


class SimConfig(_Strict):
    """The simulated robot: `default` applies to every skill not listed in `skills`."""

    default: SimSkillConfig = SimSkillConfig()
    skills: dict[str, SimSkillConfig] = {}

    def for_skill(self, skill: str) -> SimSkillConfig:
        return self.skills.get(skill, self.default)


# The emergency stop topic's default name (skill_lanes/interfaces.py describes the topic):
# defined here because this module imports no ROS, and interfaces.py does (its QoS profiles).
DEFAULT_EMERGENCY_STOP_TOPIC = '/emergency_stop'
class EmergencyStopSource(_Strict):
    """One std_msgs/Bool emergency stop source (lane_manager/stop_sources.py says how
    its stops latch, per publisher, and what silence means).
    """

    topic: str = Field(pattern=ROS_NAME_RE, description='std_msgs/Bool (reliable, transient '
                       'local): true stops, false releases the stops its own publisher set')
    heartbeat_s: Optional[float] = Field(
        None, gt=0, description='the source must publish at least this often (false = all '
        'clear, I am alive); silent longer, or gone from the graph, is a stop')
    lanes: Optional[list[str]] = Field(
        None, min_length=1, description='the lanes it stops (default: every lane)')
    required: Optional[bool] = Field(
        None, description='never heard since start = stop until it speaks (default: true '
        'for a heartbeat source, else false)')

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.heartbeat_s is not None


class EmergencyStopConfig(_Strict):
    """Every emergency stop source: the stop is on while ANY of them holds it."""

    sources: list[EmergencyStopSource] = Field(
        description='[] = no emergency stop at all')

    @field_validator('sources')
    @classmethod
    def _topics_once(cls, value: list[EmergencyStopSource]) -> list[EmergencyStopSource]:
        seen: set[str] = set()
        for index, source in enumerate(value):
            if source.topic in seen:
                # The path below the field: lane_manager.emergency_stop.sources.<i>.topic
                raise _KeyedError((str(index), 'topic'),
                                  f'topic {source.topic!r} is given twice')
            seen.add(source.topic)
        return value


class LaneManagerConfig(_Strict):
    """Where the lane manager serves and how fast it notices faults."""

    namespace: str = Field('lane_manager', pattern=ROS_NAME_RE)  # relative: node's ns
    emergency_stop_topic: Optional[str] = Field(
        DEFAULT_EMERGENCY_STOP_TOPIC, pattern=ROS_NAME_RE,
        description='std_msgs/Bool followed (reliable, '
        'transient local): true cancels every goal and refuses new ones until false; null: off')
    emergency_stop_lanes: Optional[list[str]] = Field(
        None, description='the lanes an emergency stop stops (default: every lane)')
    emergency_stop: Optional[EmergencyStopConfig] = Field(
        None, description='several sources (each with its topic, heartbeat_s, lanes, '
        'required); replaces emergency_stop_topic / emergency_stop_lanes (not both)')
    driver_wait_s: float = Field(
        5.0, ge=0, description='how long a goal waits for an absent driver before it aborts')
    driver_response_s: float = Field(
        10.0, gt=0, description='a driver that does not answer a goal in this time is faulty')
    driver_lost_s: float = Field(
        3.0, gt=0, description='a driver silent (or off the graph) this long mid-goal: its '
        "caller's goal aborts; the lane stays held until the driver confirms or leaves")
    on_start: Literal['cancel', 'wait'] = Field(
        'cancel', description='goals found running at the drivers when the lane manager '
        'starts hold their lanes; cancel them (no caller sees them any more) or wait')
    watchdog_hz: float = Field(10.0, gt=0)
    state_period_s: float = Field(1.0, gt=0, description='diagnostics and state re-publish period')

    @model_validator(mode='after')
    def _one_emergency_stop_form(self) -> 'LaneManagerConfig':
        # Both forms at once: the old topic's default ('/emergency_stop') would silently
        # add a source nobody listed, or a listed one would silently drop it.
        old = {'emergency_stop_topic', 'emergency_stop_lanes'} & self.model_fields_set
        if self.emergency_stop is not None and old:
            raise _KeyedError((sorted(old)[0],),
                              'give either emergency_stop.sources or the older '
                              'emergency_stop_topic / emergency_stop_lanes, not both')
        return self

    def stop_sources(self) -> list[EmergencyStopSource]:
        """Every emergency stop source, the older single-topic keys as one source."""
        if self.emergency_stop is not None:
            return list(self.emergency_stop.sources)
        if self.emergency_stop_topic is None:
            return []
        return [EmergencyStopSource(topic=self.emergency_stop_topic,
                                    lanes=self.emergency_stop_lanes)]


CLIENT_NAME_RE = r'^[A-Za-z][A-Za-z0-9_-]{0,63}$'
ENV_NAME_RE = r'^[A-Za-z_][A-Za-z0-9_]*$'


class GatewayClientConfig(_Strict):
    """One named HTTP client: its token (by env var), the skills it may use, operator or not."""

    token_env: str = Field(pattern=ENV_NAME_RE,
                           description="env var holding this client's bearer token")
    skills: list[str] = Field(
        ['*'], description='globs (fnmatch) of the skills it may use, within gateway.skills')
    operator: bool = Field(
        False, description='may use the operator tools (lane_take, ...) without the operator '
        'header, and stop or release every lane')


class GatewayConfig(_Strict):
    """The MCP gateway's defaults (command-line flags override them)."""

    skills: list[str] = Field(
        ['*'], description='globs (fnmatch) of the skills this gateway offers at all (stdio: '
        'the allowlist; HTTP: every client list is cut to it)')
    clients: dict[str, GatewayClientConfig] = Field(
        {}, description='named HTTP bearer tokens, each with its skills (none: one token, '
        'gateway.token_env)')

    name: str = Field('skill_lanes', pattern=NAME_RE)
    transport: Literal['stdio', 'http'] = 'stdio'
    host: str = '127.0.0.1'
    port: int = Field(8765, ge=0, le=65535)
    token_env: str = Field('SKILL_LANES_TOKEN', description='env var holding the bearer token')
    operator_tools: bool = Field(
        False, description='offer the MCP tools lane_take / lane_give_back (operator take-over)')
    operator_token_env: str = Field(
        'SKILL_LANES_OPERATOR_TOKEN', description='over HTTP, lane_take / lane_give_back need '
        'header X-Skill-Lanes-Operator with the token in this env var (unset: refused)')
    lane_manager_wait_s: float = Field(
        10.0, gt=0, description='a call waits this long for the lane manager before failing')
    progress_interval_s: float = Field(
        5.0, gt=0, description='keep-alive progress while a goal gives no feedback')
    refusal_wait_s: float = Field(
        2.0, gt=0, description='how long to wait for the lane state naming a refusal reason')
    max_request_bytes: int = Field(
        8_000_000, gt=0, description="a skill call's arguments larger than this (as JSON) "
        'are refused unread')
    max_array_items: int = Field(
        100_000, gt=0, description='the longest unbounded array a goal may carry')
    max_goals_in_flight: int = Field(
        8, gt=0, description="goal requests awaiting the lane manager's answer at once; more "
        "wait (keep it below the action servers' request queue depth, 10 by default)")

    @field_validator('clients')
    @classmethod
    def _client_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not isinstance(name, str) or not re.match(CLIENT_NAME_RE, name):
                raise ValueError(f'invalid client name {name!r}: use letters, digits, _ and '
                                 '-, starting with a letter')
        return value

    @model_validator(mode='after')
    def _one_token_one_client(self) -> 'GatewayConfig':
        seen: dict[str, str] = {}
        for name, client in self.clients.items():
            if client.token_env in seen:
                raise _KeyedError(('clients', name, 'token_env'),
                                  f'{client.token_env} is already the token of client '
                                  f'{seen[client.token_env]!r} (one token, one identity)')
            seen[client.token_env] = name
        return self


class Config(_Strict):
    """The whole file."""

    lanes: dict[str, LaneConfig] = {}
    skills: dict[str, SkillConfig] = {}
    lane_manager: LaneManagerConfig = LaneManagerConfig()
    gateway: GatewayConfig = GatewayConfig()
    sim: SimConfig = SimConfig()
    # Validated by the gateway (mcp_gateway/unity/config.py), which owns the Unity tools.
    unity: dict[str, Any] = {}

    @field_validator('lanes', 'skills')
    @classmethod
    def _names_are_identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not isinstance(name, str) or not re.match(NAME_RE, name):
                raise ValueError(
                    f'invalid name {name!r}: use letters, digits and _, starting with a letter')
        return value

    @model_validator(mode='after')
    def _cross_references(self) -> 'Config':
        for name, skill in self.skills.items():
            for lane in skill.all_lanes:
                if lane not in self.lanes:
                    known = ', '.join(sorted(self.lanes)) or 'none'
                    key = 'lane' if skill.lanes is None else 'lanes'
                    raise _KeyedError(('skills', name, key),
                                      f'unknown lane {lane!r} (known: {known})')
        for lane in self.lane_manager.emergency_stop_lanes or []:
            if lane not in self.lanes:
                raise _KeyedError(('lane_manager', 'emergency_stop_lanes'),
                                  f'unknown lane {lane!r}')
        stop = self.lane_manager.emergency_stop
        for index, source in enumerate(stop.sources if stop is not None else []):
            for lane in source.lanes or []:
                if lane not in self.lanes:
                    known = ', '.join(sorted(self.lanes)) or 'none'
                    raise _KeyedError(('lane_manager', 'emergency_stop', 'sources', str(index),
                                       'lanes'), f'unknown lane {lane!r} (known: {known})')
        for name in self.sim.skills:
            if name not in self.skills:
                raise _KeyedError(('sim', 'skills', name), f'unknown skill {name!r}')
        return self

    @model_validator(mode='after')
    def _gateway_skill_globs(self) -> 'Config':
        """A glob naming no skill is a typo: it must not silently allow less than meant."""
        offered, unmatched = match_globs(self.gateway.skills, self.skills)
        if unmatched:
            raise _KeyedError(('gateway', 'skills'), f'{unmatched[0]!r} matches no '
                              f'configured skill (known: {_names(self.skills)})')
        for name, client in self.gateway.clients.items():
            _, unmatched = match_globs(client.skills, offered)
            if unmatched:
                raise _KeyedError(('gateway', 'clients', name, 'skills'),
                                  f'{unmatched[0]!r} matches no skill this gateway offers '
                                  f'(gateway.skills: {_names(offered)})')
        return self


def _fixed_tree(fixed: dict[str, Any]) -> dict[str, Any]:
    """`fixed` ({'a.b': 1}) as the JSON object it sets ({'a': {'b': 1}})."""
    tree: dict[str, Any] = {}
    for path, value in fixed.items():
        node = tree
        parts = path.split('.')
        for part in parts[:-1]:
            child = node.get(part)
            node = node.setdefault(part, {}) if not isinstance(child, dict) else child
        node[parts[-1]] = value
    return tree


def _covers(limit_path: str, concrete: str) -> bool:
    """Whether a concrete path (`a.b[2].c`) is the one `limit_path` (`a.b[].c`) names."""
    return re.sub(r'\[\d+\]', '[]', concrete) == limit_path


def match_globs(globs: Iterable[str], names: Iterable[str]) -> tuple[frozenset[str], list[str]]:
    """(the names any glob matches, the globs matching none): how `gateway.skills` and
    `gateway.clients.<c>.skills` are read. fnmatch, case-sensitive (skill names are tool
    names). `*` alone never counts as matching none: it means "all, whatever they are"
    (the default, also for a gateway without skills).
    """
    names = sorted(names)
    matched: set[str] = set()
    unmatched: list[str] = []
    for glob in globs:
        hits = [name for name in names if fnmatch.fnmatchcase(name, glob)]
        if not hits and glob != '*':
            unmatched.append(glob)
        matched.update(hits)
    return frozenset(matched), unmatched


def _names(names: Iterable[str]) -> str:
    return ', '.join(sorted(names)) or 'none'


class _KeyedError(ValueError):
    """A cross-reference error that knows its own key path."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class ConfigError(Exception):
    """A configuration file that cannot be used. str() is one line naming file and key."""


def format_validation_error(source: str, error: ValidationError,
                            prefix: tuple[str, ...] = ()) -> str:
    """One line `FILE: key.path: problem (+N more errors)` for a pydantic error; `prefix`: the
    keys above the validated model (`('unity',)` for the gateway's Unity section).
    """
    first = error.errors()[0]
    ctx_error = (first.get('ctx') or {}).get('error')
    if isinstance(ctx_error, _KeyedError):  # its path is below the model that raised it
        path = prefix + tuple(str(p) for p in first['loc']) + ctx_error.path
        message = ctx_error.message
    else:
        path = prefix + tuple(str(p) for p in first['loc'])
        message = first['msg'].removeprefix('Value error, ')
        if first['type'] == 'extra_forbidden':
            message = 'unknown key'
        elif first['type'] == 'string_pattern_mismatch':
            message = f"invalid value {first.get('input')!r} ({message})"
    more = len(error.errors()) - 1
    suffix = f' (+{more} more error{"s" if more > 1 else ""})' if more > 0 else ''
    key = '.'.join(path) or '<top>'
    return f'{source}: {key}: {message}{suffix}'


def skill_limits(skill: SkillConfig, goal_class: Any) -> Any:
    """The skill's compiled `GoalLimits`, checked against its Goal type (raises
    limit_types.LimitTypeError, a ValueError `path: problem`, for a limit that does not
    fit). Imports ROS type support.
    """
    from skill_lanes.goal_limits import GoalLimits, limits_from_config
    from skill_lanes.limit_types import check_limit_types
    limits = limits_from_config(skill.limits)
    return GoalLimits(limits, check_limit_types(goal_class, limits))


def import_action_type(type_name: str) -> Any:
    """Import `pkg/action/Name` and return the action class. Raises ImportError with why."""
    package, _, name = type_name.split('/')
    try:
        module = importlib.import_module(f'{package}.action')
    except ImportError as exc:
        raise ImportError(f'cannot import {package}.action ({exc})') from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f'{package}.action has no action {name!r}') from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error, not 'last one wins'."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key {key!r}', key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


def parse_config(data: Any, source: str = '<config>', check_types: bool = True) -> Config:
    """Validate already-parsed YAML data. See `load_config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f'{source}: <top>: expected a mapping, got {type(data).__name__}')
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    if check_types:
        for name, skill in config.skills.items():
            try:
                action = import_action_type(skill.action_type)
            except ImportError as exc:
                raise ConfigError(
                    f'{source}: skills.{name}.action_type: type not importable: {exc}') from None
            if skill.limits:
                try:
                    skill_limits(skill, action.Goal)
                except ValueError as exc:  # limit_types.LimitTypeError
                    raise ConfigError(f'{source}: skills.{name}.limits.{exc}') from None
    return config


def load_config(path: str | Path, check_types: bool = True) -> Config:
    """Read and validate a configuration file.

    check_types imports every skill's action type, so a typo is caught at start-up instead
    of at the first goal. Raises ConfigError with a one-line message.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding='utf-8')
    except OSError as exc:
        raise ConfigError(f'{source}: <file>: cannot read ({exc.strerror or exc})') from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
        raise ConfigError(f'{source}: <file>: malformed YAML{where}: {problem}') from None
    return parse_config(data, source, check_types)


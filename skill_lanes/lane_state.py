"""The lane state message, typed: what `<namespace>/lane_state` carries (std_msgs/String JSON).

One contract for the lane manager and its readers: every key the lane manager publishes is
declared here with what it means; test/test_lane_state.py checks every message a real lane
manager publishes under traffic, every lane snapshot the keeper's state machine reaches, and
the README's lane-state reference against it (`validate_published`: no undeclared key; every
declared key shown). Its JSON Schema is the `outputSchema` of the gateway's `lanes_status`
tool and the gateway's `skill-lanes://lane-state/schema` resource. Validating on every
publish is left to the tests: it costs 0.1-2.9 ms a message (3-12 lanes, bench/
bench_lane_state.py), on the thread that relays goals. Readers `parse` a message (unknown
keys kept, wrong types refused): the gateway reads every message through it, once, lazily
(mcp_gateway/lane_state_reader.py).

Readers must tolerate keys they do not know (a newer lane manager may add some): `parse`
ignores them; the lane manager's own check (`validate_published`) forbids them, so every key
it publishes is declared here, with what it means.

Pure Python (pydantic), no ROS import.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Stamp = float  # wall time, seconds since the epoch, rounded to ms


class _Record(BaseModel):
    """Readers keep keys they do not know; the lane manager's own check forbids them."""

    model_config = ConfigDict(extra='allow')


class Agent(_Record):
    """Who asked for a goal, as the gateway that sent it reported it (/skill_lanes/goal_agents)."""

    open_record: ClassVar[bool] = True  # a gateway's own record, passed on as sent
    client: Optional[str] = None
    version: Optional[str] = None
    session: Optional[str] = None
    tool: Optional[str] = None
    skill: Optional[str] = None
    gateway: Optional[str] = None


class AskedBy(_Record):
    """Joined into holders, queue entries, endings and refusals (lane_manager/agents.py)."""

    agent: Optional[Agent] = Field(None, description='null: a plain ROS client')
    asked_by: Optional[str] = Field(None, description="e.g. 'agent claude-code 1.2 "
                                    "(session 3f2c…)' or 'a plain ROS client'")


class Holder(AskedBy):
    goal_id: str
    skill: Optional[str] = Field(description='null for an external goal of an unknown skill')
    priority: Optional[int] = Field(description='null for adopted / external goals')
    state: Literal['starting', 'active', 'cancelling', 'ended_unconfirmed']
    since: Stamp
    held_s: float
    cancel_reason: Optional[str]
    origin: Literal['lane_manager', 'adopted', 'external', 'unknown']
    driver: Optional[str]
    driver_goal_id: Optional[str] = Field(
        description='the id the lane manager chose at the driver (adopted/external: theirs)')
    lanes: list[str]


class Occupant(_Record):
    """Something besides the holder that keeps the lane held, on a driver's word (or lack)."""

    origin: Literal['lane_manager', 'adopted', 'external', 'unknown']
    why: str
    driver: Optional[str]
    driver_goal_id: Optional[str]
    skill: Optional[str]
    since: Stamp


class QueueEntry(AskedBy):
    goal_id: str
    skill: str
    priority: int
    since: Stamp
    lanes: list[str]


class AwaitingApproval(AskedBy):
    """A goal of an `approval: operator` skill, accepted, waiting for an operator: it holds
    and queues for nothing (lane_manager/approvals.py).
    """

    goal_id: str
    skill: str
    priority: int
    state: Literal['awaiting_approval']
    since: Stamp
    deadline: Stamp = Field(description='not decided by then, it ends aborted')
    left_s: float
    approval_timeout_s: float
    lanes: list[str]


class ApprovalRecord(_Record):
    """An operator's decision (or its absence) on a goal that awaited approval."""

    goal_id: str
    skill: str
    decision: Literal['approved', 'denied', 'timed_out']
    by: Optional[str] = Field(description='who decided, as the decision said it (null: '
                              'timed out); the SetBool service names itself')
    at: Stamp


class HolderRef(_Record):
    skill: Optional[str]
    goal_id: str


class Refusal(AskedBy):
    goal_id: str
    skill: str
    reason: str
    retry_after_ms: int
    at: Stamp
    holder: Optional[HolderRef]
    held_because: Optional[str]
    holder_agent: Optional[Agent] = None
    holder_asked_by: Optional[str] = None
    # A goal breaking its skill's limits (reason `limits: ...`): which field, its value, the
    # limit it breaks (skill_lanes/goal_limits.py).
    field: Optional[str] = None
    value: Any = None
    limit: Optional[str] = None


class Ending(AskedBy):
    goal_id: str
    skill: Optional[str]
    outcome: Literal['succeeded', 'aborted', 'canceled', 'released']
    reason: Optional[str]
    driver_result: bool = Field(description='false: the driver gave no result '
                                '(the gateway answers result: null)')
    at: Stamp


class DriverHealth(_Record):
    status_known: bool
    reachable: bool
    present: bool
    active_goals: list[str] = Field(description='driver goal ids the driver reports active')


class Counters(_Record):
    submitted: int
    started: int
    queued: int
    rejected: int
    preempted: int
    succeeded: int
    aborted: int
    canceled: int
    hold_timeouts: int
    operator_releases: int
    adopted: int
    external: int
    approved: int
    denied: int
    approval_timeouts: int


class Lane(_Record):
    policy: Literal['queue', 'reject', 'preempt']
    holder: Optional[Holder] = Field(description='null: nothing holds the lane')
    held_because: Optional[str] = Field(
        description='why the lane is held besides its holder (unconfirmed end, adopted or '
        'external goal, unknown driver status, unhonoured cancel)')
    blocked_by: list[str] = Field(description="'emergency_stop', 'operator': all refused")
    blocked_because: Optional[str]
    occupants: list[Occupant]
    queue: list[QueueEntry]
    awaiting_approval: list[AwaitingApproval]
    approvals: list[ApprovalRecord]
    last_refusals: list[Refusal]
    last_endings: list[Ending]
    counters: Counters
    retry_after_ms: int
    max_queue: int
    max_hold_s: Optional[float]
    max_awaiting_approval: int
    unhonoured: list[str] = Field(description='cancels a driver has not honoured yet')
    drivers: dict[str, DriverHealth] = {}
    skills: list[str] = []
    drivers_available: bool = True


class Skill(_Record):
    lane: Optional[str]
    lanes: list[str]
    action_type: str
    driver: str
    server: str = Field(description="the lane manager's action server for the skill")
    priority: int
    approval: Literal['none', 'operator'] = Field(
        'none', description='operator: each goal waits for an operator to decide first')
    driver_available: bool = Field(
        description='the driver is on the graph and its goal status is known')


class StopSource(_Record):
    """One emergency stop source (lane_manager/stop_sources.py): who holds the stop, why."""

    topic: str
    lanes: list[str]
    heartbeat_s: Optional[float] = Field(description='must publish at least this often')
    required: bool = Field(description='never heard since start counts as a stop')
    active: bool = Field(description='this source holds the stop now')
    why: Optional[str] = Field(description="e.g. 'on (set by /pendant)', 'silent for 2 s "
                               "(heartbeat_s=0.5)', 'never heard since start'")
    last_value: Optional[bool]
    age_s: Optional[float] = Field(description='seconds since its last message (null: never)')
    publisher: Optional[str] = Field(description='who sent the last message (node name, '
                                     'else its gid)')
    latched_by: list[str] = Field(description='publishers whose true is not released yet: '
                                  'only each of them can release its own')
    publishers: list[str] = Field(description='publishers on the topic now (the graph)')


class EmergencyStop(_Record):
    topic: Optional[str]
    active: bool
    lanes: list[str]
    since: Optional[Stamp]
    count: int = Field(description='how often the stop went on since start')
    sources: list[StopSource] = []


class LaneState(_Record):
    """The whole message."""

    node: str = Field(description="the lane manager's fully qualified node name")
    seq: int = Field(description='increases with every message of one lane manager life')
    stamp: Stamp
    lanes: dict[str, Lane]
    skills: dict[str, Skill]
    emergency_stop: EmergencyStop
    taken: dict[str, Stamp] = Field(description='lanes an operator has taken, since when')


class UndeclaredKey(ValueError):
    """The lane manager published a key this module does not declare."""


def parse(state: Any) -> LaneState:
    """A reader's parse (the gateway's): unknown keys are kept, wrong types are errors.

    Raises pydantic.ValidationError naming the key path.
    """
    return LaneState.model_validate(state)


def validate_published(state: dict) -> LaneState:
    """The lane manager's check of its own message: every key declared, every type right.

    Raises pydantic.ValidationError, or UndeclaredKey naming the path of a key that is not
    declared here (declare it, with what it means, before publishing it).
    """
    model = LaneState.model_validate(state)
    _no_undeclared(model, 'lane_state')
    return model


def _no_undeclared(value: Any, path: str) -> None:
    if isinstance(value, BaseModel):
        if value.model_extra and not getattr(value, 'open_record', False):
            raise UndeclaredKey(f'{path}: undeclared key(s) {sorted(value.model_extra)}')
        for name in type(value).model_fields:
            _no_undeclared(getattr(value, name), f'{path}.{name}')
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_undeclared(item, f'{path}.{key}')
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_undeclared(item, f'{path}[{index}]')


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the message (draft 2020-12, `$defs` for the records)."""
    return LaneState.model_json_schema()

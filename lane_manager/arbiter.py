"""Lane arbitration: which goal holds each lane, decided when a goal asks to be accepted.

Pure Python with no ROS import, so every interleaving can be tested fast and exhaustively
(test/test_arbiter.py runs a hypothesis state machine against it). The lane manager node is
a thin shell: it feeds events in (a goal asks, the driver accepted it, the driver ended it,
a caller cancels, time passes) and carries out the effects that come back (start a goal at
its driver, cancel a goal at its driver, end a goal that never reached the driver).

The invariant the whole product rests on: a lane has at most one holder, and only the holder
is ever forwarded to a driver. A lane becomes free only when its holder has ended AND nothing
else occupies it: `occupants` are what the drivers themselves report (a goal whose end the
driver has not confirmed, a goal found running at start, a goal sent around the lane
manager, a driver whose status is not known yet). The lane keeper (lane_manager/keeper.py)
sets and clears them from the drivers' word; the arbiter never frees a lane by a timeout.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Union

from lane_manager.config import LaneConfig

RECENT_LIMIT = 16  # refusals / endings kept per lane for callers to look up by goal id


class HolderState(str, enum.Enum):
    STARTING = 'starting'      # forwarded, the driver has not accepted it yet
    ACTIVE = 'active'          # the driver accepted it and is running it
    CANCELLING = 'cancelling'  # a cancel was sent to the driver; waiting for it to end


@dataclass(frozen=True)
class GoalRequest:
    goal_id: str
    skill: str
    lane: str
    priority: int
    submitted_at: float


@dataclass
class Holder:
    goal: GoalRequest
    since: float
    state: HolderState = HolderState.STARTING
    cancel_reason: Optional[str] = None
    driver: Optional[str] = None
    driver_goal_id: Optional[str] = None


@dataclass
class Occupant:
    """Something besides the holder that keeps a lane held, on a driver's word (or lack)."""

    origin: str                 # 'lane_manager' (end unconfirmed) | 'adopted' | 'external'
    why: str                    # | 'unknown' (a driver's status is not known yet)
    since: float
    driver: Optional[str] = None
    driver_goal_id: Optional[str] = None
    skill: Optional[str] = None


# Effects: what the node must do after an event.
@dataclass(frozen=True)
class StartGoal:
    """Forward this goal to its driver: it now holds its lane."""

    goal_id: str


@dataclass(frozen=True)
class CancelAtDriver:
    """Ask the driver to cancel this goal (it still holds the lane until the driver ends it)."""

    goal_id: str
    reason: str


@dataclass(frozen=True)
class EndWithoutDriver:
    """End this goal towards its caller; the driver is not (or no longer) involved."""

    goal_id: str
    outcome: str  # 'canceled' or 'aborted'
    reason: str


Effect = Union[StartGoal, CancelAtDriver, EndWithoutDriver]


@dataclass(frozen=True)
class Decision:
    """The answer to a goal asking for its lane."""

    accepted: bool
    effects: tuple[Effect, ...] = ()
    queued_position: Optional[int] = None  # 0 = next to start; None = starts now or refused
    reason: Optional[str] = None           # why it was refused (or why it waits)
    retry_after_ms: Optional[int] = None


@dataclass
class LaneCounters:
    submitted: int = 0
    started: int = 0
    queued: int = 0
    rejected: int = 0
    preempted: int = 0
    succeeded: int = 0
    aborted: int = 0
    canceled: int = 0
    hold_timeouts: int = 0
    operator_releases: int = 0
    adopted: int = 0
    external: int = 0


@dataclass
class Lane:
    name: str
    config: LaneConfig
    holder: Optional[Holder] = None
    queue: list[GoalRequest] = field(default_factory=list)
    occupants: dict[str, Occupant] = field(default_factory=dict)
    counters: LaneCounters = field(default_factory=LaneCounters)
    refusals: deque = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))
    endings: deque = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    def enqueue(self, goal: GoalRequest) -> int:
        """Insert by priority (higher first), FIFO within a priority. Returns the position."""
        position = len(self.queue)
        for index, waiting in enumerate(self.queue):
            if goal.priority > waiting.priority:
                position = index
                break
        self.queue.insert(position, goal)
        return position


class Arbiter:
    """All lanes of one lane manager. Not thread-safe: the node serializes calls."""

    def __init__(self, lanes: dict[str, LaneConfig]) -> None:
        self.lanes: dict[str, Lane] = {name: Lane(name, cfg) for name, cfg in lanes.items()}
        self._lane_of_goal: dict[str, str] = {}

    # ----------------------------------------------------------------- events
    def submit(self, goal_id: str, skill: str, lane_name: str, priority: int,
               now: float) -> Decision:
        """A goal asks for its lane. Accept (start now or queue), or refuse with a reason."""
        lane = self.lanes[lane_name]
        lane.counters.submitted += 1
        goal = GoalRequest(goal_id, skill, lane_name, priority, now)
        if goal_id in self._lane_of_goal:
            return self._refuse(lane, goal, now, f'goal id {goal_id} is already known')
        holder = lane.holder
        if holder is None and not lane.occupants:
            return Decision(True, self._start(lane, goal, now))
        policy = lane.config.policy
        if policy == 'reject':
            return self._refuse(lane, goal, now, self._held_text(lane))
        if len(lane.queue) >= lane.config.max_queue:
            return self._refuse(
                lane, goal, now,
                f'{self._held_text(lane)} and its queue is full '
                f'({lane.config.max_queue} waiting)')
        position = lane.enqueue(goal)
        self._lane_of_goal[goal_id] = lane_name
        lane.counters.queued += 1
        effects: tuple[Effect, ...] = ()
        if (policy == 'preempt' and holder is not None and priority > holder.goal.priority
                and holder.state is not HolderState.CANCELLING):
            reason = (f'preempted by skill {skill!r} goal {goal_id} '
                      f'(priority {priority} > {holder.goal.priority})')
            lane.counters.preempted += 1
            effects = (self._begin_cancel(lane, holder, now, reason),)
        return Decision(True, effects, queued_position=position,
                        reason=f'queued behind {self._held_text(lane)}')

    def driver_accepted(self, goal_id: str) -> None:
        """The driver accepted the forwarded goal."""
        holder = self._holder_of(goal_id)
        if holder is not None and holder.state is HolderState.STARTING:
            holder.state = HolderState.ACTIVE

    def goal_ended(self, goal_id: str, outcome: str, now: float,
                   reason: Optional[str] = None, driver_result: bool = False) -> list[Effect]:
        """The goal is over towards its caller (result, driver refusal, given up).

        outcome: 'succeeded', 'aborted' or 'canceled'. Ends the holding; the next goal starts
        only if nothing else occupies the lane (the keeper occupies it first when the driver
        has not confirmed the end). A goal still queued just leaves the queue.
        driver_result: the driver gave a result (else the caller gets none: `result: null`).
        """
        lane_name = self._lane_of_goal.get(goal_id)
        if lane_name is None:
            return []
        lane = self.lanes[lane_name]
        holder = lane.holder
        if holder is not None and holder.goal.goal_id == goal_id:
            if reason is None and holder.cancel_reason and outcome != 'succeeded':
                reason = holder.cancel_reason
            self._record_end(lane, holder.goal, outcome, reason, now, driver_result)
            lane.holder = None
            return self._start_next(lane, now)
        goal = self._remove_queued(lane, goal_id)
        if goal is not None:
            self._record_end(lane, goal, outcome, reason, now, driver_result)
        return []

    def set_driver(self, goal_id: str, driver: str, driver_goal_id: str) -> None:
        """Which driver and driver goal id the holder was forwarded as (for lane state)."""
        holder = self._holder_of(goal_id)
        if holder is not None:
            holder.driver, holder.driver_goal_id = driver, driver_goal_id

    def occupy(self, lane_name: str, key: str, occupant: Occupant) -> None:
        """Something a driver reports (or may still run) holds the lane besides the holder."""
        lane = self.lanes[lane_name]
        if key not in lane.occupants and occupant.origin in ('adopted', 'external'):
            setattr(lane.counters, occupant.origin,
                    getattr(lane.counters, occupant.origin) + 1)
        lane.occupants[key] = occupant

    def vacate(self, lane_name: str, key: str, now: float) -> list[Effect]:
        """The driver confirmed it: that occupant is gone. Starts the next goal if free."""
        self.lanes[lane_name].occupants.pop(key, None)
        return self.start_if_free(lane_name, now)

    def start_if_free(self, lane_name: str, now: float) -> list[Effect]:
        lane = self.lanes[lane_name]
        return [] if lane.holder is not None else self._start_next(lane, now)

    def record_operator_release(self, lane_name: str, what: str, now: float) -> None:
        lane = self.lanes[lane_name]
        lane.counters.operator_releases += 1
        lane.endings.append({'goal_id': what, 'skill': None, 'outcome': 'released',
                             'reason': 'released by an operator', 'driver_result': False,
                             'at': now})

    def queued(self, lane_name: str) -> list[str]:
        return [g.goal_id for g in self.lanes[lane_name].queue]

    def cancel(self, goal_id: str, now: float,
               reason: str = 'canceled by its caller') -> list[Effect]:
        """A caller cancels its goal. Queued: removed at once. Holding: cancelled at driver."""
        lane_name = self._lane_of_goal.get(goal_id)
        if lane_name is None:
            return []
        lane = self.lanes[lane_name]
        holder = lane.holder
        if holder is not None and holder.goal.goal_id == goal_id:
            if holder.state is HolderState.CANCELLING:
                return []
            return [self._begin_cancel(lane, holder, now, reason)]
        goal = self._remove_queued(lane, goal_id)
        if goal is None:
            return []
        self._record_end(lane, goal, 'canceled', reason, now)
        return [EndWithoutDriver(goal_id, 'canceled', reason)]

    def tick(self, now: float) -> list[Effect]:
        """Time passes: enforce max_hold_s (a cancel; the lane frees only when the driver ends
        the goal, never by a timeout). Call it a few times a second."""
        effects: list[Effect] = []
        for lane in self.lanes.values():
            holder = lane.holder
            if holder is None or holder.state is HolderState.CANCELLING:
                continue
            if (lane.config.max_hold_s is not None
                    and now - holder.since >= lane.config.max_hold_s):
                lane.counters.hold_timeouts += 1
                reason = (f'held lane {lane.name!r} longer than '
                          f'max_hold_s={lane.config.max_hold_s:g}')
                effects.append(self._begin_cancel(lane, holder, now, reason))
        return effects

    # ---------------------------------------------------------------- queries
    def lane_of(self, goal_id: str) -> Optional[str]:
        return self._lane_of_goal.get(goal_id)

    def is_holder(self, goal_id: str) -> bool:
        return self._holder_of(goal_id) is not None

    def active_goals(self) -> list[str]:
        """Goals that hold a lane (forwarded to a driver, or about to be)."""
        return [lane.holder.goal.goal_id for lane in self.lanes.values() if lane.holder]

    def snapshot(self, now: float, wall_offset: float = 0.0) -> dict:
        """JSON-ready state of every lane (the lane state topic's `lanes` field).

        `now` is the arbiter's clock (the node uses a monotonic one, immune to clock jumps);
        wall_offset is added to every time stamp so other processes can read them.
        """
        return {name: self._lane_snapshot(lane, now, wall_offset)
                for name, lane in self.lanes.items()}

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by the tests)."""
        tracked = set()
        for lane in self.lanes.values():
            ids = [g.goal_id for g in lane.queue]
            if lane.holder is not None:
                ids.append(lane.holder.goal.goal_id)
                assert lane.holder.goal.lane == lane.name
            assert len(ids) == len(set(ids)), f'duplicate goal in lane {lane.name}'
            assert len(lane.queue) <= lane.config.max_queue, f'lane {lane.name} over max_queue'
            if lane.config.policy == 'reject':
                assert not lane.queue, f'reject lane {lane.name} has a queue'
            if lane.holder is None and not lane.occupants:
                assert not lane.queue, f'lane {lane.name} is free but has a queue'
            priorities = [g.priority for g in lane.queue]
            assert priorities == sorted(priorities, reverse=True), 'queue not in priority order'
            tracked.update(ids)
        assert tracked == set(self._lane_of_goal), 'goal index out of sync'

    # ---------------------------------------------------------------- helpers
    def _start(self, lane: Lane, goal: GoalRequest, now: float) -> tuple[Effect, ...]:
        lane.holder = Holder(goal, since=now)
        lane.counters.started += 1
        self._lane_of_goal[goal.goal_id] = lane.name
        return (StartGoal(goal.goal_id),)

    def _start_next(self, lane: Lane, now: float) -> list[Effect]:
        if not lane.queue or lane.holder is not None or lane.occupants:
            return []
        goal = lane.queue.pop(0)
        return list(self._start(lane, goal, now))

    def _begin_cancel(self, lane: Lane, holder: Holder, now: float,
                      reason: str) -> CancelAtDriver:
        holder.state = HolderState.CANCELLING
        holder.cancel_reason = reason
        return CancelAtDriver(holder.goal.goal_id, reason)

    def _refuse(self, lane: Lane, goal: GoalRequest, now: float, reason: str) -> Decision:
        lane.counters.rejected += 1
        retry = lane.config.retry_after_ms
        holder = lane.holder
        lane.refusals.append({
            'goal_id': goal.goal_id, 'skill': goal.skill, 'reason': reason,
            'retry_after_ms': retry, 'at': now,
            'holder': ({'skill': holder.goal.skill, 'goal_id': holder.goal.goal_id}
                       if holder else None),
            'held_because': self.held_because(lane),
        })
        return Decision(False, reason=reason, retry_after_ms=retry)

    def _remove_queued(self, lane: Lane, goal_id: str) -> Optional[GoalRequest]:
        for index, goal in enumerate(lane.queue):
            if goal.goal_id == goal_id:
                del lane.queue[index]
                self._lane_of_goal.pop(goal_id, None)
                return goal
        return None

    def _record_end(self, lane: Lane, goal: GoalRequest, outcome: str,
                    reason: Optional[str], now: float, driver_result: bool = False) -> None:
        self._lane_of_goal.pop(goal.goal_id, None)
        if outcome in ('succeeded', 'aborted', 'canceled'):
            setattr(lane.counters, outcome, getattr(lane.counters, outcome) + 1)
        lane.endings.append({'goal_id': goal.goal_id, 'skill': goal.skill,
                             'outcome': outcome, 'reason': reason,
                             'driver_result': driver_result, 'at': now})

    def _holder_of(self, goal_id: str) -> Optional[Holder]:
        lane_name = self._lane_of_goal.get(goal_id)
        if lane_name is None:
            return None
        holder = self.lanes[lane_name].holder
        return holder if holder is not None and holder.goal.goal_id == goal_id else None

    @staticmethod
    def held_because(lane: Lane) -> Optional[str]:
        """Why the lane is held besides its holder (None: only by its holder, or free)."""
        if not lane.occupants:
            return None
        return '; '.join(o.why for o in lane.occupants.values())

    @classmethod
    def _held_text(cls, lane: Lane) -> str:
        holder = lane.holder
        if holder is not None:
            text = (f'lane {lane.name!r} is held by skill {holder.goal.skill!r} '
                    f'goal {holder.goal.goal_id}')
            because = cls.held_because(lane)
            return f'{text} (and: {because})' if because else text
        return f'lane {lane.name!r} is held: {cls.held_because(lane)}'

    @classmethod
    def _lane_snapshot(cls, lane: Lane, now: float, wall_offset: float) -> dict:
        holder = lane.holder

        def stamped(record: dict) -> dict:
            return {**record, 'at': round(record['at'] + wall_offset, 3)}

        return {
            'policy': lane.config.policy,
            'holder': {
                'goal_id': holder.goal.goal_id, 'skill': holder.goal.skill,
                'priority': holder.goal.priority, 'state': holder.state.value,
                'since': round(holder.since + wall_offset, 3),
                'held_s': round(now - holder.since, 3),
                'cancel_reason': holder.cancel_reason, 'origin': 'lane_manager',
                'driver': holder.driver, 'driver_goal_id': holder.driver_goal_id,
            } if holder is not None else cls._occupant_as_holder(lane, now, wall_offset),
            'held_because': cls.held_because(lane),
            'occupants': [{'origin': o.origin, 'why': o.why, 'driver': o.driver,
                           'driver_goal_id': o.driver_goal_id, 'skill': o.skill,
                           'since': round(o.since + wall_offset, 3)}
                          for o in lane.occupants.values()],
            'queue': [{'goal_id': g.goal_id, 'skill': g.skill, 'priority': g.priority,
                       'since': round(g.submitted_at + wall_offset, 3)} for g in lane.queue],
            'last_refusals': [stamped(r) for r in lane.refusals],
            'last_endings': [stamped(e) for e in lane.endings],
            'counters': vars(lane.counters).copy(),
            'retry_after_ms': lane.config.retry_after_ms,
            'max_queue': lane.config.max_queue,
            'max_hold_s': lane.config.max_hold_s,
        }

    @staticmethod
    def _occupant_as_holder(lane: Lane, now: float, wall_offset: float) -> Optional[dict]:
        """A lane held only by a goal the drivers report (adopted/external) shows it as its
        holder, so a reader of `holder` alone never takes such a lane for free."""
        for occupant in lane.occupants.values():
            if occupant.driver_goal_id is None:
                continue
            return {'goal_id': occupant.driver_goal_id, 'skill': occupant.skill,
                    'priority': None, 'state': 'active' if occupant.origin != 'lane_manager'
                    else 'ended_unconfirmed',
                    'since': round(occupant.since + wall_offset, 3),
                    'held_s': round(now - occupant.since, 3), 'cancel_reason': None,
                    'origin': occupant.origin, 'driver': occupant.driver,
                    'driver_goal_id': occupant.driver_goal_id}
        return None

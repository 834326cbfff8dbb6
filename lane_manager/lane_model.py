"""The arbiter's vocabulary: goals, holders, occupants, lanes, effects.

Pure Python; lane_manager/arbiter.py holds the rules that use them.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from skill_lanes.config import LaneConfig
from lane_manager.effects import (CancelAtDriver, Effect, EndWithoutDriver,  # noqa: F401
                                  StartGoal)

RECENT_LIMIT = 16  # refusals / endings kept per lane for callers to look up by goal id


class HolderState(str, enum.Enum):
    STARTING = 'starting'      # forwarded, the driver has not accepted it yet
    ACTIVE = 'active'          # the driver accepted it and is running it
    CANCELLING = 'cancelling'  # a cancel was sent to the driver; waiting for it to end


@dataclass(frozen=True)
class GoalRequest:
    goal_id: str
    skill: str
    lane: str                     # the first (for a single-lane skill: the only) lane
    priority: int
    submitted_at: float
    lanes: tuple[str, ...] = ()   # every lane of a multi-lane skill (empty: just `lane`)

    @property
    def all_lanes(self) -> tuple[str, ...]:
        return self.lanes or (self.lane,)


@dataclass(frozen=True)
class Awaiting:
    """A goal of an approval skill, accepted and waiting for an operator's decision.

    It holds and reserves nothing (it is in no queue): other goals of its lanes run meanwhile.
    """

    goal: GoalRequest
    timeout_s: float  # approval_timeout_s: not decided by then, it ends aborted

    @property
    def deadline(self) -> float:
        return self.goal.submitted_at + self.timeout_s


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




@dataclass(frozen=True)
class Decision:
    """The answer to a goal asking for its lane."""

    accepted: bool
    effects: tuple[Effect, ...] = ()
    queued_position: Optional[int] = None  # 0 = next to start; None = starts now or refused
    reason: Optional[str] = None           # why it was refused (or why it waits)
    retry_after_ms: Optional[int] = None
    awaiting_approval: bool = False        # accepted, waiting for an operator's decision


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
    approved: int = 0
    denied: int = 0
    approval_timeouts: int = 0


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
    # Why the lane refuses every goal ('emergency_stop' | 'operator' -> text); empty: open.
    blocked: dict[str, str] = field(default_factory=dict)
    # Goals awaiting an operator's approval, oldest first (not in `queue`: they hold nothing).
    awaiting: list[Awaiting] = field(default_factory=list)
    # Every decision on such a goal: goal_id, skill, decision (approved | denied |
    # timed_out), by, at.
    approvals: deque = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    def enqueue(self, goal: GoalRequest) -> int:
        """Insert by priority (higher first), FIFO within a priority. Returns the position."""
        position = len(self.queue)
        for index, waiting in enumerate(self.queue):
            if goal.priority > waiting.priority:
                position = index
                break
        self.queue.insert(position, goal)
        return position

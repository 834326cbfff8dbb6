"""Every effect the pure core hands back, in one place: what the lane manager node must do.

Three layers emit them, each keyed by the id it knows:

- the arbiter (arbiter.py): `StartGoal`, `CancelAtDriver`, `EndWithoutDriver`, keyed by the
  caller's goal id; the keeper turns them into lifecycle events;
- one goal at one driver (goal_lifecycle.py): `SendToDriver`, `CancelGoalAtDriver`,
  `EndCaller`, `DriverEnded`, keyed by the driver goal id (and the caller's); the keeper
  passes the first three on to the node, and `DriverEnded` frees the goal's lanes in the
  arbiter;
- the keeper (keeper.py): `Started`, `Notice`, keyed by the caller's goal id.

The node carries out what reaches it: send, cancel, end the caller's goal, move it to
EXECUTING, log.

Why two ids: the arbiter decides about callers' goals; a goal at a driver is sent under an id
the lane manager chose (kept until the driver confirms the end), and goals the lane manager
never sent (adopted, external) have only the driver's id. How a goal ends is spelled by
`goal_outcome.Outcome`. Pure Python, no ROS import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

# ----------------------------------------------------------- the arbiter's
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


# ----------------------------------------------------------- a goal lifecycle's
@dataclass(frozen=True)
class SendToDriver:
    """Send the caller's goal to its driver under `driver_goal_id` (chosen here, kept)."""

    caller_goal_id: str
    driver_goal_id: str


@dataclass(frozen=True)
class CancelGoalAtDriver:
    """Ask the driver (its cancel service) to cancel this goal id."""

    driver: str
    driver_goal_id: str
    reason: str


@dataclass(frozen=True)
class EndCaller:
    """End the caller's goal. `result` is the driver's Result, or None: the driver gave none
    (the caller must not be told an invented default one).
    """

    caller_goal_id: str
    outcome: str  # 'succeeded' | 'aborted' | 'canceled'
    reason: Optional[str]
    result: Any = None
    driver_result: bool = False


@dataclass(frozen=True)
class DriverEnded:
    """The driver's own status says the goal is over while its caller still waits for the
    Result (which rclpy and rclcpp send just after the status): the goal's lanes are free
    now, on the driver's word; the caller's end follows with the Result.
    """

    caller_goal_id: str
    outcome: str
    reason: Optional[str]


Action = Union[SendToDriver, CancelGoalAtDriver, EndCaller, DriverEnded]


# ----------------------------------------------------------- the keeper's own
@dataclass(frozen=True)
class Started:
    """The caller's goal now holds its lane (or, unlaned, runs): it is EXECUTING."""

    caller_goal_id: str


@dataclass(frozen=True)
class Notice:
    """Something an operator should read in the log (level: 'info' | 'warn' | 'error')."""

    level: str
    text: str

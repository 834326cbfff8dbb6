"""How a goal ends, in one vocabulary every module shares (no ROS import).

- `GoalStatusCode`: the action protocol's goal states (action_msgs/msg/GoalStatus), as the
  drivers report them in `_action/status` and in result answers. The values are fixed by the
  protocol; test/test_goal_outcome.py checks them against the installed action_msgs.
- `Outcome`: what a caller is told a goal ended as. A `str` enum, so it compares equal to
  (and serializes as) the plain strings the lane state and the MCP answers carry.
- `outcome_of_status`: the one map from a driver's terminal status to an `Outcome`.
"""
from __future__ import annotations

import enum
from typing import Optional


class GoalStatusCode(enum.IntEnum):
    UNKNOWN = 0
    ACCEPTED = 1
    EXECUTING = 2
    CANCELING = 3
    SUCCEEDED = 4
    CANCELED = 5
    ABORTED = 6


# A driver reporting one of these still runs the goal (or may: CANCELING is not over).
ACTIVE_STATUSES = frozenset({GoalStatusCode.ACCEPTED, GoalStatusCode.EXECUTING,
                             GoalStatusCode.CANCELING})


class Outcome(str, enum.Enum):
    SUCCEEDED = 'succeeded'
    ABORTED = 'aborted'
    CANCELED = 'canceled'
    RELEASED = 'released'  # an operator released a goal whose end no driver confirmed

    def __str__(self) -> str:  # f-strings and logs show 'aborted', not 'Outcome.ABORTED'
        return self.value


_TERMINAL = {GoalStatusCode.SUCCEEDED: Outcome.SUCCEEDED,
             GoalStatusCode.CANCELED: Outcome.CANCELED,
             GoalStatusCode.ABORTED: Outcome.ABORTED}
TERMINAL_STATUSES = frozenset(_TERMINAL)
# What a caller can be told by a driver (RELEASED is the lane manager's own word).
CALLER_OUTCOMES = tuple(_TERMINAL.values())


class EndedHow(str, enum.Enum):
    """How the lane manager learnt that a goal at a driver is over (the keeper remembers it
    per driver goal id, to read a later report of that id: a late status of a goal that gave
    its result is stale; a goal reported again after its driver left runs again).
    """

    RESULT = 'result'          # the driver said so: its result, status or cancel answer
    GONE = 'gone'              # its driver left the graph (or restarted and forgot it)
    RELEASED = 'released'      # an operator released it: its reports are ignored from then
    NEVER_SENT = 'never_sent'  # it never reached the driver (driver absent)


def outcome_of_status(code: int) -> Optional[Outcome]:
    """The outcome a terminal status means; None for a status that is not an end."""
    return _TERMINAL.get(code)  # type: ignore[call-overload]

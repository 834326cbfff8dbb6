"""The caller side of the lane manager: its goals' ROS handles, and the action server that
lets the goal callback learn a goal's id (`GoalIdActionServer`, which reads rclpy internals
and so lives in rclpy_compat.py).

Split from node.py so the node stays a translator; no decisions live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rclpy.action.server import ServerGoalHandle
from rclpy.task import Future

from skill_lanes.goal_ids import goal_id_msg, goal_id_text  # noqa: F401 - re-exported
from skill_lanes.rclpy_compat import GoalIdActionServer

__all__ = ['CallerEnd', 'CallerGoal', 'GoalIdActionServer', 'goal_id_msg', 'goal_id_text']


@dataclass
class CallerEnd:
    """How a goal ended towards its caller (its status is a goal_outcome.Outcome)."""

    status: str                      # 'succeeded' | 'aborted' | 'canceled'
    result: Any = None               # the driver's Result message, or None: it gave none
    reason: Optional[str] = None


class CallerGoal:
    """The ROS handles of one caller's goal. Its lifecycle lives in the keeper."""

    def __init__(self, goal_id: str, skill: str, goal: Any, big: bool = False) -> None:
        self.goal_id = goal_id
        self.skill = skill
        self.goal = goal
        self.big = big  # sent from its lane's own thread (lane_manager/goal_intake.py)
        self.goal_handle: Optional[ServerGoalHandle] = None
        self.finished: Future = Future()
        self.executing = False           # goal_handle.execute() called (or due once it exists)
        self.caller_canceled = False

    @property
    def done(self) -> bool:
        return self.finished.done()

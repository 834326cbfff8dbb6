"""The caller side of the lane manager: its goals' ROS handles, and the action server that
lets the goal callback learn a goal's id (`GoalIdActionServer`, which reads rclpy internals
and so lives in rclpy_compat.py).

Split from node.py so the node stays a translator; no decisions live here.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Optional

from rclpy.action.server import ServerGoalHandle
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID

from lane_manager.rclpy_compat import GoalIdActionServer

__all__ = ['CallerEnd', 'CallerGoal', 'GoalIdActionServer', 'goal_id_msg', 'goal_id_text']


def goal_id_text(uuid_msg: Any) -> str:
    """The goal id as the canonical UUID string, the same in every process."""
    return str(uuid.UUID(bytes=bytes(uuid_msg.uuid)))


def goal_id_msg(goal_id: str | uuid.UUID) -> UUID:
    """The goal id (text or uuid.UUID) as the unique_identifier_msgs/UUID the action
    protocol carries: the inverse of goal_id_text.
    """
    value = goal_id if isinstance(goal_id, uuid.UUID) else uuid.UUID(goal_id)
    return UUID(uuid=list(value.bytes))


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

"""A connection to one action server that can tell when the server has died.

A process killed with SIGKILL stays on the DDS graph for about 20 s (the participant lease),
so `server_is_ready()` alone notices a crash far too late for a robot. The probe here uses
only the standard action protocol, so it works against any driver, rclcpp or rclpy.
"""
from __future__ import annotations

import uuid
from typing import Any, Optional

from action_msgs.srv import CancelGoal
from rclpy.node import Node
from rclpy.task import Future

# RaceFreeActionClient touches rclpy internals: it lives with the others in rclpy_compat.
from skill_lanes.rclpy_compat import RaceFreeActionClient
from skill_lanes.statusless_client import StatuslessActionClient

__all__ = ['ActionServerLink', 'RaceFreeActionClient']

PROBE_PERIOD_S = 0.5


class ActionServerLink:
    """An action client plus a liveness probe of the server behind it.

    Used by the lane manager for each driver and by the gateway for the lane manager. The
    probe asks the server's cancel service to cancel a random, unknown goal id: a live
    action server answers at once (ERROR_UNKNOWN_GOAL_ID) and nothing is cancelled. A process
    killed with SIGKILL stays "on the graph" until DDS notices (about 20 s); an unanswered
    probe notices it within driver_lost_s.
    """

    def __init__(self, node: Node, action_type: Any, name: str, group,
                 statusless: bool = False) -> None:
        """statusless: a StatuslessActionClient (for a node that follows the server's status
        itself, as the lane manager does); else rclpy's ActionClient, whose goal handles
        track their status.
        """
        self.name = name
        self.client: Any
        if statusless:
            self.client = StatuslessActionClient(node, action_type, name, callback_group=group)
            self.cancel_service = self.client.cancel_service
        else:
            self.client = RaceFreeActionClient(node, action_type, name, callback_group=group)
            self.cancel_service = node.create_client(
                CancelGoal, f'{name}/_action/cancel_goal', callback_group=group)
        self.probe_sent_at: Optional[float] = None
        self.probe_future: Optional[Future] = None
        self._answer_noted = False  # a probe was answered since take_answer last looked

    def is_on_graph(self) -> bool:
        return self.client.server_is_ready()

    def probe(self, now: float, lost_after_s: float) -> bool:
        """Send or check the liveness probe. False once a probe went unanswered too long:
        that probe is given up (it went to a process that may be gone for good), so the next
        call sends a fresh one and a server restarted under the same name is heard again.
        """
        if self.probe_future is not None:
            if self.probe_future.done():
                self.probe_future = None
            elif now - (self.probe_sent_at or now) >= lost_after_s:
                self.reset_probe()
                return False
            else:
                return True
        if self.probe_future is None and (self.probe_sent_at is None
                                          or now - self.probe_sent_at >= PROBE_PERIOD_S):
            request = CancelGoal.Request()
            request.goal_info.goal_id.uuid = list(uuid.uuid4().bytes)
            self.probe_sent_at = now
            self.probe_future = self.cancel_service.call_async(request)
            self.probe_future.add_done_callback(self._on_answer)
        return True

    def _on_answer(self, _future: Future) -> None:
        self._answer_noted = True

    def take_answer(self) -> bool:
        """Whether a probe was answered since the last call (what an answer means is for
        the caller: lane_manager/driver_presence.py).
        """
        answered, self._answer_noted = self._answer_noted, False
        return answered

    def forget(self) -> None:
        """Drop the probe in flight and any answer not taken yet: the server left the graph."""
        self._answer_noted = False
        self.reset_probe()

    def reset_probe(self) -> None:
        self.probe_future = None
        self.probe_sent_at = None

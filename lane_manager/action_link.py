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
from lane_manager.rclpy_compat import RaceFreeActionClient
from lane_manager.statusless_client import StatuslessActionClient

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
        # The server has answered us at least once since it (re)appeared: it has discovered
        # our response readers, so a goal sent now will not lose its answer.
        self.answered = False

    def is_on_graph(self) -> bool:
        return self.client.server_is_ready()

    def probe(self, now: float, lost_after_s: float) -> bool:
        """Send or check the liveness probe. False once a probe went unanswered too long."""
        if self.probe_future is not None:
            if self.probe_future.done():
                self.probe_future = None
            elif now - (self.probe_sent_at or now) >= lost_after_s:
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
        self.answered = True

    def ready_for_goals(self, now: float) -> bool:
        """True once the server has answered a probe; until then, probe it.

        Seeing a server on the graph is not enough: until it has discovered our readers, its
        answer to a goal is dropped and the goal runs unseen (seen with freshly started
        drivers). Costs one probe round trip on the first goal after the server appears.
        """
        if not self.answered:
            self.probe(now, float('inf'))
        return self.answered

    def forget(self) -> None:
        """The server left the graph: it must answer again before the next goal."""
        self.answered = False
        self.reset_probe()

    def reset_probe(self) -> None:
        self.probe_future = None
        self.probe_sent_at = None

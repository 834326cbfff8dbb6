"""A connection to one action server that can tell when the server has died.

A process killed with SIGKILL stays on the DDS graph for about 20 s (the participant lease),
so `server_is_ready()` alone notices a crash far too late for a robot. The probe here uses
only the standard action protocol, so it works against any driver, rclcpp or rclpy.
"""
from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any, Optional

from action_msgs.srv import CancelGoal
import rclpy.logging
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.task import Future

from lane_manager.statusless_client import StatuslessActionClient

PROBE_PERIOD_S = 0.5


# What RaceFreeActionClient.send_goal_async touches inside rclpy's ActionClient. Present in
# rclpy 7.1 (Jazzy) and 9.1 (Kilted); checked on each client, not assumed.
_CLIENT_INTERNALS = ('_client_handle', '_pending_goal_requests',
                     '_goal_sequence_number_to_goal_id', '_feedback_callbacks',
                     '_remove_pending_goal_request', '_generate_random_uuid', 'add_future')


class RaceFreeActionClient(ActionClient):
    """rclpy's ActionClient whose goal response always reaches the returned future.

    rclpy 9.1 (Kilted) registers the goal-response future under its lock, then replaces it,
    outside the lock, with a second future that it returns (ros2/rclpy#1123); rclpy 7.1
    (Jazzy) has no lock and registers the future only after sending. Either way, when another
    executor thread takes the response first, it is dropped or set on the wrong future: the
    goal runs but its sender never learns it was accepted. Feedback registered after sending
    can be lost the same way.

    Here the feedback callback and the one future are registered before anyone can handle the
    response: sending and registering happen under `_send_lock`, and `execute` passes that
    lock before it handles a goal response. rclpy's own `_lock` is taken too where the
    installed rclpy has one. If the installed rclpy lacks an internal this relies on
    (`_CLIENT_INTERNALS`), the stock `send_goal_async` is used and a warning says so.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # rclpy 9.1 adds the client to its node's waitables before it creates `_lock`, which
        # `get_num_entities` takes: an executor spinning in another thread meanwhile raises
        # AttributeError (seen in the benchmark). A lock from the start closes that window.
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        missing = [name for name in _CLIENT_INTERNALS if not hasattr(self, name)]
        self.race_free = not missing
        if missing:
            rclpy.logging.get_logger('skill_lanes.action_link').warning(
                f'this rclpy ActionClient lacks {", ".join(missing)}: using its own '
                'send_goal_async, whose goal response can be lost under a multi-threaded '
                'executor')

    def send_goal_async(self, goal: Any, feedback_callback: Any = None,
                        goal_uuid: Any = None) -> Future:
        """Send a goal; the returned future gets the goal handle (see the class docstring)."""
        if not self.race_free:
            return super().send_goal_async(goal, feedback_callback, goal_uuid)
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError(f'expected {self._action_type.Goal}, got {type(goal)}')
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = self._generate_random_uuid() if goal_uuid is None else goal_uuid
        request.goal = goal
        if feedback_callback is not None:
            self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
        future: Future = Future()
        rclpy_lock = getattr(self, '_lock', None) or contextlib.nullcontext()
        with self._send_lock, rclpy_lock:
            sequence_number = self._client_handle.send_goal_request(request)
            if sequence_number in self._pending_goal_requests:
                raise RuntimeError(f'sequence {sequence_number} conflicts with a pending goal')
            self._pending_goal_requests[sequence_number] = future
            self._goal_sequence_number_to_goal_id[sequence_number] = request.goal_id
            future.add_done_callback(self._remove_pending_goal_request)
            self.add_future(future)
        return future

    async def execute(self, taken_data: Any) -> None:
        """Handle what the executor took; a goal response only once its sender registered."""
        if self.race_free and 'goal' in taken_data:
            with self._send_lock:
                pass  # the send that this response answers has registered its future
        await super().execute(taken_data)


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

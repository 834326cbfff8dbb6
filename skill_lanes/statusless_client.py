"""An action client without a status subscription, from rclpy's public API only.

Why the lane manager does not use rclpy's `ActionClient` for its drivers: that client takes
every status message of its server and converts the whole list to Python objects. An action
server lists every goal that finished within its result timeout (15 min in rclcpp and in
rclpy 7 on Jazzy, 10 s in rclpy 9 on Kilted), so a busy driver's status message carries
hundreds of entries, three messages per goal.
Profiled under `bench/bench_lane_manager.py`, that conversion was 56% of the lane manager's
main thread, paid exactly when a goal is answered and when it ends (round trip ratio 1.66 ->
1.44-1.52 without it). The lane manager follows each driver's status itself, as raw CDR, on a
thread of its own (`status_wire.py`).

An action is three services and two topics (`<name>/_action/send_goal`, `get_result`,
`cancel_goal`, `feedback`, `status`); this client uses the first four with the QoS rclpy's
ActionClient uses. rclpy's service `Client` registers a request's future under the lock its
response handling takes, so a goal response can never miss its future (the race that
`RaceFreeActionClient` works around inside rclpy's ActionClient), on Jazzy and Kilted alike.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_services_default
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID

FEEDBACK_QOS = QoSProfile(depth=10)  # rclpy ActionClient's default feedback_sub_qos_profile


class StatuslessGoalHandle:
    """What `send_goal_async`'s future yields: the server's answer to one goal request,
    with the calls rclpy's ClientGoalHandle offers for it.
    """

    def __init__(self, client: 'StatuslessActionClient', goal_id: UUID, response: Any) -> None:
        self.goal_id = goal_id
        self.accepted = bool(response.accepted)
        self.stamp = response.stamp
        self._client = client

    def get_result_async(self) -> Future:
        """The server's GetResult response (`status`, `result`)."""
        return self._client.get_result_async(self.goal_id)

    def cancel_goal_async(self) -> Future:
        """The server's CancelGoal response."""
        return self._client.cancel_goal_async(self.goal_id)


class StatuslessActionClient:
    """Send goals, get results, cancel and receive feedback of one action server."""

    def __init__(self, node: Node, action_type: Any, name: str, callback_group: Any = None
                 ) -> None:
        impl = action_type.Impl
        self._action_type = action_type
        self.name = name
        self._send_goal = node.create_client(
            impl.SendGoalService, f'{name}/_action/send_goal',
            qos_profile=qos_profile_services_default, callback_group=callback_group)
        self._get_result = node.create_client(
            impl.GetResultService, f'{name}/_action/get_result',
            qos_profile=qos_profile_services_default, callback_group=callback_group)
        self._cancel_goal = node.create_client(
            impl.CancelGoalService, f'{name}/_action/cancel_goal',
            qos_profile=qos_profile_services_default, callback_group=callback_group)
        self._feedback = node.create_subscription(
            impl.FeedbackMessage, f'{name}/_action/feedback', self._on_feedback, FEEDBACK_QOS,
            callback_group=callback_group)
        self._feedback_callbacks: dict[bytes, Callable[[Any], None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the action protocol
    def send_goal_async(self, goal: Any, feedback_callback: Optional[Callable[[Any], None]],
                        goal_uuid: UUID) -> Future:
        """Send a goal under `goal_uuid`; the future yields a StatuslessGoalHandle.

        Feedback (the whole FeedbackMessage, as rclpy passes it) goes to `feedback_callback`
        from before the request leaves until the goal's result has been received.
        """
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError(f'expected {self._action_type.Goal}, got {type(goal)}')
        key = bytes(goal_uuid.uuid)
        if feedback_callback is not None:
            with self._lock:
                self._feedback_callbacks[key] = feedback_callback
        request = self._send_goal.srv_type.Request()
        request.goal_id = goal_uuid
        request.goal = goal
        answer: Future = Future()

        def on_response(sent: Future) -> None:
            if sent.cancelled() or sent.exception() is not None:
                self.forget(key)
                answer.set_exception(sent.exception() or RuntimeError('goal request dropped'))
                return
            handle = StatuslessGoalHandle(self, goal_uuid, sent.result())
            if not handle.accepted:
                self.forget(key)
            answer.set_result(handle)

        self._send_goal.call_async(request).add_done_callback(on_response)
        return answer

    def get_result_async(self, goal_uuid: UUID) -> Future:
        request = self._get_result.srv_type.Request()
        request.goal_id = goal_uuid
        future = self._get_result.call_async(request)
        key = bytes(goal_uuid.uuid)
        future.add_done_callback(lambda _f: self.forget(key))
        return future

    def cancel_goal_async(self, goal_uuid: UUID) -> Future:
        request = self._cancel_goal.srv_type.Request()
        request.goal_info.goal_id = goal_uuid
        return self._cancel_goal.call_async(request)

    def forget(self, key: bytes) -> None:
        """No more feedback for this goal (uuid bytes)."""
        with self._lock:
            self._feedback_callbacks.pop(key, None)

    def _on_feedback(self, message: Any) -> None:
        with self._lock:
            callback = self._feedback_callbacks.get(bytes(message.goal_id.uuid))
        if callback is not None:
            callback(message)

    # ------------------------------------------------------------ the graph
    def server_is_ready(self) -> bool:
        """The server's three services and its feedback topic are there (what rclpy's
        `ActionClient.server_is_ready` checks, but for the status topic, followed elsewhere).
        """
        return (self._send_goal.service_is_ready() and self._get_result.service_is_ready()
                and self._cancel_goal.service_is_ready()
                and self._feedback.get_publisher_count() > 0)

    @property
    def cancel_service(self) -> Any:
        """The server's cancel service client (the liveness probe uses it too)."""
        return self._cancel_goal

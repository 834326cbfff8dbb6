"""A real rclpy client for the tests: action goals through the lane manager, plus the lane
state and simulated-driver stats topics. Its executor spins in a background thread; the test
thread waits on rclpy futures by polling them (never spinning inside a callback).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable, Optional

from rclpy.node import Node
from std_msgs.msg import String

from skill_lanes.action_link import RaceFreeActionClient as ActionClient
from skill_lanes.goal_ids import goal_id_msg
from skill_lanes.interfaces import LANE_STATE_QOS
from skill_lanes.runtime import BackgroundExecutor
from support import wait_until

_names = iter(range(10**6))


def wait_future(future, timeout: float, what: str):
    wait_until(future.done, timeout, interval=0.005, what=what)
    return future.result()


class GoalCall:
    """One goal sent to an action server, with its feedback counted."""

    def __init__(self, client: ActionClient, goal: Any) -> None:
        self.feedback_count = 0
        self.goal_id = uuid.uuid4()
        self._send = client.send_goal_async(
            goal, feedback_callback=self._on_feedback,
            goal_uuid=goal_id_msg(self.goal_id))
        self._handle = None
        self._result = None
        self.sent_at = time.monotonic()
        self.ended_at: Optional[float] = None

    @property
    def id(self) -> str:
        return str(self.goal_id)

    def _on_feedback(self, _msg) -> None:
        self.feedback_count += 1

    def accepted(self, timeout: float = 15.0) -> bool:
        self._handle = wait_future(self._send, timeout, 'goal response')
        return self._handle.accepted

    def result(self, timeout: float = 30.0):
        """(status, result message)."""
        if self._result is None:
            assert self.accepted(timeout), 'goal was rejected'
            self._result = self._handle.get_result_async()
        response = wait_future(self._result, timeout, 'goal result')
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return response.status, response.result

    def cancel(self, timeout: float = 15.0):
        assert self.accepted(timeout)
        return wait_future(self._handle.cancel_goal_async(), timeout, 'cancel response')


class RosTestClient:
    """A node in the test process; create it after rclpy.init (the rclpy_context fixture)."""

    def __init__(self, namespace: str = '/lane_manager') -> None:
        self.node = Node(f'test_client_{next(_names)}')
        self.namespace = namespace
        self._clients: dict[tuple[str, Any], ActionClient] = {}
        self._lock = threading.Lock()
        self.lane_state: Optional[dict] = None
        self.sim_stats: Optional[dict] = None
        self.node.create_subscription(String, f'{namespace}/lane_state', self._on_state,
                                      LANE_STATE_QOS)
        self.node.create_subscription(String, '/sim_driver/stats', self._on_stats,
                                      LANE_STATE_QOS)
        self._executor = BackgroundExecutor(self.node, num_threads=4)

    def _on_state(self, msg: String) -> None:
        self.lane_state = json.loads(msg.data)

    def _on_stats(self, msg: String) -> None:
        self.sim_stats = json.loads(msg.data)

    def client(self, skill: str, action_type: Any = None) -> ActionClient:
        if action_type is None:
            from test_msgs.action import Fibonacci
            action_type = Fibonacci
        key = (skill, action_type)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = ActionClient(
                    self.node, action_type, f'{self.namespace}/skills/{skill}')
        return self._clients[key]

    def wait_for_skills(self, *skills: str, timeout: float = 20.0,
                        drivers: bool = True) -> None:
        """Until the lane manager serves these skills, reaches their drivers (unless
        `drivers` is False), AND has discovered this node.

        Seeing the server is not enough: until the server has discovered our response
        readers too, its answer to a goal is dropped. Its lane state reaching us shows that
        discovery went both ways.
        """
        for skill in skills:
            client = self.client(skill)
            wait_until(client.server_is_ready, timeout, what=f'action server for {skill}')
        wait_until(lambda: self.lane_state is not None, timeout,
                   what='the lane state (the lane manager has discovered this client)')
        # The lane manager must reach each skill's driver too: a goal sent before it has
        # discovered the driver waits only driver_wait_s (1 s in the test configs) for it.
        if drivers:
            self.wait_state(lambda state: all(
                state['skills'].get(skill, {}).get('driver_available') for skill in skills),
                timeout, what=f'the lane manager to reach the drivers of {", ".join(skills)}')
        # And an answer from each skill's action server: it has discovered our readers.
        from action_msgs.srv import CancelGoal
        for skill in skills:
            probe = self.node.create_client(
                CancelGoal, f'{self.namespace}/skills/{skill}/_action/cancel_goal')
            try:
                def answered() -> bool:
                    request = CancelGoal.Request()
                    request.goal_info.goal_id.uuid = list(uuid.uuid4().bytes)
                    future = probe.call_async(request)
                    deadline = time.monotonic() + 1.0
                    while not future.done() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    return future.done()
                wait_until(answered, timeout, what=f'an answer from the {skill} server')
            finally:
                self.node.destroy_client(probe)

    def send(self, skill: str, goal: Any = None, action_type: Any = None) -> GoalCall:
        client = self.client(skill, action_type)
        if goal is None:
            goal = client._action_type.Goal()
        return GoalCall(client, goal)

    def wait_state(self, predicate: Callable[[dict], bool], timeout: float = 15.0,
                   what: str = 'lane state') -> dict:
        try:
            wait_until(lambda: self.lane_state is not None and predicate(self.lane_state),
                       timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f'{exc}; last lane state: {json.dumps(self.lane_state)}'
                                 ) from None
        return self.lane_state

    def wait_stats(self, predicate: Callable[[dict], bool], timeout: float = 15.0,
                   what: str = 'sim stats') -> dict:
        try:
            wait_until(lambda: self.sim_stats is not None and predicate(self.sim_stats),
                       timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f'{exc}; last sim stats: {json.dumps(self.sim_stats)}; '
                                 f'last lane state: {json.dumps(self.lane_state)}') from None
        return self.sim_stats

    def refusal(self, lane: str, goal_id: str, timeout: float = 5.0) -> dict:
        def find():
            state = self.lane_state or {}
            for record in state.get('lanes', {}).get(lane, {}).get('last_refusals', []):
                if record['goal_id'] == goal_id:
                    return record
            return None
        return wait_until(find, timeout, what=f'refusal of {goal_id} in lane state')

    def ending(self, lane: str, goal_id: str, timeout: float = 5.0) -> dict:
        def find():
            state = self.lane_state or {}
            for record in state.get('lanes', {}).get(lane, {}).get('last_endings', []):
                if record['goal_id'] == goal_id:
                    return record
            return None
        return wait_until(find, timeout, what=f'ending of {goal_id} in lane state')

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()

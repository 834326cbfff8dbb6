"""Where a lane's goals come in: a node and an executor thread of its own per lane.

Why: rclpy converts a goal request from its wire form to Python objects in the executor
that takes it, before any callback of ours runs: 1.3 s for a 150k-point trajectory. With
every skill server on the lane manager's one executor thread, one big goal stopped every
lane for that long. Each lane's skill servers now take their goals on the lane's own thread,
so a big goal holds up only its own lane (whose next goal would wait for it anyway).

Why not a MultiThreadedExecutor for the whole node instead: measured side by side, it made
the MCP round trip through the gateway 2-4x slower (p90 x3, bench/bench_gateway.py) while a
plain rclpy client barely noticed; single-threaded executors, one per lane, cost nothing
measurable there (README "Big goal arguments").

The relay to the drivers (their answers, results, feedback), the keeper's timers and the
operator services stay on the lane manager's own node and thread; the drivers' status lists
have a node and thread of their own too (lane_manager/node.py).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Optional

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from skill_lanes.runtime import BackgroundExecutor


class GoalIntake:
    """One lane's node for its skill servers, spun by an executor thread of its own."""

    def __init__(self, parent: Node, lane: Optional[str]) -> None:
        """A lane's intake (None: the skills that hold no lane), named after the lane manager
        and the lane, in its namespace, without the process's remaps (a launch file's
        `name=` would give every node of the process the same name).
        """
        suffix = f'_{lane}_goals' if lane is not None else '_goals'
        self.lane = lane
        # Only skill servers live here: no parameter, type description or /rosout
        # endpoints (about 1.3 MB a lane; the lane manager logs through its own node).
        self.node = Node(f'{parent.get_name()}{suffix}', namespace=parent.get_namespace(),
                         context=parent.context, use_global_arguments=False,
                         start_parameter_services=False, enable_rosout=False,
                         parameter_overrides=[Parameter('start_type_description_service',
                                                        value=False)])
        self.group = ReentrantCallbackGroup()
        self._spin: Optional[BackgroundExecutor] = None
        self._pending: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start taking goals (once the skill servers exist)."""
        if self._spin is None:
            self._spin = BackgroundExecutor(self.node, num_threads=1)

    def on_own_thread(self) -> bool:
        return self._spin is not None and self._spin.thread_id == threading.get_ident()

    def run_here(self, work: Callable[[], None]) -> None:
        """Run `work` on this lane's thread (now, if called from it), in call order.

        For a big goal the keeper starts from another thread (the lane's previous goal
        ended, told by the driver's result or status): sending converts the goal to its wire
        form (0.3 s for 150k points), which must not stall the relay of every other lane.
        Not started, or already stopped: run at once (nothing else is running then).
        """
        if self._spin is None or self.on_own_thread():
            work()
            return
        with self._lock:
            self._pending.append(work)
        self._spin.executor.create_task(self._run_pending)

    def _run_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                work = self._pending.popleft()
            work()

    def wake(self) -> None:
        """Make the executor poll its coroutines: a Future they await was completed from
        another thread, and rclpy resumes such a coroutine only when its executor wakes.
        """
        if self._spin is not None:
            self._spin.executor.wake()

    def destroy(self) -> None:
        if self._spin is not None:
            self._spin.shutdown()
            self._spin = None
        self.node.destroy_node()

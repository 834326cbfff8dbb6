"""A simulated robot: one driver action server per configured skill, any action type.

So the whole stack runs with no hardware. Each skill's driver runs for `duration_s`,
publishes default-constructed feedback at `feedback_hz`, and ends with a default Result as
its `outcome` says (succeed, abort, reject the goal, hang forever, ignore cancels, or be
absent: never served, a driver that does not come up; accept_cancel_but_run: accept a
cancel and run the full duration all the same), answering goal requests `answer_delay_s`
late. Like
many real drivers it accepts every goal it gets; it COUNTS goals that overlap on one driver,
which is how the tests prove the lane manager never lets two through.

Counts are published as JSON on `/sim_driver/stats` (std_msgs/String, transient local)
after every change and once a second: per driver (keyed by its first skill) and per lane
`goals`, `active`, `max_active`, `overlaps` (goals started while another was active),
`canceled`; `max_concurrent` over all drivers; and `overlap_events`, the last 50 overlaps
with the goal ids involved and when each started at its driver (also logged), so a run can
tell which goals met.
"""
from __future__ import annotations

import json
import random
import threading
import time
from typing import Any, Optional, Sequence

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from skill_lanes.goal_ids import goal_id_text
from skill_lanes.config import Config, SimSkillConfig, import_action_type
from skill_lanes.interfaces import LANE_STATE_QOS, SIM_STATS_TOPIC
from skill_lanes.runtime import config_argument_parser, parse_args, resolve_config, run_node


def _counters() -> dict[str, int]:
    return {'goals': 0, 'active': 0, 'max_active': 0, 'overlaps': 0, 'canceled': 0}


class SimulatedDriver:
    """One skill's simulated action server."""

    def __init__(self, node: 'SimDriver', skill: str, action_type: Any, server_name: str,
                 behaviour: SimSkillConfig) -> None:
        self.node = node
        self.skill = skill
        self.server_name = server_name
        self.action_type = action_type
        self.behaviour = behaviour
        self.active = 0
        self.server = ActionServer(
            node, action_type, server_name, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=node.group)

    def _on_goal(self, goal: Any) -> GoalResponse:
        if self.behaviour.answer_delay_s > 0:
            time.sleep(self.behaviour.answer_delay_s)  # a slow driver (a reentrant thread)
        if self.behaviour.outcome == 'reject':
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        if self.behaviour.outcome == 'ignore_cancel':
            return CancelResponse.REJECT
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle: ServerGoalHandle) -> Any:
        """Blocking on purpose: a thread per goal, as many real drivers do.

        The end is counted before the driver reports it (its terminal status, then the
        Result), as a real driver stops the robot before it says the goal is over: the lane
        manager may start the lane's next goal on that report.
        """
        goal_id = goal_id_text(goal_handle.goal_id)
        self.node.goal_started(self, goal_id)
        outcome = 'aborted'
        try:
            outcome = self._run(goal_handle)
        finally:
            self.node.goal_ended(self, goal_id, canceled=outcome == 'canceled')
        report = {'canceled': goal_handle.canceled, 'aborted': goal_handle.abort,
                  'succeeded': goal_handle.succeed}[outcome]
        report()
        return self.action_type.Result()

    def _run(self, goal_handle: ServerGoalHandle) -> str:
        """Run the goal as configured; returns how it ended (reported by `_execute`)."""
        behaviour = self.behaviour
        period = 1.0 / behaviour.feedback_hz if behaviour.feedback_hz > 0 else None
        duration = behaviour.duration_s
        if behaviour.duration_max_s is not None and behaviour.duration_max_s > duration:
            duration = random.uniform(duration, behaviour.duration_max_s)
        end = time.monotonic() + duration
        next_feedback = time.monotonic()
        while behaviour.outcome in ('hang', 'ignore_cancel') or time.monotonic() < end:
            if goal_handle.is_cancel_requested and behaviour.outcome != 'accept_cancel_but_run':
                return 'canceled'
            if not self.node.running:
                return 'aborted'
            now = time.monotonic()
            if period is not None and now >= next_feedback:
                goal_handle.publish_feedback(self.action_type.Feedback())
                next_feedback = now + period
            if behaviour.outcome not in ('hang', 'ignore_cancel') and now >= end:
                break
            time.sleep(0.01)
        return 'aborted' if behaviour.outcome == 'abort' else 'succeeded'


class SimDriver(Node):
    """Serves every configured skill's driver action server."""

    def __init__(self, config_file: Optional[str] = None,
                 config: Optional[Config] = None,
                 only: Optional[Sequence[str]] = None) -> None:
        super().__init__('sim_driver')
        self.config = config if config is not None else resolve_config(self, config_file)
        self.group = ReentrantCallbackGroup()
        self.running = True
        self._lock = threading.RLock()
        self._stats: dict[str, dict[str, int]] = {}
        self._lane_stats: dict[str, dict[str, int]] = {}
        self._active_total = 0
        self._max_concurrent = 0
        self._running: dict[str, dict[str, float]] = {}  # lane -> goal id -> wall start
        self._overlap_events: list[dict] = []
        self._stats_pub = self.create_publisher(String, SIM_STATS_TOPIC, LANE_STATE_QOS)
        self.drivers: list[SimulatedDriver] = []
        served: set[str] = set()
        for name, skill in self.config.skills.items():
            if only and name not in only:
                continue
            if skill.driver in served or self.config.sim.for_skill(name).outcome == 'absent':
                continue  # two skills may share one driver; 'absent' is never served
            served.add(skill.driver)
            self._stats[name] = _counters()
            for lane in skill.all_lanes:
                self._lane_stats.setdefault(lane, _counters())
            self.drivers.append(SimulatedDriver(
                self, name, import_action_type(skill.action_type), skill.driver,
                self.config.sim.for_skill(name)))
        self._publish_stats()
        # Also once a second, so a watcher can tell live counters from a dead driver's last.
        self.create_timer(1.0, self._publish_stats, callback_group=self.group)

    def _counters_of(self, driver: SimulatedDriver) -> list[dict[str, int]]:
        lanes = self.config.skills[driver.skill].all_lanes
        return [self._stats[driver.skill]] + [self._lane_stats[lane] for lane in lanes]

    def goal_started(self, driver: SimulatedDriver, goal_id: str) -> None:
        now = round(time.time(), 4)
        with self._lock:
            for stats in self._counters_of(driver):
                stats['goals'] += 1
                stats['active'] += 1
                if stats['active'] > 1:
                    stats['overlaps'] += 1
                stats['max_active'] = max(stats['max_active'], stats['active'])
            for lane in self.config.skills[driver.skill].all_lanes:
                running = self._running.setdefault(lane, {})
                if running:
                    event = {'lane': lane, 'driver': driver.server_name, 'goal': goal_id,
                             'started': now, 'running': dict(running)}
                    self._overlap_events = (self._overlap_events + [event])[-50:]
                    self.get_logger().error(
                        f'OVERLAP on lane {lane}: goal {goal_id} started at {driver.server_name} '
                        f'while {", ".join(running)} run(s)')
                running[goal_id] = now
            self._active_total += 1
            self._max_concurrent = max(self._max_concurrent, self._active_total)
            self._publish_stats()

    def goal_ended(self, driver: SimulatedDriver, goal_id: str, canceled: bool) -> None:
        with self._lock:
            for stats in self._counters_of(driver):
                stats['active'] -= 1
                stats['canceled'] += int(canceled)
            for lane in self.config.skills[driver.skill].all_lanes:
                self._running.get(lane, {}).pop(goal_id, None)
            self._active_total -= 1
            self._publish_stats()

    def stats(self) -> dict:
        with self._lock:
            return {'drivers': json.loads(json.dumps(self._stats)),
                    'lanes': json.loads(json.dumps(self._lane_stats)),
                    'max_concurrent': self._max_concurrent,
                    'overlap_events': json.loads(json.dumps(self._overlap_events))}

    def _publish_stats(self) -> None:
        self._stats_pub.publish(String(data=json.dumps(self.stats())))

    def stop(self) -> None:
        self.running = False
        time.sleep(0.1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import sys
    argv = list(sys.argv if argv is None else argv)
    parser = config_argument_parser('sim_driver', 'Simulated drivers for every skill.')
    parser.add_argument('--only', nargs='*', default=None,
                        help='serve only these skills (to run drivers in several processes)')
    args, ros_argv = parse_args(parser, argv)
    return run_node(lambda: SimDriver(args.config, only=args.only), 'sim_driver ready',
                    before_stop=lambda node: node.stop(), num_threads=16, argv=ros_argv)


if __name__ == '__main__':
    raise SystemExit(main())

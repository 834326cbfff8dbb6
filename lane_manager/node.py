"""The lane manager node: one arbiter in front of every robot skill's driver.

For each configured skill it serves an action server of the skill's own type at
`<namespace>/skills/<skill>` and forwards accepted goals to the real driver's action server.
Whether a goal is accepted, queued, refused or preempts the current holder is decided by the
pure-Python `Arbiter` at goal acceptance (drivers such as Nav2 or ros2_control accept a new
goal and abort the running one, so the decision must come before the goal reaches them).

This node only translates: ROS events in, arbiter effects out. Faults it turns into events:
- the driver's action server is absent: the goal waits `driver_wait_s`, then aborts;
- the driver does not answer a goal request within `driver_response_s`: aborted;
- the driver vanishes mid-goal (off the graph, or no answer to a liveness probe for
  `driver_lost_s`): aborted, lane freed;
- held past the lane's `max_hold_s`, or preempted: cancelled at the driver.

Topics (see README): `<namespace>/lane_state` (std_msgs/String, JSON, transient local,
published on every change) and `/diagnostics` (one DiagnosticStatus per lane).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional, Sequence

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import String

from lane_manager.action_link import ActionServerLink
from lane_manager.arbiter import Arbiter, CancelAtDriver, Effect, EndWithoutDriver, StartGoal
from lane_manager.config import Config, import_action_type
from lane_manager.interfaces import (DIAGNOSTICS_TOPIC, LANE_STATE_QOS, lane_state_topic,
                                     skill_server_name)
from lane_manager.runtime import config_argument_parser, parse_args, resolve_config, run_node

SHUTDOWN_CANCEL_WAIT_S = 2.0
CANCELING_WAIT_STEPS = 100  # x 10 ms

STATUS_TO_OUTCOME = {
    GoalStatus.STATUS_SUCCEEDED: 'succeeded',
    GoalStatus.STATUS_CANCELED: 'canceled',
    GoalStatus.STATUS_ABORTED: 'aborted',
}


def goal_id_text(uuid_msg: Any) -> str:
    """The goal id as the canonical UUID string, the same in every process."""
    return str(uuid.UUID(bytes=bytes(uuid_msg.uuid)))


@dataclass
class Outcome:
    """How a goal ended towards its caller."""

    status: str                      # 'succeeded' | 'aborted' | 'canceled'
    result: Any = None               # the driver's Result message, if any
    reason: Optional[str] = None


class Ticket:
    """One accepted goal, from acceptance until its caller has the result."""

    def __init__(self, goal_id: str, skill: str, goal: Any) -> None:
        self.goal_id = goal_id
        self.skill = skill
        self.goal = goal
        self.goal_handle: Optional[ServerGoalHandle] = None
        self.finished: Future = Future()
        self.executing = False           # goal_handle.execute() called (or due once it exists)
        self.caller_canceled = False     # its caller asked to cancel it
        self.forwarding_since: Optional[float] = None
        self.driver_handle: Any = None
        self.cancel_pending: Optional[str] = None  # cancel asked before the driver accepted
        self.waiting_for_driver_since: Optional[float] = None
        self.off_graph_since: Optional[float] = None

    @property
    def done(self) -> bool:
        return self.finished.done()


class _GoalIdActionServer(ActionServer):
    """An ActionServer whose goal callback can learn the goal id.

    rclpy hands the goal callback only the goal message, but a refusal must be published
    keyed by goal id (a rejection carries no reason in ROS). `execute` is the Waitable entry
    point that sees the whole request, so it records which id each goal message belongs to.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.goal_ids: dict[int, str] = {}
        super().__init__(*args, **kwargs)

    async def execute(self, taken_data) -> None:
        request = taken_data.get('goal')
        if request is not None:
            goal_request = request[1]
            self.goal_ids[id(goal_request.goal)] = goal_id_text(goal_request.goal_id)
            try:
                await super().execute(taken_data)
            finally:
                self.goal_ids.pop(id(goal_request.goal), None)
        else:
            await super().execute(taken_data)


class LaneManager(Node):
    """Serves one arbitrated action server per skill and forwards to the drivers."""

    def __init__(self, config_file: Optional[str] = None,
                 config: Optional[Config] = None) -> None:
        super().__init__('lane_manager')
        self.config = config if config is not None else resolve_config(self, config_file)
        settings = self.config.lane_manager
        self._settings = settings
        self._lock = threading.RLock()
        self._group = ReentrantCallbackGroup()
        self._arbiter = Arbiter(self.config.lanes)
        self._tickets: dict[str, Ticket] = {}
        self._state_seq = 0
        self._state_dirty = False
        self._closing = False
        namespace = self.resolve_topic_name(settings.namespace, only_expand=True)
        self._drivers: dict[str, ActionServerLink] = {}
        self._servers: dict[str, _GoalIdActionServer] = {}
        self._action_types: dict[str, Any] = {}
        self._driver_available: dict[str, bool] = {}
        self.server_names = {name: skill_server_name(namespace, name)
                             for name in self.config.skills}
        for name, skill in self.config.skills.items():
            action_type = import_action_type(skill.action_type)
            self._action_types[name] = action_type
            self._drivers[name] = ActionServerLink(self, action_type, skill.driver, self._group)
            self._servers[name] = _GoalIdActionServer(
                self, action_type, self.server_names[name],
                execute_callback=partial(self._execute, name),
                goal_callback=partial(self._on_goal_request, name),
                handle_accepted_callback=self._on_accepted,
                cancel_callback=self._on_cancel_request,
                callback_group=self._group)
        self._state_pub = self.create_publisher(String, lane_state_topic(namespace),
                                                LANE_STATE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_timer(1.0 / settings.watchdog_hz, self._watchdog, callback_group=self._group)
        self.create_timer(settings.state_period_s, self._periodic_state,
                          callback_group=self._group)
        self._state_guard = self.create_guard_condition(self._flush_state_if_dirty,
                                                        callback_group=self._group)
        self._periodic_state()

    # ------------------------------------------------------------ action server side
    def _on_goal_request(self, skill_name: str, goal: Any) -> GoalResponse:
        server = self._servers[skill_name]
        goal_id = server.goal_ids.get(id(goal)) or str(uuid.uuid4())
        skill = self.config.skills[skill_name]
        with self._lock:
            if self._closing:
                return GoalResponse.REJECT
            ticket = Ticket(goal_id, skill_name, goal)
            if skill.lane is None:
                self._tickets[goal_id] = ticket
                self._apply([StartGoal(goal_id)])
                return GoalResponse.ACCEPT
            decision = self._arbiter.submit(goal_id, skill_name, skill.lane, skill.priority,
                                            time.monotonic())
            if not decision.accepted:
                self.get_logger().info(f'refused {skill_name} goal {goal_id}: {decision.reason}')
                self._publish_state()
                return GoalResponse.REJECT
            self._tickets[goal_id] = ticket
            self._apply(decision.effects)
            self._publish_state()
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle: ServerGoalHandle) -> None:
        """Queued goals stay ACCEPTED (not EXECUTING) until their lane is theirs."""
        with self._lock:
            ticket = self._tickets.get(goal_id_text(goal_handle.goal_id))
            if ticket is None:
                goal_handle.execute()
                return
            ticket.goal_handle = goal_handle
            if ticket.executing:
                goal_handle.execute()

    def _on_cancel_request(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        goal_id = goal_id_text(goal_handle.goal_id)
        with self._lock:
            ticket = self._tickets.get(goal_id)
            if ticket is None or ticket.done:
                return CancelResponse.REJECT
            ticket.caller_canceled = True
            if self.config.skills[ticket.skill].lane is None:
                self._cancel_at_driver(ticket, 'canceled by its caller')
            else:
                self._apply(self._arbiter.cancel(goal_id, time.monotonic()))
            self._publish_state()
        return CancelResponse.ACCEPT

    async def _execute(self, skill_name: str, goal_handle: ServerGoalHandle) -> Any:
        goal_id = goal_id_text(goal_handle.goal_id)
        with self._lock:
            ticket = self._tickets.get(goal_id)
        action_type = self._action_types[skill_name]
        if ticket is None:
            goal_handle.abort()
            return action_type.Result()
        outcome: Outcome = await ticket.finished
        if outcome.status == 'canceled' and ticket.caller_canceled:
            # rclpy moves the goal to CANCELING only after our cancel callback returns, and a
            # queued goal ends inside that callback: wait for the move so it ends CANCELED.
            for _ in range(CANCELING_WAIT_STEPS):
                if goal_handle.is_cancel_requested:
                    break
                await self._sleep(0.01)
        with self._lock:
            self._tickets.pop(goal_id, None)
            if outcome.status == 'succeeded':
                goal_handle.succeed()
            elif outcome.status == 'canceled' and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        return outcome.result if outcome.result is not None else action_type.Result()

    def _sleep(self, seconds: float) -> Future:
        """An rclpy future done after `seconds` (awaitable in executor coroutines)."""
        done = Future()

        def fire() -> None:
            timer.cancel()
            self.destroy_timer(timer)
            if not done.done():
                done.set_result(None)
        timer = self.create_timer(seconds, fire, callback_group=self._group)
        return done

    # ------------------------------------------------------------ effects
    def _apply(self, effects: Sequence[Effect]) -> None:
        """Carry out arbiter effects. Called with the lock held."""
        for effect in effects:
            ticket = self._tickets.get(effect.goal_id)
            if ticket is None:
                continue
            if isinstance(effect, StartGoal):
                self._start(ticket)
            elif isinstance(effect, CancelAtDriver):
                self._cancel_at_driver(ticket, effect.reason)
            elif isinstance(effect, EndWithoutDriver):
                self._finish(ticket, Outcome(effect.outcome, reason=effect.reason),
                             tell_arbiter=False)

    @staticmethod
    def _ensure_executing(ticket: Ticket) -> None:
        """Move the caller's goal to EXECUTING (now, or as soon as its handle exists)."""
        if ticket.executing:
            return
        ticket.executing = True
        if ticket.goal_handle is not None:
            ticket.goal_handle.execute()

    def _start(self, ticket: Ticket) -> None:
        ticket.waiting_for_driver_since = time.monotonic()
        self._forward_if_driver_ready(ticket)  # first: the lane hand-off is the hot path
        self._ensure_executing(ticket)

    def _forward_if_driver_ready(self, ticket: Ticket) -> None:
        driver = self._drivers[ticket.skill]
        # The graph query is the slow part of forwarding: trust the periodic refresh when it
        # says the driver is there (a driver gone since is caught by the liveness probe).
        if not self._driver_available.get(ticket.skill) and not driver.is_on_graph():
            return  # the watchdog retries until driver_wait_s has passed
        if not driver.ready_for_goals(time.monotonic()):
            return  # first goal since the driver appeared: its probe answer comes first
        ticket.waiting_for_driver_since = None
        ticket.forwarding_since = time.monotonic()
        driver.reset_probe()
        send = driver.client.send_goal_async(
            ticket.goal, feedback_callback=partial(self._on_driver_feedback, ticket))
        send.add_done_callback(partial(self._on_driver_response, ticket))

    def _on_driver_feedback(self, ticket: Ticket, feedback_msg: Any) -> None:
        handle = ticket.goal_handle
        if not ticket.done and handle is not None and handle.is_active:
            handle.publish_feedback(feedback_msg.feedback)

    def _on_driver_response(self, ticket: Ticket, future: Future) -> None:
        with self._lock:
            driver_handle = None if future.exception() else future.result()
            if ticket.done:
                if driver_handle is not None and driver_handle.accepted:
                    driver_handle.cancel_goal_async()  # too late: we already gave up on it
                return
            if driver_handle is None or not driver_handle.accepted:
                why = future.exception() or 'the driver rejected the goal'
                self._finish(ticket, Outcome('aborted', reason=f'{why}'))
                return
            ticket.driver_handle = driver_handle
            ticket.forwarding_since = None
            self._arbiter.driver_accepted(ticket.goal_id)
            driver_handle.get_result_async().add_done_callback(
                partial(self._on_driver_result, ticket))
            if ticket.cancel_pending is not None:
                driver_handle.cancel_goal_async()
            self._publish_state()

    def _on_driver_result(self, ticket: Ticket, future: Future) -> None:
        with self._lock:
            if ticket.done:
                return
            if future.exception() is not None:
                self._finish(ticket, Outcome('aborted', reason=f'{future.exception()}'))
                return
            response = future.result()
            status = STATUS_TO_OUTCOME.get(response.status, 'aborted')
            reason = ticket.cancel_pending if status != 'succeeded' else None
            if status == 'aborted' and reason is None:
                reason = 'the driver aborted the goal'
            self._finish(ticket, Outcome(status, response.result, reason))

    def _cancel_at_driver(self, ticket: Ticket, reason: str) -> None:
        ticket.cancel_pending = reason
        if ticket.driver_handle is not None:
            ticket.driver_handle.cancel_goal_async()
        elif ticket.forwarding_since is None:
            # Not yet sent to the driver (waiting for it to appear): end it here.
            self._finish(ticket, Outcome('canceled', reason=reason))

    def _finish(self, ticket: Ticket, outcome: Outcome, tell_arbiter: bool = True) -> None:
        """End a goal towards its caller; free its lane unless the arbiter already did."""
        if ticket.done:
            return
        ticket.finished.set_result(outcome)
        if self.executor is not None:
            # A coroutine awaiting an rclpy Future resumes only when the executor next wakes;
            # without this the caller's result waits for the next watchdog tick.
            self.executor.wake()
        self._ensure_executing(ticket)  # a queued goal's result comes from _execute too
        if outcome.status != 'succeeded':
            self.get_logger().info(
                f'{ticket.skill} goal {ticket.goal_id} {outcome.status}: {outcome.reason}')
        if tell_arbiter and self.config.skills[ticket.skill].lane is not None:
            self._apply(self._arbiter.goal_ended(
                ticket.goal_id, outcome.status, time.monotonic(), outcome.reason))
        self._publish_state()

    # ------------------------------------------------------------ watchdog
    def _watchdog(self) -> None:
        now = time.monotonic()
        settings = self._settings
        with self._lock:
            self._apply(self._arbiter.tick(now))
            for ticket in list(self._tickets.values()):
                if ticket.done:
                    continue
                driver = self._drivers[ticket.skill]
                if ticket.waiting_for_driver_since is not None:
                    self._forward_if_driver_ready(ticket)
                    if (ticket.waiting_for_driver_since is not None
                            and now - ticket.waiting_for_driver_since >= settings.driver_wait_s):
                        self._finish(ticket, Outcome('aborted', reason=(
                            f'driver {driver.name} unavailable: no action server after '
                            f'{settings.driver_wait_s:g} s')))
                elif ticket.forwarding_since is not None:
                    if now - ticket.forwarding_since >= settings.driver_response_s:
                        self._finish(ticket, Outcome('aborted', reason=(
                            f'driver {driver.name} did not answer the goal request within '
                            f'{settings.driver_response_s:g} s')))
                elif ticket.driver_handle is not None:
                    self._check_driver_alive(ticket, driver, now)

    def _check_driver_alive(self, ticket: Ticket, driver: ActionServerLink, now: float) -> None:
        lost_after = self._settings.driver_lost_s
        if driver.is_on_graph():
            ticket.off_graph_since = None
        elif ticket.off_graph_since is None:
            ticket.off_graph_since = now
        off_graph = (ticket.off_graph_since is not None
                     and now - ticket.off_graph_since >= lost_after)
        if off_graph or not driver.probe(now, lost_after):
            self._finish(ticket, Outcome('aborted', reason=(
                f'driver {driver.name} lost mid-goal (no answer for {lost_after:g} s)')))

    # ------------------------------------------------------------ state
    def lane_state(self) -> dict:
        """The lane state message body (JSON): see README "Lane state"."""
        now = time.monotonic()
        wall_offset = time.time() - now
        with self._lock:
            lanes = self._arbiter.snapshot(now, wall_offset)
            skills = {}
            for name, skill in self.config.skills.items():
                available = self._driver_available.get(name, False)
                skills[name] = {
                    'lane': skill.lane, 'action_type': skill.action_type,
                    'driver': skill.driver, 'server': self.server_names[name],
                    'priority': skill.priority, 'driver_available': available,
                }
                if skill.lane is not None:
                    lane = lanes[skill.lane]
                    lane.setdefault('skills', []).append(name)
                    lane['drivers_available'] = lane.get('drivers_available', True) and available
            self._state_seq += 1
            return {'node': self.get_fully_qualified_name(), 'seq': self._state_seq,
                    'stamp': round(time.time(), 3), 'lanes': lanes, 'skills': skills}

    def _publish_state(self) -> None:
        """The lane state changed: it goes out from the executor right after this event.

        Deferred (and coalesced) so that building the JSON stays off the path that forwards
        goals to drivers.
        """
        self._state_dirty = True
        self._state_guard.trigger()

    def _flush_state(self) -> dict:
        with self._lock:
            self._state_dirty = False
            state = self.lane_state()
        self._state_pub.publish(String(data=json.dumps(state, separators=(',', ':'))))
        return state

    def _flush_state_if_dirty(self) -> None:
        if self._state_dirty:
            self._flush_state()

    def _periodic_state(self) -> None:
        """Refresh driver availability (a graph query each), re-publish, diagnostics."""
        available = {name: link.is_on_graph() for name, link in self._drivers.items()}
        for name, link in self._drivers.items():
            if not available[name]:
                link.forget()
        with self._lock:
            self._driver_available = available
        self._publish_diagnostics(self._flush_state())

    def _publish_diagnostics(self, state: dict) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for name, lane in state['lanes'].items():
            status = DiagnosticStatus(name=f'skill_lanes: lane {name}',
                                      hardware_id=state['node'])
            holder = lane['holder']
            missing = [state['skills'][s]['driver'] for s in lane.get('skills', [])
                       if not state['skills'][s]['driver_available']]
            if missing:
                status.level = DiagnosticStatus.ERROR
                status.message = 'driver unavailable: ' + ', '.join(missing)
            elif holder is not None:
                status.level = DiagnosticStatus.WARN
                status.message = (f"busy: {holder['skill']} goal {holder['goal_id']} "
                                  f"({len(lane['queue'])} queued)")
            else:
                status.level = DiagnosticStatus.OK
                status.message = 'idle'
            values = {'policy': lane['policy'], 'queue_length': len(lane['queue']),
                      'holder_skill': holder['skill'] if holder else '',
                      'holder_goal': holder['goal_id'] if holder else '',
                      **{f'count_{k}': v for k, v in lane['counters'].items()}}
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
            array.status.append(status)
        self._diag_pub.publish(array)

    # ------------------------------------------------------------ shutdown
    def cancel_everything(self, reason: str = 'lane manager shutting down') -> None:
        """Cancel what was forwarded and end every goal, so no caller and no driver hangs."""
        with self._lock:
            self._closing = True
            cancels = [t.driver_handle.cancel_goal_async() for t in self._tickets.values()
                       if t.driver_handle is not None and not t.done]
        deadline = time.monotonic() + SHUTDOWN_CANCEL_WAIT_S
        while cancels and time.monotonic() < deadline and not all(f.done() for f in cancels):
            time.sleep(0.02)
        with self._lock:
            for ticket in list(self._tickets.values()):
                self._finish(ticket, Outcome('aborted', reason=reason), tell_arbiter=False)
        time.sleep(0.2)  # let the results go out before the executor stops


def main(argv: Optional[Sequence[str]] = None) -> int:
    import sys
    argv = list(sys.argv if argv is None else argv)
    parser = config_argument_parser('lane_manager', 'Arbitrates robot skill lanes.')
    args, ros_argv = parse_args(parser, argv)
    # Every callback of the lane manager is short and non-blocking: one thread is enough
    # and saves a thread hand-over on each hop of a relayed goal.
    return run_node(lambda: LaneManager(args.config), 'lane_manager ready',
                    before_stop=lambda node: node.cancel_everything(), num_threads=1,
                    argv=ros_argv)


if __name__ == '__main__':
    raise SystemExit(main())

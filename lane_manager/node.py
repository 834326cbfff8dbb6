"""The lane manager node: one arbiter in front of every robot skill's driver.

For each configured skill it serves an action server of the skill's own type at
`<namespace>/skills/<skill>` and forwards accepted goals to the real driver's action server.
Whether a goal is accepted, queued, refused or preempts the current holder is decided by the
pure-Python `Arbiter` at goal acceptance (drivers such as Nav2 or ros2_control accept a new
goal and abort the running one, so the decision must come before the goal reaches them).
Before that, a goal breaking its skill's `limits` is rejected, whoever sent it
(skill_lanes/goal_limits.py): the refusal and its reason are in its lanes' lane state.

This node only translates: ROS events in, `LaneKeeper` actions out (lane_manager/keeper.py
holds every decision). It follows each driver's own `_action/status`: a lane is free only
when the drivers say its goals have ended (see README "What frees a lane"). Events it feeds:
callers' goals and cancels; drivers' answers, results, status lists; samples of each
driver's presence (on the graph, its liveness probe, its status reader matched), judged by
lane_manager/driver_presence.py; time. Threads: each lane's skill servers take its goals on
a node and thread of the lane's own (goal_intake.py), the drivers' status lists have one,
and everything else runs on this node's one thread; every keeper event runs under one lock
(`keeper_turn`).

Topics and services (see README): `<namespace>/lane_state` (std_msgs/String, JSON, transient
local, published on every change), `/diagnostics` (one DiagnosticStatus per lane), and per
lane `<namespace>/lanes/<lane>/release` and `.../stop` (std_srvs/Trigger), `.../approve`
(std_srvs/SetBool, lane_manager/approvals.py).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

from action_msgs.msg import GoalStatusArray
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from rclpy.subscription import Subscription
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import Trigger

from skill_lanes.action_link import ActionServerLink
from lane_manager.agents import AgentBook
from lane_manager.approvals import Approvals
from lane_manager.caller_side import (CallerEnd, CallerGoal, GoalIdActionServer, goal_id_msg,
                                      goal_id_text)
from skill_lanes.config import Config, import_action_type, skill_limits
from lane_manager.diagnostics import lane_diagnostics
from lane_manager.driver_presence import ProbeAfresh, ProbeSample
from lane_manager.effects import (CancelGoalAtDriver, EndCaller, Notice, SendToDriver,
                                  Started)
from lane_manager.emergency_stop import EmergencyStop
from lane_manager.goal_intake import GoalIntake
from skill_lanes.goal_limits import REFUSAL_PREFIX as LIMITS_REFUSAL
from skill_lanes.goal_limits import GoalLimits
from skill_lanes.goal_outcome import outcome_of_status
from skill_lanes.interfaces import (DIAGNOSTICS_TOPIC, GOAL_AGENTS_QOS, LANE_STATE_QOS,
                                     StackNames, is_big_goal)
from lane_manager.keeper import LaneKeeper, SkillRoute
from lane_manager.operator_take import OperatorTake
from skill_lanes.runtime import (BackgroundExecutor, config_argument_parser, parse_args,
                                  resolve_config, run_node)
from lane_manager.status_wire import decode_status_array

SHUTDOWN_CANCEL_WAIT_S = 2.0
RESULT_ASK_S = 3.0  # a goal a driver once ran is re-asked for its result this often
# How long a skill server keeps a finished goal's result (and lists it in its status): the
# same on both distributions (rclpy 9 defaults to 10 s, rclpy 7 to 900 s). Callers ask for
# the result when the goal is accepted; every finished goal listed makes each status message
# bigger for every client of the server.
RESULT_KEEP_S = 10
CANCELING_WAIT_STEPS = 100  # x 10 ms
EXECUTOR_THREADS = 1  # see main()



@dataclass(frozen=True)
class KeeperTurn:
    """One event given to the keeper, under the node's lock (see `LaneManager.keeper_turn`)."""

    keeper: LaneKeeper
    now: float  # time.monotonic() at the start of the turn
    _carry_out: Callable[..., None]

    def carry_out(self, actions: Sequence[Any], state_changed: bool = True) -> None:
        """Carry out the keeper's actions; publish the lane state if anything changed."""
        self._carry_out(actions, state_changed)


class LaneManager(Node):
    """Serves one arbitrated action server per skill and forwards to the drivers."""

    def __init__(self, config_file: Optional[str] = None,
                 config: Optional[Config] = None) -> None:
        super().__init__('lane_manager')
        self.config = config if config is not None else resolve_config(self, config_file)
        settings = self.config.lane_manager
        self._lock = threading.RLock()
        self._group = ReentrantCallbackGroup()
        routes = {name: SkillRoute(s.primary_lane, s.driver, s.priority, tuple(s.lanes or ()),
                                   s.approval_timeout_s if s.approval == 'operator' else None)
                  for name, s in self.config.skills.items()}
        self._keeper = LaneKeeper(self.config.lanes, routes, settings,
                                  started_at=time.monotonic())
        self._goals: dict[str, CallerGoal] = {}
        # Goals the keeper started, sent after its turn (see keeper_turn).
        self._unsent: list[tuple[SendToDriver, CallerGoal]] = []
        self._state_seq = 0
        self._state_dirty = False
        self._closing = False
        # Its names by the rule every gateway uses too (interfaces.StackNames).
        names = self.names = StackNames.of(self, settings.namespace)
        # The drivers' status lists (three messages per goal, at the moments a goal is
        # answered and ends) are followed by a node of their own with its own executor
        # thread, so they never queue in front of the goal relay on the main executor.
        # Its own name and namespace, not the process's remaps: a launch file's `name=` remaps
        # every node of the process, and two nodes must not share one name.
        self._status_node = Node(f'{self.get_name()}_status', namespace=self.get_namespace(),
                                 context=self.context, use_global_arguments=False)
        self._status_spin: Optional[BackgroundExecutor] = None
        self._links: dict[str, ActionServerLink] = {}         # per skill
        self._driver_links: dict[str, ActionServerLink] = {}  # per driver (its first skill)
        self._status_subs: dict[str, Subscription] = {}       # per driver
        self._servers: dict[str, GoalIdActionServer] = {}
        # Each lane's goals come in on a thread of its own (lane_manager/goal_intake.py).
        self._intakes: dict[Optional[str], GoalIntake] = {}
        self._skill_intake: dict[str, GoalIntake] = {}
        self._action_types: dict[str, Any] = {}
        self._limits: dict[str, GoalLimits] = {}  # per skill: what a goal may ask
        self.server_names = {name: names.skill_server(name) for name in self.config.skills}
        for name, skill in self.config.skills.items():
            action_type = import_action_type(skill.action_type)
            self._action_types[name] = action_type
            self._limits[name] = skill_limits(skill, action_type.Goal)
            link = ActionServerLink(self, action_type, skill.driver, self._group,
                                    statusless=True)
            self._links[name] = link
            if skill.driver not in self._driver_links:
                self._driver_links[skill.driver] = link
                self._status_subs[skill.driver] = self._status_node.create_subscription(
                    GoalStatusArray, f'{skill.driver}/_action/status',
                    partial(self._on_driver_status, skill.driver),
                    qos_profile_action_status_default, raw=True)
            lane = skill.primary_lane
            if lane not in self._intakes:
                self._intakes[lane] = GoalIntake(self, lane)
            intake = self._skill_intake[name] = self._intakes[lane]
            self._servers[name] = GoalIdActionServer(
                intake.node, action_type, self.server_names[name],
                result_timeout=RESULT_KEEP_S,
                execute_callback=partial(self._execute, name),
                goal_callback=partial(self._on_goal_request, name),
                handle_accepted_callback=self._on_accepted,
                cancel_callback=self._on_cancel_request,
                callback_group=intake.group)
        for lane in self.config.lanes:
            for verb, handler in (('release', self._on_release), ('stop', self._on_stop)):
                self.create_service(Trigger, names.lane_service(lane, verb),
                                    partial(handler, lane), callback_group=self._group)
        self._operator_take = OperatorTake(self, names)
        self._approvals = Approvals(self, names)
        self._agents = AgentBook()
        self.create_subscription(String, names.goal_agents, self._on_goal_agents,
                                 GOAL_AGENTS_QOS, callback_group=self._group)
        self._estop = EmergencyStop(self, settings.stop_sources(), list(self.config.lanes))
        self._state_pub = self.create_publisher(String, names.lane_state,
                                                LANE_STATE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_timer(1.0 / settings.watchdog_hz, self._watchdog, callback_group=self._group)
        self.create_timer(settings.state_period_s, self._periodic_state,
                          callback_group=self._group)
        self._state_guard = self.create_guard_condition(self._flush_state_if_dirty,
                                                        callback_group=self._group)
        self._periodic_state()
        self._status_spin = BackgroundExecutor(self._status_node, num_threads=1)
        for intake in self._intakes.values():
            intake.start()

    def intake_node(self, lane: Optional[str]) -> Node:
        """The node whose executor thread takes the goals of this lane's skills."""
        return self._intakes[lane].node

    def destroy_node(self) -> None:
        for intake in self._intakes.values():
            intake.destroy()
        if self._status_spin is not None:
            self._status_spin.shutdown()
            self._status_spin = None
        self._status_node.destroy_node()
        super().destroy_node()

    # ------------------------------------------------------------ action server side
    def _on_goal_request(self, skill_name: str, goal: Any) -> GoalResponse:
        server = self._servers[skill_name]
        goal_id = server.goal_id_of(goal)
        if goal_id is None:  # logged there; a made-up id would key refusals nobody asked for
            return GoalResponse.REJECT
        limits = self._limits[skill_name]
        # Outside the lock: on the lane's own thread, a big goal's check delays only its lane.
        violation = limits.check(goal) if limits else None
        if violation is not None:
            reason = f'{LIMITS_REFUSAL}{violation}'
            with self.keeper_turn() as turn:
                turn.keeper.refuse(goal_id, skill_name, reason, turn.now, violation.as_json())
                turn.carry_out([])  # the refusal is in the lane state
            self.get_logger().warning(f'refused {skill_name} goal {goal_id}: {reason}')
            return GoalResponse.REJECT
        big = is_big_goal(goal)
        with self.keeper_turn() as turn:
            if self._closing or goal_id in self._goals:
                return GoalResponse.REJECT
            self._goals[goal_id] = CallerGoal(goal_id, skill_name, goal, big)
            decision, actions = turn.keeper.submit(goal_id, skill_name, turn.now)
            if not decision.accepted:
                del self._goals[goal_id]
                self.get_logger().info(f'refused {skill_name} goal {goal_id}: {decision.reason}')
                turn.carry_out([])  # the refusal is in the lane state
                return GoalResponse.REJECT
            turn.carry_out(actions)
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle: ServerGoalHandle) -> None:
        """Queued goals stay ACCEPTED (not EXECUTING) until their lane is theirs."""
        with self._lock:
            caller = self._goals.get(goal_id_text(goal_handle.goal_id))
            if caller is None:
                goal_handle.execute()
                return
            caller.goal_handle = goal_handle
            if caller.executing:
                goal_handle.execute()

    def _on_cancel_request(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        goal_id = goal_id_text(goal_handle.goal_id)
        with self.keeper_turn() as turn:
            caller = self._goals.get(goal_id)
            if caller is None or caller.done:
                return CancelResponse.REJECT
            caller.caller_canceled = True
            turn.carry_out(turn.keeper.cancel(goal_id, turn.now))
        return CancelResponse.ACCEPT

    async def _execute(self, skill_name: str, goal_handle: ServerGoalHandle) -> Any:
        goal_id = goal_id_text(goal_handle.goal_id)
        with self._lock:
            caller = self._goals.get(goal_id)
        action_type = self._action_types[skill_name]
        if caller is None:
            goal_handle.abort()
            return action_type.Result()
        outcome: CallerEnd = await caller.finished
        if outcome.status == 'canceled' and caller.caller_canceled:
            # rclpy moves the goal to CANCELING only after our cancel callback returns, and a
            # queued goal ends inside that callback: wait for the move so it ends CANCELED.
            for _ in range(CANCELING_WAIT_STEPS):
                if goal_handle.is_cancel_requested:
                    break
                await self._sleep(skill_name, 0.01)
        with self._lock:
            self._goals.pop(goal_id, None)
            if outcome.status == 'succeeded':
                goal_handle.succeed()
            elif outcome.status == 'canceled' and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        # No driver result: an empty Result is unavoidable on the wire; the status and the
        # lane state's ending (driver_result: false) say there was none.
        return outcome.result if outcome.result is not None else action_type.Result()

    def _sleep(self, skill_name: str, seconds: float) -> Future:
        """An rclpy future done after `seconds`, for a coroutine of the skill's intake."""
        intake = self._skill_intake[skill_name]
        done = Future()

        def fire() -> None:
            timer.cancel()
            intake.node.destroy_timer(timer)
            if not done.done():
                done.set_result(None)
        timer = intake.node.create_timer(seconds, fire, callback_group=intake.group)
        return done

    # ------------------------------------------------------------ operator services
    def _on_release(self, lane: str, _request: Any, response: Any) -> Any:
        with self.keeper_turn() as turn:
            ok, message, actions = turn.keeper.release(lane, turn.now)
            turn.carry_out(actions)
        self.get_logger().warning(f'operator release of lane {lane}: {message}')
        response.success, response.message = ok, message
        return response

    def _on_stop(self, lane: str, _request: Any, response: Any) -> Any:
        with self.keeper_turn() as turn:
            ok, message, actions = turn.keeper.stop(lane, turn.now)
            turn.carry_out(actions)
        self.get_logger().info(f'lane_stop {lane}: {message}')
        response.success, response.message = ok, message
        return response

    # ------------------------------------------------------------ keeper actions
    @property
    def callback_group(self) -> ReentrantCallbackGroup:
        """The group of the main thread's callbacks (services, timers, subscriptions)."""
        return self._group

    @contextmanager
    def keeper_turn(self) -> Iterator['KeeperTurn']:
        """The one door to the keeper: its lock for one event; the goals it sends go out after.

        Every keeper call happens inside a turn (`turn.keeper`, `turn.now`) and its actions
        are carried out with `turn.carry_out`. Sending converts the goal to its wire form:
        0.3 s for a 150k-point trajectory. Done under the lock, that would also hold up the
        drivers' status, handled on its own thread, and every lane's goal intake.
        """
        with self._lock:
            yield KeeperTurn(self._keeper, time.monotonic(), self._carry_out)
            sends, self._unsent = self._unsent, []
        for action, caller in sends:
            send = partial(self._send, action, caller)
            if caller.big:  # from the goal's lane's own thread (see GoalIntake.run_here)
                self._skill_intake[caller.skill].run_here(send)
            else:
                send()

    def _carry_out(self, actions: Sequence[Any], state_changed: bool = True) -> None:
        self._apply(actions)
        # A probe sent afresh changes nothing in the lane state.
        if state_changed or any(not isinstance(a, ProbeAfresh) for a in actions):
            self._publish_state()

    def _apply(self, actions: Sequence[Any]) -> None:
        """Carry out the keeper's actions. Called inside `keeper_turn` (lock held)."""
        for action in actions:
            if isinstance(action, SendToDriver):
                caller = self._goals.get(action.caller_goal_id)
                if caller is not None:  # what to send is taken now, in the keeper's order
                    self._unsent.append((action, caller))
            elif isinstance(action, CancelGoalAtDriver):
                self._cancel_at_driver(action)
            elif isinstance(action, EndCaller):
                self._finish(action)
            elif isinstance(action, Started):
                caller = self._goals.get(action.caller_goal_id)
                if caller is not None:
                    self._ensure_executing(caller)
            elif isinstance(action, Notice):
                self._log_notice(action)
            elif isinstance(action, ProbeAfresh):
                self._driver_links[action.driver].forget()

    def _log_notice(self, notice: Notice) -> None:
        # rclpy wants one severity per call site: one call per level.
        if notice.level == 'error':
            self.get_logger().error(notice.text)
        elif notice.level == 'warn':
            self.get_logger().warning(notice.text)
        else:
            self.get_logger().info(notice.text)

    @staticmethod
    def _ensure_executing(caller: CallerGoal) -> None:
        """Move the caller's goal to EXECUTING (now, or as soon as its handle exists)."""
        if caller.executing:
            return
        caller.executing = True
        if caller.goal_handle is not None:
            caller.goal_handle.execute()

    def _send(self, action: SendToDriver, caller: CallerGoal) -> None:
        """Forward a goal the keeper started (outside the lock: see keeper_turn)."""
        link = self._links[caller.skill]
        with self._lock:
            link.reset_probe()
        send = link.client.send_goal_async(
            caller.goal, feedback_callback=partial(self._on_driver_feedback, caller),
            goal_uuid=goal_id_msg(action.driver_goal_id))
        send.add_done_callback(partial(self._on_driver_response, action.driver_goal_id))

    def _on_driver_feedback(self, caller: CallerGoal, feedback_msg: Any) -> None:
        handle = caller.goal_handle
        if not caller.done and handle is not None and handle.is_active:
            handle.publish_feedback(feedback_msg.feedback)

    def _on_driver_response(self, driver_goal_id: str, future: Future) -> None:
        if future.exception() is not None:
            return  # no answer: the keeper gives the caller up after driver_response_s
        handle = future.result()
        with self.keeper_turn() as turn:
            turn.carry_out(turn.keeper.driver_answer(driver_goal_id, handle.accepted, turn.now))
        if handle.accepted:
            handle.get_result_async().add_done_callback(
                partial(self._on_driver_result, driver_goal_id))

    def _on_driver_result(self, driver_goal_id: str, future: Future) -> None:
        if future.exception() is not None:
            return  # the driver's status still tells when the goal ends
        response = future.result()
        outcome = outcome_of_status(response.status)
        if outcome is None:
            return  # STATUS_UNKNOWN: not a result
        with self.keeper_turn() as turn:
            turn.carry_out(turn.keeper.driver_result(driver_goal_id, outcome, response.result,
                                                     turn.now))

    def _on_driver_status(self, driver: str, data: bytes) -> None:
        """A driver's own status list (raw CDR: see lane_manager/status_wire.py)."""
        with self._lock:
            wanted = {uuid.UUID(gid).bytes for gid in self._keeper.tracked_goal_ids(driver)}
        statuses = decode_status_array(data, wanted)
        with self.keeper_turn() as turn:
            actions = turn.keeper.driver_status(driver, statuses, turn.now)
            # A status that changes nothing waits for the periodic state.
            turn.carry_out(actions, state_changed=bool(actions))

    def _cancel_at_driver(self, action: CancelGoalAtDriver) -> None:
        self.get_logger().info(
            f'cancelling goal {action.driver_goal_id} at {action.driver}: {action.reason}')
        future = self._driver_links[action.driver].client.cancel_goal_async(
            goal_id_msg(action.driver_goal_id))
        future.add_done_callback(partial(self._on_cancel_answer, action.driver_goal_id))

    def _on_cancel_answer(self, driver_goal_id: str, future: Future) -> None:
        if future.exception() is not None or future.result() is None:
            return
        with self.keeper_turn() as turn:
            turn.carry_out(turn.keeper.driver_cancel_answer(
                driver_goal_id, future.result().return_code, turn.now))

    def _finish(self, action: EndCaller) -> None:
        """End a goal towards its caller."""
        caller = self._goals.get(action.caller_goal_id)
        if caller is None or caller.done:
            return
        result = action.result if action.driver_result else None
        caller.finished.set_result(CallerEnd(action.outcome, result, action.reason))
        # The caller's `_execute` awaits that on its intake's thread, resumed only when
        # that executor next wakes: without this the result waits for some later event.
        self._skill_intake[caller.skill].wake()
        self._ensure_executing(caller)  # a queued goal's result comes from _execute too
        if action.outcome != 'succeeded':
            self.get_logger().info(
                f'{caller.skill} goal {caller.goal_id} {action.outcome}: {action.reason}')
        self._publish_state()

    # ------------------------------------------------------------ watchdog
    def _watchdog(self) -> None:
        # The drivers' status writers on the graph, sampled every look (a graph query each,
        # about 20 us): a new one is a new process under the driver's name, whose status is
        # not known yet (lane_manager/driver_presence.py). Outside the keeper's lock.
        writers = {driver: self._status_writers_of(driver) for driver in self._driver_links}
        with self.keeper_turn() as turn:
            keeper, now = turn.keeper, turn.now
            # Samples only: the keeper's DriverPresence judges them (and says when to probe).
            # The status reader matched with every status writer on the graph, not merely
            # the driver on the graph: only then has a transient-local status list had its
            # way to us (lane_manager/driver_presence.py).
            samples = {driver: ProbeSample(
                answered=link.take_answer(),
                status_matched=self._status_subs[driver].get_publisher_count() >= max(
                    1, len(writers[driver])),
                probe=partial(link.probe, now), writers=writers[driver])
                for driver, link in self._driver_links.items()}
            turn.carry_out(keeper.look(samples, now), state_changed=False)
            turn.carry_out(keeper.tick(now), state_changed=False)
            due = keeper.goals_to_ask(now, RESULT_ASK_S)
            for goal in due:
                self._ask_result(goal.driver, goal.driver_goal_id)
            keeper.mark_asked(due, now)

    def _ask_result(self, driver: str, driver_goal_id: str) -> None:
        """Ask a driver again for a goal's result: a driver restarted under the same name
        answers at once that it knows no such goal (its status would never say so).
        """
        self._driver_links[driver].client.get_result_async(
            goal_id_msg(driver_goal_id)).add_done_callback(
            partial(self._on_result_answer, driver_goal_id))

    def _on_result_answer(self, driver_goal_id: str, future: Future) -> None:
        if future.exception() is not None or future.result() is None:
            return
        response = future.result()
        with self.keeper_turn() as turn:
            turn.carry_out(turn.keeper.driver_result_answer(
                driver_goal_id, response.status, response.result, turn.now))

    # ------------------------------------------------------------ state
    def lane_state(self) -> dict:
        """The lane state message body (JSON): see README "Lane state"."""
        now = time.monotonic()
        wall_offset = time.time() - now
        with self._lock:
            lanes = self._agents.join(self._keeper.snapshot(now, wall_offset))
            skills = {}
            for name, skill in self.config.skills.items():
                available = self._keeper.driver_available(skill.driver)
                skills[name] = {
                    'lane': skill.primary_lane, 'lanes': list(skill.all_lanes),
                    'action_type': skill.action_type,
                    'driver': skill.driver, 'server': self.server_names[name],
                    'priority': skill.priority, 'driver_available': available,
                    'approval': skill.approval,
                }
                for lane_name in skill.all_lanes:
                    lane = lanes[lane_name]
                    lane.setdefault('skills', []).append(name)
                    lane['drivers_available'] = lane.get('drivers_available', True) and available
            self._state_seq += 1
            return {'node': self.get_fully_qualified_name(), 'seq': self._state_seq,
                    'stamp': round(time.time(), 3), 'lanes': lanes, 'skills': skills,
                    'emergency_stop': self._estop.snapshot(),
                    'taken': self._operator_take.snapshot()}

    def _on_goal_agents(self, msg: String) -> None:
        """Who asked for a goal, as a gateway says (one goal a message; a gateway of before
        sent its last 256 in each): joined into lane state.
        """
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(body, dict):
            with self._lock:
                self._agents.update(body)
            self._publish_state()

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
        """Sample the drivers' presence on the graph (a graph query each), re-publish,
        diagnostics.
        """
        now = time.monotonic()
        on_graph = {driver: link.is_on_graph() for driver, link in self._driver_links.items()}
        with self.keeper_turn() as turn:
            for driver, seen in on_graph.items():
                turn.carry_out(turn.keeper.driver_on_graph(driver, seen, now),
                               state_changed=False)
        self._publish_diagnostics(self._flush_state())

    def _status_writers_of(self, driver: str) -> frozenset[bytes]:
        """The DDS gids of the driver's status writers on the graph (a new one: a new
        process under its name, lane_manager/driver_presence.py).
        """
        topic = self._status_subs[driver].topic_name
        return frozenset(bytes(info.endpoint_gid)
                         for info in self.get_publishers_info_by_topic(topic))

    def _publish_diagnostics(self, state: dict) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for name, level, message, values in lane_diagnostics(state):
            status = DiagnosticStatus(name=name, hardware_id=state['node'], level=bytes([level]),
                                      message=message)
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
            array.status.append(status)
        self._diag_pub.publish(array)

    # ------------------------------------------------------------ shutdown
    def cancel_everything(self, reason: str = 'lane manager shutting down') -> None:
        """Cancel what was forwarded and end every goal, so no caller and no driver hangs."""
        cancels = []
        with self._lock:
            self._closing = True
            for driver, driver_goal_id in self._keeper.forwarded_goals():
                cancels.append(self._driver_links[driver].client.cancel_goal_async(
                    goal_id_msg(driver_goal_id)))
        deadline = time.monotonic() + SHUTDOWN_CANCEL_WAIT_S
        while cancels and time.monotonic() < deadline and not all(f.done() for f in cancels):
            time.sleep(0.02)
        with self._lock:
            for caller in list(self._goals.values()):
                self._finish(EndCaller(caller.goal_id, 'aborted', reason))
        time.sleep(0.2)  # let the results go out before the executor stops


def main(argv: Optional[Sequence[str]] = None) -> int:
    import sys
    argv = list(sys.argv if argv is None else argv)
    parser = config_argument_parser('lane_manager', 'Arbitrates robot skill lanes.')
    args, ros_argv = parse_args(parser, argv)
    # Every callback is short and non-blocking: one thread saves a thread hand-over on each
    # hop of a relayed goal. Goals come in on a thread per lane (goal_intake.py), so a big
    # goal converted there stalls only its own lane (README "Big goal arguments").
    return run_node(lambda: LaneManager(args.config), 'lane_manager ready',
                    before_stop=lambda node: node.cancel_everything(),
                    num_threads=EXECUTOR_THREADS, argv=ros_argv)


if __name__ == '__main__':
    raise SystemExit(main())

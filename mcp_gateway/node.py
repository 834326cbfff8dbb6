"""The gateway's ROS node: goals to the lane manager's action servers, from asyncio.

rclpy 9 has no asyncio executor (and awaiting an rclpy Future from asyncio busy-polls a
core), so a single-threaded executor spins in a background thread and every rclpy future is
bridged into the asyncio loop with `add_done_callback` + `loop.call_soon_threadsafe`. A big
goal is sent from a worker thread, not the loop (interfaces.is_big_goal).

The gateway never talks to a driver: every goal goes to `<namespace>/skills/<skill>`, where
the lane manager arbitrates. A refusal carries no reason in ROS, so the reason is read from
the lane manager's lane state topic, keyed by the goal id the gateway chose.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Literal, Optional, Union

import anyio
from action_msgs.srv import CancelGoal
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from skill_lanes.goal_ids import goal_id_msg
from skill_lanes.config import Config, import_action_type
from skill_lanes.action_link import ActionServerLink
from skill_lanes.goal_outcome import TERMINAL_STATUSES, Outcome, outcome_of_status
from skill_lanes.interfaces import (APPROVAL_DECISIONS_QOS, GIVE_BACK_VERB, GOAL_AGENTS_QOS,
                                     LANE_STATE_QOS, TAKE_VERB, StackNames, is_big_goal)
from skill_lanes.lane_state import ApprovalRecord, AwaitingApproval, Ending, Refusal
from skill_lanes.runtime import BackgroundExecutor
from mcp_gateway.agents import CURRENT_AGENT
from mcp_gateway.lane_state_reader import LaneStateMessage, LatestLaneState

CANCEL_WAIT_S = 5.0
RESULT_RETRY_S = 1.0  # after the status says the goal ended, ask again for a missing result


class LaneManagerUnavailable(Exception):
    """The lane manager's action server for a skill did not answer in time."""


class ServiceAbsent(LaneManagerUnavailable):
    """The lane manager serves no such per-lane service (an older lane manager)."""


@dataclass
class GoalOutcome:
    """How a goal sent through the lane manager ended (or why it never started)."""

    goal_id: str
    accepted: bool
    status: Optional[str] = None          # succeeded | canceled | aborted (when accepted)
    result: Any = None                    # the Result message
    refusal: Optional[Refusal] = None     # the lane state's refusal record (when refused)
    ending: Optional[Ending] = None       # the lane state's ending record (why it ended)


@dataclass
class GoalEvents:
    """What a running goal reports while it runs (called on the asyncio loop)."""

    on_accepted: Callable[[str], None] = lambda goal_id: None
    on_feedback: Callable[[Any], None] = lambda feedback: None


def bridge_future(rclpy_future: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """An asyncio future resolved (on `loop`) when the rclpy future is done."""
    result: asyncio.Future = loop.create_future()

    def transfer(done: Any) -> None:
        if result.done():
            return
        exc = done.exception()
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(done.result())

    def on_done(done: Any) -> None:
        try:
            loop.call_soon_threadsafe(transfer, done)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    rclpy_future.add_done_callback(on_done)
    return result


class GatewayNode(Node):
    """Action clients to the lane manager, its lane state, and our tool metadata topic."""

    def __init__(self, config: Config, node_name: Optional[str] = None) -> None:
        super().__init__(node_name or f'mcp_gateway_{os.getpid()}')
        self.config = config
        # Every ROS name this gateway uses, resolved once under its own namespace as the lane
        # manager resolves its own (interfaces.StackNames). Nothing else in the gateway (the
        # lane view, the tools) builds a name: they go through this node.
        self.names = StackNames.of(self, config.lane_manager.namespace)
        names = self.names
        group = ReentrantCallbackGroup()
        self._group = group
        self.action_types = {name: import_action_type(skill.action_type)
                             for name, skill in config.skills.items()}
        self.skill_servers = {name: names.skill_server(name) for name in config.skills}
        self._links = {name: ActionServerLink(self, self.action_types[name], server, group)
                       for name, server in self.skill_servers.items()}
        self._lane_state = LatestLaneState(self.get_logger().warning, self.get_logger().info)
        self.create_subscription(String, names.lane_state, self._on_lane_state,
                                 LANE_STATE_QOS, callback_group=group)
        self._tool_lanes_pub = self.create_publisher(String, names.tool_lanes, LANE_STATE_QOS)
        self._agents_pub = self.create_publisher(String, names.goal_agents, GOAL_AGENTS_QOS)
        # The lane manager's per-lane services (std_srvs/Trigger): stop and release; take and
        # give_back only with gateway.operator_tools (a gateway holds no client it may not use:
        # under SROS2 its enclave may not call them). The lane view's stop button calls these
        # too (lane_view.LaneStopper).
        verbs = ('stop', 'release') + (
            (TAKE_VERB, GIVE_BACK_VERB) if config.gateway.operator_tools else ())
        self._lane_services = {
            (lane, verb): self.create_client(Trigger, names.lane_service(lane, verb),
                                             callback_group=group)
            for lane in config.lanes for verb in verbs}
        self._send_slots: Optional[asyncio.Semaphore] = None
        # Approval decisions (goal_approve / goal_deny, the lane view's buttons): operator
        # tools, so only with gateway.operator_tools, like take and give_back.
        self._decisions_pub = self.create_publisher(
            String, names.approval_decisions, APPROVAL_DECISIONS_QOS
        ) if config.gateway.operator_tools else None

    # ------------------------------------------------------------------ state
    def _on_lane_state(self, msg: String) -> None:
        """Only keeps the text: parsed by its first reader (lane_state_reader says why)."""
        self._lane_state.offer(msg.data)

    @property
    def lane_state_message(self) -> Optional[LaneStateMessage]:
        """The newest valid lane state message (as published, and typed), or None."""
        return self._lane_state.latest()

    @property
    def lane_state(self) -> Optional[dict]:
        """The newest valid lane state message as published (None: none valid yet)."""
        message = self._lane_state.latest()
        return message.body if message is not None else None

    def lane_record(self, lane: str, kind: Literal['last_refusals', 'last_endings'],
                    goal_id: str) -> Union[Refusal, Ending, None]:
        """The `last_refusals` / `last_endings` entry for a goal, if published yet."""
        message = self._lane_state.latest()
        record = message.model.lanes.get(lane) if message is not None else None
        for entry in getattr(record, kind, None) or []:
            if entry.goal_id == goal_id:
                return entry
        return None

    def awaiting_approval(self, goal_id: str) -> Optional[tuple[str, AwaitingApproval]]:
        """(lane, entry) of a goal the lane state lists as awaiting approval, else None."""
        message = self._lane_state.latest()
        for lane, record in (message.model.lanes if message is not None else {}).items():
            for entry in record.awaiting_approval:
                if entry.goal_id == goal_id:
                    return lane, entry
        return None

    def approval_record(self, goal_id: str) -> Optional[ApprovalRecord]:
        """The lane state's latest decision on a goal (approved, denied, timed_out)."""
        message = self._lane_state.latest()
        found = None
        for record in (message.model.lanes if message is not None else {}).values():
            for decision in record.approvals:
                if decision.goal_id == goal_id:
                    found = decision
        return found

    async def decide_goal(self, goal_id: str, approve: bool, by: str) -> ApprovalRecord:
        """Approve or deny a goal awaiting approval, confirmed by the lane state.

        Returns the lane state's decision record (goal_id, decision, by, at). Raises
        KeyError (text: why) when the goal awaits no approval, LaneManagerUnavailable when
        the decision is not confirmed within lane_manager_wait_s (it may still take effect:
        the lane state will say).
        """
        seen_by = time.monotonic() + self.config.gateway.refusal_wait_s
        while (self.awaiting_approval(goal_id) is None and self.approval_record(goal_id) is None
               and time.monotonic() < seen_by):  # a goal accepted a moment ago
            await asyncio.sleep(0.02)
        if self.awaiting_approval(goal_id) is None:
            earlier = self.approval_record(goal_id)
            if earlier is not None:
                raise KeyError(f'goal {goal_id} was already decided: {earlier.decision}'
                               + (f' by {earlier.by}' if earlier.by else ''))
            raise KeyError(f'no goal {goal_id} awaits approval (see lanes_status: '
                           'awaiting_approval)')
        if self._decisions_pub is None:
            raise LaneManagerUnavailable('approval decisions need gateway.operator_tools')
        wait_s = self.config.gateway.lane_manager_wait_s
        deadline = time.monotonic() + wait_s
        # Volatile and reliable: a message sent before the lane manager's reader is matched
        # would be lost, so wait for the match first.
        while self._decisions_pub.get_subscription_count() == 0:
            if time.monotonic() >= deadline:
                raise LaneManagerUnavailable('no lane manager follows approval decisions')
            await asyncio.sleep(0.02)
        self._decisions_pub.publish(String(data=json.dumps(
            {'goal_id': goal_id, 'approve': approve, 'by': by})))
        while True:
            record = self.approval_record(goal_id)
            if record is not None:
                return record
            if time.monotonic() >= deadline:
                raise LaneManagerUnavailable(
                    f'the lane manager did not confirm the decision on goal {goal_id} within '
                    f'{wait_s:g} s (the lane state will show it if it arrives)')
            await asyncio.sleep(0.02)

    def publish_tool_lanes(self, server_name: str, transport: str, tools: list[dict]) -> None:
        """Which lane each served tool runs in (see README, topic /skill_lanes/tool_lanes)."""
        body = {'gateway': self.get_fully_qualified_name(), 'server_name': server_name,
                'host': socket.gethostname(), 'pid': os.getpid(), 'transport': transport,
                'stamp': round(time.time(), 3), 'tools': tools}
        self._tool_lanes_pub.publish(String(data=json.dumps(body)))

    def server_ready(self, skill: str) -> bool:
        return self._links[skill].is_on_graph()

    # ------------------------------------------------------------------ goals
    async def run_goal(self, skill: str, goal: Any, events: GoalEvents,
                       goal_id: Optional[uuid.UUID] = None) -> GoalOutcome:
        """Send a goal through the lane manager and wait for its end.

        Raises LaneManagerUnavailable when the lane manager does not answer within the
        configured time. Cancelling the awaiting task cancels the goal (shielded), so an MCP
        cancellation or a vanished client never leaves a goal running on the robot.
        """
        settings = self.config.gateway
        loop = asyncio.get_running_loop()
        goal_uuid = goal_id or uuid.uuid4()
        gid = str(goal_uuid)
        lane = self.config.skills[skill].primary_lane
        await self._wait_server(skill, settings.lane_manager_wait_s)
        agent = CURRENT_AGENT.get()
        if agent is not None:  # who asked, before the goal: the lane manager names it
            self._agents_pub.publish(String(data=json.dumps(
                {'gateway': self.get_fully_qualified_name(),
                 'agents': {gid: {**agent, 'skill': skill}}})))

        def feedback(msg: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.on_feedback, msg.feedback)
            except RuntimeError:
                pass

        # At most `max_goals_in_flight` goal requests wait for the lane manager's answer at
        # once: 500 calls sent in one burst otherwise overflow its request queue and lose
        # their answers. The others wait here, each then sent with its full time to answer.
        async with self._slots():
            handle = await self._send_goal(skill, goal, goal_uuid, feedback, loop)
        if not handle.accepted:
            refusal = None
            if lane is not None:
                refusal = await self._wait_record(lane, 'last_refusals', gid,
                                                  settings.refusal_wait_s)
            return GoalOutcome(gid, accepted=False, refusal=refusal)
        events.on_accepted(gid)
        try:
            response = await self._wait_result(skill, handle, loop)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(CANCEL_WAIT_S, shield=True):
                await bridge_future(handle.cancel_goal_async(), loop)
            raise
        status = (outcome_of_status(response.status) or Outcome.ABORTED).value
        ending = None
        if status != 'succeeded' and lane is not None:
            ending = await self._wait_record(lane, 'last_endings', gid, settings.refusal_wait_s)
        return GoalOutcome(gid, True, status, response.result, ending=ending)

    def _slots(self) -> asyncio.Semaphore:
        """The semaphore bounding goal requests in flight (made on the running loop)."""
        if self._send_slots is None:
            self._send_slots = asyncio.Semaphore(self.config.gateway.max_goals_in_flight)
        return self._send_slots

    async def _send_goal(self, skill: str, goal: Any, goal_uuid: uuid.UUID,
                         feedback: Callable[[Any], None], loop) -> Any:
        """Send one goal request and wait for the lane manager's accept/reject answer."""
        wait_s = self.config.gateway.lane_manager_wait_s
        send_request = partial(self._links[skill].client.send_goal_async, goal,
                               feedback_callback=feedback, goal_uuid=goal_id_msg(goal_uuid))
        if is_big_goal(goal):
            # rclpy converts the goal to its wire form right here (0.3 s for 150k trajectory
            # points): in a worker thread, so that every other call of this gateway goes on.
            send = await anyio.to_thread.run_sync(send_request)
        else:
            send = send_request()
        try:
            with anyio.fail_after(wait_s):
                return await bridge_future(send, loop)
        except TimeoutError:
            # The answer may only have been lost: make sure the goal does not run unseen.
            self._cancel_by_id(skill, goal_uuid)
            raise LaneManagerUnavailable(
                f'the lane manager did not answer the goal for {skill!r} within '
                f'{wait_s:g} s') from None
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(CANCEL_WAIT_S, shield=True):
                await self._cancel_when_accepted(send, loop)
            raise

    async def call_lane_service(self, lane: str, verb: str,
                                discovery_wait_s: float = 1.0) -> tuple[bool, str]:
        """Call the lane manager's `<ns>/lanes/<lane>/<verb>` Trigger: (success, message).

        Raises ServiceAbsent when no lane manager serves it within `discovery_wait_s`, and
        LaneManagerUnavailable when it does not answer in `lane_manager_wait_s`.
        """
        client = self._lane_services.get((lane, verb))
        if client is None:
            raise ServiceAbsent(f'this gateway has no {verb} service client for lane {lane!r} '
                                '(gateway.operator_tools is off)')
        deadline = time.monotonic() + discovery_wait_s
        while not client.service_is_ready():
            if time.monotonic() >= deadline:
                raise ServiceAbsent(f'the lane manager serves no {client.srv_name} service')
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        future = client.call_async(Trigger.Request())
        try:
            with anyio.fail_after(self.config.gateway.lane_manager_wait_s):
                response = await bridge_future(future, loop)
        except TimeoutError:
            client.remove_pending_request(future)
            raise LaneManagerUnavailable(
                f'the lane manager did not answer {client.srv_name}') from None
        return bool(response.success), str(response.message)

    async def _wait_result(self, skill: str, handle: Any, loop) -> Any:
        """The result, or LaneManagerUnavailable if the lane manager vanishes meanwhile.

        A result request can be lost (a burst of them overflows the server's request queue,
        depth 10 by default) and would then wait forever. The goal's status (the action's
        status topic) says when it has ended: a result still missing RESULT_RETRY_S after
        that is asked for again.
        """
        result = bridge_future(handle.get_result_async(), loop)
        link = self._links[skill]
        link.reset_probe()
        lost_after = self.config.lane_manager.driver_lost_s * 2
        ended_at: Optional[float] = None
        while True:
            done, _ = await asyncio.wait({result}, timeout=0.5)
            if done:
                return result.result()
            now = time.monotonic()
            if not link.probe(now, lost_after):
                raise LaneManagerUnavailable(
                    f'the lane manager stopped answering while {skill!r} was running')
            if handle.status in TERMINAL_STATUSES:
                ended_at = ended_at or now
                if now - ended_at >= RESULT_RETRY_S:
                    result = bridge_future(handle.get_result_async(), loop)
                    ended_at = now

    def _cancel_by_id(self, skill: str, goal_uuid: uuid.UUID) -> None:
        """Fire-and-forget cancel of one goal id (no handle needed)."""
        request = CancelGoal.Request()
        request.goal_info.goal_id = goal_id_msg(goal_uuid)
        self._links[skill].cancel_service.call_async(request)

    async def _cancel_when_accepted(self, send: Any, loop) -> None:
        handle = await bridge_future(send, loop)
        if handle.accepted:
            await bridge_future(handle.cancel_goal_async(), loop)

    async def _wait_server(self, skill: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # Ready from our side is not enough: until the lane manager has discovered this
        # node's readers too, its goal response is dropped (seen on fresh gateways: the goal
        # ran, its caller was told the lane manager did not answer). Its lane state reaching
        # us shows it has discovered our readers: any message, valid or not (nothing parsed
        # here; a lane manager whose messages are refused still runs goals, their refusal
        # reasons are then unknown).
        while not self.server_ready(skill) or not self._lane_state.heard:
            if time.monotonic() >= deadline:
                raise LaneManagerUnavailable(
                    f'no lane manager serves {self.skill_servers[skill]} '
                    f'(waited {timeout:g} s): is the lane_manager node running?')
            await asyncio.sleep(0.05)

    async def _wait_record(self, lane: str, kind: Literal['last_refusals', 'last_endings'],
                           goal_id: str, timeout: float) -> Union[Refusal, Ending, None]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.lane_record(lane, kind, goal_id)
            if record is not None or time.monotonic() >= deadline:
                return record
            await asyncio.sleep(0.02)

    async def cancel_all(self, skill: str) -> int:
        """Cancel every goal (running and queued) of one skill at the lane manager.

        Uses the action protocol's cancel-all request (zero goal id, zero stamp) on the
        skill's cancel service. Returns how many goals the lane manager is cancelling.
        """
        service = self._links[skill].cancel_service
        if not service.service_is_ready():
            raise LaneManagerUnavailable(f'no lane manager serves {self.skill_servers[skill]}')
        loop = asyncio.get_running_loop()
        with anyio.fail_after(self.config.gateway.lane_manager_wait_s):
            response = await bridge_future(service.call_async(CancelGoal.Request()), loop)
        return len(response.goals_canceling)


@dataclass
class RosRuntime:
    """The gateway node spinning in the background, for the MCP layer to use."""

    node: GatewayNode
    executor: BackgroundExecutor = field(repr=False)

    @classmethod
    def start(cls, config: Config, node_name: Optional[str] = None) -> 'RosRuntime':
        node = GatewayNode(config, node_name)
        # Its callbacks only hand data to asyncio: one thread, no hand-over per callback.
        return cls(node, BackgroundExecutor(node, num_threads=1))

    def stop(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()

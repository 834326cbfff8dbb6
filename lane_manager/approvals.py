"""Operator approval of goals: `<ns>/lanes/<lane>/approve` (std_srvs/SetBool) and
`<ns>/approval_decisions` (std_msgs/String JSON).

A goal of an `approval: operator` skill waits in its lane's awaiting list (the arbiter) until
one of these decides it:
- the lane's SetBool service decides its OLDEST waiting goal (data true = approve, false =
  deny), so a physical button wired to a service call can do it; success false with a
  message when none waits;
- a decision message `{"goal_id", "approve", "by"}` decides that goal (the gateway's
  goal_approve / goal_deny tools and the lane view's buttons): ROS has no request/response
  interface with a string argument among the wheels available, so the answer is the lane
  state (`approvals`: goal_id, decision, by, at), which the sender waits for.
Every decision is a log line (the keeper's Notice) and a lane state record. A thin shell
around `LaneKeeper.decide`.
"""
from __future__ import annotations

import json
from functools import partial
from typing import Any, Optional

from std_msgs.msg import String
from std_srvs.srv import SetBool

from skill_lanes.interfaces import (APPROVAL_BY_LIMIT, APPROVAL_DECISIONS_QOS, APPROVE_VERB,
                                     StackNames)


def parse_decision(data: str) -> Optional[tuple[str, bool, str]]:
    """(goal_id, approve, by) from a decision message; None if it is not one."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    goal_id, approve, by = body.get('goal_id'), body.get('approve'), body.get('by')
    if not isinstance(goal_id, str) or not isinstance(approve, bool):
        return None
    by = by.strip()[:APPROVAL_BY_LIMIT] if isinstance(by, str) and by.strip() else 'an operator'
    return goal_id, approve, by


class Approvals:
    """The approve services of every lane and the decision topic of one lane manager."""

    def __init__(self, node: Any, names: StackNames) -> None:
        self._node = node
        self._names: dict[str, str] = {}
        for lane in node.config.lanes:
            name = self._names[lane] = names.lane_service(lane, APPROVE_VERB)
            node.create_service(SetBool, name, partial(self._on_button, lane),
                                callback_group=node.callback_group)
        node.create_subscription(String, names.approval_decisions,
                                 self._on_decision, APPROVAL_DECISIONS_QOS,
                                 callback_group=node.callback_group)

    def _on_button(self, lane: str, request: Any, response: Any) -> Any:
        by = f'an operator (service {self._names[lane]})'
        with self._node.keeper_turn() as turn:
            decided, text, actions = turn.keeper.decide_oldest(lane, bool(request.data), by,
                                                               turn.now)
            turn.carry_out(actions, state_changed=decided)
        if not decided:
            self._node.get_logger().info(f'{self._names[lane]}: {text}')
        response.success, response.message = decided, text
        return response

    def _on_decision(self, msg: String) -> None:
        parsed = parse_decision(msg.data)
        if parsed is None:
            self._node.get_logger().warning(
                f'ignored an approval decision that is not {{"goal_id", "approve", "by"}}: '
                f'{msg.data[:200]!r}')
            return
        goal_id, approve, by = parsed
        with self._node.keeper_turn() as turn:
            decided, text, actions = turn.keeper.decide(goal_id, approve, by, turn.now)
            turn.carry_out(actions, state_changed=decided)
        if not decided:
            self._node.get_logger().info(f'approval decision by {by}: {text}')

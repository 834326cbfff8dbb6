"""The lane manager follows an emergency stop topic (std_msgs/Bool, reliable + transient local).

True: every goal of the configured lanes (default: all) is cancelled at its driver, queues are
emptied, and every new goal is refused with reason `emergency_stop` until the topic turns
false. A thin shell around `LaneKeeper.block`, reached through the node's `keeper_turn`.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from std_msgs.msg import Bool

from lane_manager.interfaces import EMERGENCY_STOP_QOS, EMERGENCY_STOP_REASON


class EmergencyStop:
    """One lane manager's view of the emergency stop topic (shown in lane state)."""

    def __init__(self, node: Any, topic: Optional[str], lanes: list[str]) -> None:
        self._node = node
        self.topic = topic
        self.lanes = lanes
        self.active = False
        self.since: Optional[float] = None
        self.count = 0
        if topic:
            node.create_subscription(Bool, topic, self._on_message, EMERGENCY_STOP_QOS,
                                     callback_group=node.callback_group)

    def reason(self) -> str:
        return (f'{EMERGENCY_STOP_REASON}: the emergency stop ({self.topic}) is on; '
                'goals are refused until it turns false')

    def _on_message(self, msg: Bool) -> None:
        node = self._node
        active = bool(msg.data)
        with node.keeper_turn() as turn:
            if active == self.active:
                return
            self.active = active
            self.since = time.time() if active else None
            self.count += int(active)
            message, actions = turn.keeper.block(
                EMERGENCY_STOP_REASON, active, self.lanes, self.reason(), turn.now)
            turn.carry_out(actions)
        if active:
            node.get_logger().error(f'EMERGENCY STOP on {self.topic}: {message}')
        else:
            node.get_logger().warning(f'emergency stop released on {self.topic}: {message}')

    def snapshot(self) -> dict:
        return {'topic': self.topic, 'active': self.active, 'lanes': list(self.lanes),
                'since': round(self.since, 3) if self.since else None, 'count': self.count}

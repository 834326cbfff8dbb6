"""Helpers for the driver-truth tests: the per-lane operator services and /diagnostics."""
from __future__ import annotations

from typing import Any

from std_srvs.srv import Trigger

from skill_lanes.interfaces import lane_service_name
from support import wait_until


def call_lane_service(node: Any, lane: str, verb: str, namespace: str = '/lane_manager',
                      timeout: float = 15.0) -> Any:
    """Call `<namespace>/lanes/<lane>/<verb>` (std_srvs/Trigger); returns the response."""
    client = node.create_client(Trigger, lane_service_name(namespace, lane, verb))
    try:
        wait_until(client.service_is_ready, timeout, what=f'service {lane}/{verb}')
        future = client.call_async(Trigger.Request())
        wait_until(future.done, timeout, interval=0.01, what=f'{lane}/{verb} answer')
        return future.result()
    finally:
        node.destroy_client(client)


class DiagnosticsWatch:
    """The latest /diagnostics status per name, seen by a subscription on `node`."""

    def __init__(self, node: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        self.node = node
        self.seen: dict[str, Any] = {}
        self.sub = node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda msg: self.seen.update({s.name: s for s in msg.status}), 10)

    def wait_for(self, lane: str, predicate, timeout: float = 15.0, what: str = '') -> Any:
        name = f'skill_lanes: lane {lane}'
        return wait_until(lambda: name in self.seen and predicate(self.seen[name]) and
                          self.seen[name], timeout, what=what or f'/diagnostics of {lane}')

    def close(self) -> None:
        self.node.destroy_subscription(self.sub)

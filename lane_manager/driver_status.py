"""What one driver itself says it runs: its `<action>/_action/status` (GoalStatusArray).

Plain Python (no ROS import): the node feeds in the decoded status lists and the driver's
presence on the graph; the lane keeper asks what each driver runs.

Why the driver's word: the lane manager's own bookkeeping cannot see a cancel the driver
ignored, a goal a stalled driver resumes, a goal it accepted after the lane manager gave up,
goals that ran before the lane manager (re)started, or goals sent around it. Every action
server, rclcpp or rclpy, publishes each goal's status (transient local), so a subscriber
learns the current list at once. Until it is known, the driver counts as busy.
"""
from __future__ import annotations

import enum
from typing import Optional

from lane_manager.goal_lifecycle import ACTIVE_STATUSES

STATUS_SETTLE_S = 1.0  # a driver that answered us this long ago without a status runs nothing


class Presence(str, enum.Enum):
    UNKNOWN = 'unknown'  # on the graph (or maybe), its status not known yet
    KNOWN = 'known'      # its status list is known (or it has published none: no goals)
    GONE = 'gone'        # left the graph (or never came up): runs nothing


class DriverView:
    """The latest status list of one driver, and whether it is there at all."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.presence = Presence.UNKNOWN
        self.statuses: dict[str, int] = {}
        self.answering_since: Optional[float] = None
        self.reachable = True

    @property
    def active(self) -> set[str]:
        if self.presence is not Presence.KNOWN:
            return set()
        return {gid for gid, code in self.statuses.items() if code in ACTIVE_STATUSES}

    def code_of(self, goal_id: str) -> Optional[int]:
        return self.statuses.get(goal_id)

    def report(self, statuses: dict[str, int]) -> bool:
        """A status message. Returns True when it made the status known (first word)."""
        first = self.presence is not Presence.KNOWN
        self.statuses = dict(statuses)
        self.presence = Presence.KNOWN
        self.reachable = True
        return first

    def answering(self, now: float) -> bool:
        """The driver is on the graph and answers: after a settle time without any status
        message, it has none to give (an action server publishes only once it has goals).
        Returns True when that made the status known."""
        self.reachable = True
        if self.presence is Presence.GONE:
            self.presence = Presence.UNKNOWN
            self.statuses = {}
        if self.answering_since is None:
            self.answering_since = now
        if self.presence is Presence.UNKNOWN and now - self.answering_since >= STATUS_SETTLE_S:
            self.presence = Presence.KNOWN
            return True
        return False

    def gone(self) -> bool:
        """Left the graph. Returns True if that is news."""
        self.answering_since = None
        self.reachable = False
        if self.presence is Presence.GONE:
            return False
        self.presence = Presence.GONE
        self.statuses = {}
        return True

    def snapshot(self) -> dict:
        return {'status_known': self.presence is Presence.KNOWN,
                'reachable': self.reachable and self.presence is not Presence.GONE,
                'present': self.presence is not Presence.GONE,
                'active_goals': sorted(self.active)}

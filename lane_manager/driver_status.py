"""What one driver itself says it runs: its `<action>/_action/status` (GoalStatusArray).

Plain Python (no ROS import): the node feeds in the decoded status lists and the driver's
presence on the graph; the lane keeper asks what each driver runs.

Why the driver's word: the lane manager's own bookkeeping cannot see a cancel the driver
ignored, a goal a stalled driver resumes, a goal it accepted after the lane manager gave up,
goals that ran before the lane manager (re)started, or goals sent around it. Every action
server, rclcpp or rclpy, publishes each goal's status (transient local), so a subscriber
learns the current list at once after its reader is matched with the driver's status writer.
Until it is known, the driver counts as busy.

When is "no status message" the driver's word that it runs nothing? An action server
publishes only once it has had goals, so silence must be inferred: it counts once our status
reader has been matched with the driver's status writer (the transient-local list would have
arrived) for STATUS_SETTLE_S. That the driver answers our requests is not enough: its goal
services and its status topic are matched separately, and on a loaded host the status came
seconds after the services (the soak caught a restarted lane manager taking a running goal's
lane as free and sending a second goal 33 ms after its start).
"""
from __future__ import annotations

import enum
from typing import Optional

from lane_manager.goal_lifecycle import ACTIVE_STATUSES

STATUS_SETTLE_S = 1.0  # matched with a driver's status writer this long without a message:
                       # it runs nothing


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
        self.silent_since: Optional[float] = None  # answering, status matched, no message
        self.answers = False         # it has answered us since it (re)appeared
        self.status_matched = False  # our status reader is matched with its status writer
        self.reachable = True

    @property
    def active(self) -> set[str]:
        if self.presence is not Presence.KNOWN:
            return set()
        return {gid for gid, code in self.statuses.items() if code in ACTIVE_STATUSES}

    def report(self, statuses: dict[str, int]) -> bool:
        """A status message. Returns True when it made the status known (first word)."""
        first = self.presence is not Presence.KNOWN
        self.statuses = dict(statuses)
        self.presence = Presence.KNOWN
        self.reachable = True
        return first

    def answering(self, now: float, status_matched: bool) -> bool:
        """The driver is on the graph and answers us; `status_matched`: our status reader is
        matched with its status writer. Silence for STATUS_SETTLE_S after both means it has
        no goals (see the module's docstring). Returns True when that made the status known.
        """
        self.reachable = True
        self.answers = True
        self.status_matched = status_matched
        if self.presence is Presence.GONE:
            self.presence = Presence.UNKNOWN
            self.statuses = {}
        if not status_matched:
            self.silent_since = None
            return False
        if self.silent_since is None:
            self.silent_since = now
        if self.presence is Presence.UNKNOWN and now - self.silent_since >= STATUS_SETTLE_S:
            self.presence = Presence.KNOWN
            return True
        return False

    def unknown_because(self) -> str:
        """Why its status is not known yet, for the lane's held_because."""
        if self.answers and not self.status_matched and self.presence is Presence.UNKNOWN:
            return (f'the goal status of driver {self.name} is not known yet: its status '
                    'topic has not reached the lane manager')
        return f'the goal status of driver {self.name} is not known yet'

    def gone(self) -> bool:
        """Left the graph. Returns True if that is news."""
        self.silent_since = None
        self.answers = False
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

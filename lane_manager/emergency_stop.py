"""The lane manager follows its emergency stop sources (std_msgs/Bool topics, reliable +
transient local: a stop published before the lane manager started still counts).

A thin shell: the rules (per-publisher latching, heartbeats, never-heard sources, what each
reason says) live in lane_manager/stop_sources.py, without ROS. This shell subscribes each
source's topic, says who published each message (`_identify`), watches the graph for
publishers leaving, runs the heartbeat timer, and blocks or opens each lane through the
node's one door to the keeper (`keeper_turn`, `LaneKeeper.block`): a stop cancels every goal
of its lanes at the drivers, empties their queues and refuses new goals with reason
`emergency_stop: ...` naming every source that holds it; clearing it restarts nothing.
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any, Optional, Sequence

from std_msgs.msg import Bool

from skill_lanes.config import EmergencyStopSource
from skill_lanes.interfaces import EMERGENCY_STOP_QOS, EMERGENCY_STOP_REASON
from lane_manager.stop_sources import LaneStops, Publisher, SourceSpec, StopSources

GRAPH_PERIOD_S = 0.2     # how often the graph is asked which publishers are still there
REWORD_PERIOD_S = 1.0    # how often an ageing reason ("silent for N s") is rewritten
# The heartbeat timer runs at this fraction of the smallest heartbeat_s (within bounds):
# a silent source is noticed at most heartbeat_s / 20 late (bench_emergency_stop.py --heartbeat).
TIMER_FRACTION = 1 / 20
TIMER_MIN_S, TIMER_MAX_S = 0.005, GRAPH_PERIOD_S
UNKNOWN_NODE = '_NODE_NAME_UNKNOWN_'
NAMED_LIMIT = 1024       # publisher names remembered after they leave the graph


def _gid_hex(data: Any) -> str:
    """A publisher gid (bytes from MessageInfo, a list from the graph) as hex: the first 16
    bytes, the part both carry (rmw gids are 16 bytes used of up to 24 stored).
    """
    return bytes(data)[:16].hex()


def _node_name(info: Any) -> Optional[str]:
    if not info.node_name or info.node_name == UNKNOWN_NODE:
        return None
    namespace = info.node_namespace.rstrip('/')
    return f'{namespace}/{info.node_name}'


class EmergencyStop:
    """One lane manager's emergency stop sources (lane state `emergency_stop`)."""

    def __init__(self, node: Any, sources: Sequence[EmergencyStopSource],
                 all_lanes: Sequence[str]) -> None:
        self._node = node
        specs = [SourceSpec(node.resolve_topic_name(s.topic), tuple(s.lanes or all_lanes),
                            s.heartbeat_s, s.is_required) for s in sources]
        self._sources = StopSources(specs, time.monotonic())
        self.topic: Optional[str] = specs[0].topic if specs else None
        self.lanes: list[str] = list(dict.fromkeys(n for s in specs for n in s.lanes))
        self.active = False
        self.since: Optional[float] = None
        self.count = 0
        self._stops = LaneStops(self._sources, self.lanes, EMERGENCY_STOP_REASON)
        self._graph: dict[str, dict[str, Publisher]] = {s.topic: {} for s in specs}
        self._due: Optional[float] = None
        self._named: dict[str, Publisher] = {}  # gid -> its publisher as the graph named it
        now = time.monotonic()
        self._graph_at = now
        self._reword_at = now + REWORD_PERIOD_S
        for spec in specs:
            node.create_subscription(Bool, spec.topic, partial(self._on_message, spec.topic),
                                     EMERGENCY_STOP_QOS, callback_group=node.callback_group)
        if specs:
            beats = [s.heartbeat_s for s in specs if s.heartbeat_s is not None]
            period = min(beats) * TIMER_FRACTION if beats else TIMER_MAX_S
            node.create_timer(min(max(period, TIMER_MIN_S), TIMER_MAX_S), self._on_timer,
                              callback_group=node.callback_group)
            with node.keeper_turn() as turn:  # required sources never heard: stop at once
                self._update(turn, publish=False)

    # ------------------------------------------------------------ ROS events
    def _on_message(self, topic: str, msg: Bool, info: Any) -> None:
        """`info` without a default: rclpy passes MessageInfo only to a callback that takes
        two arguments (checked by binding its signature).
        """
        publisher = self._identify(topic, info)
        with self._node.keeper_turn() as turn:
            self._sources.heard(topic, publisher, bool(msg.data), turn.now)
            self._update(turn, state_changed=True)

    def _on_timer(self) -> None:
        now = time.monotonic()
        graph_due = now >= self._graph_at
        due = self._due is not None and now >= self._due
        if not (graph_due or due or (self._stops.active and now >= self._reword_at)):
            return
        seen = {}
        if graph_due:
            self._graph_at = now + GRAPH_PERIOD_S
            seen = {topic: self._publishers(topic) for topic in self._graph}
        with self._node.keeper_turn() as turn:
            changed = False
            for topic, current in seen.items():
                for gid, publisher in self._graph[topic].items():
                    if gid not in current:
                        self._sources.publisher_gone(topic, publisher, len(current), turn.now)
                        self._node.get_logger().warning(
                            f'emergency stop source {topic}: {publisher.label} left the graph')
                        changed = True
                for gid, publisher in current.items():
                    before = self._graph[topic].get(gid)
                    if publisher.node is not None and (before is None or before.node is None):
                        self._sources.named(topic, publisher)
                        changed = True
                changed = changed or current.keys() != self._graph[topic].keys()
                self._graph[topic] = current
            self._update(turn, state_changed=changed)

    def _publishers(self, topic: str) -> dict[str, Publisher]:
        """The topic's publishers on the graph now, by gid."""
        out = {}
        for info in self._node.get_publishers_info_by_topic(topic):
            gid = _gid_hex(info.endpoint_gid)
            out[gid] = Publisher(gid, _node_name(info))
            if out[gid].node is not None and gid not in self._named:
                self._named[gid] = out[gid]
                while len(self._named) > NAMED_LIMIT:
                    del self._named[next(iter(self._named))]
        return out

    def _identify(self, topic: str, info: Any) -> Publisher:
        """Who sent a message: its gid (rclpy >= 8 gives it in MessageInfo) named through
        the graph. Without a gid (Jazzy) the topic's only publisher, else unidentified.
        """
        gid_info = info.get('publisher_gid') if isinstance(info, dict) else None
        if gid_info is not None:
            gid = _gid_hex(gid_info['data'])
            # The gid is exact: the timer's graph sample names it, unless that sample does not
            # have it or has no name for it yet (then the graph is asked now). A message can be
            # taken after its publisher left the graph (a killed process's last one): the
            # name it had is remembered.
            known = self._graph.get(topic, {})
            if known.get(gid) is None or known[gid].node is None:
                known = self._publishers(topic)
            return known.get(gid) or self._named.get(gid) or Publisher(gid, None)
        # No gid (Jazzy): which publishers there are right now decides, so ask the graph.
        known = self._publishers(topic)
        if len(known) == 1:
            return next(iter(known.values()))
        return Publisher.unidentified(p.label for p in known.values())

    # ------------------------------------------------------------ the lanes
    def _update(self, turn: Any, state_changed: bool = False, publish: bool = True) -> None:
        """Block, reword or open each lane as the sources now say (inside a keeper turn)."""
        now = turn.now
        reword = now >= self._reword_at
        if reword:
            self._reword_at = now + REWORD_PERIOD_S
        done = self._stops.sync(turn.keeper, now, reword)
        self._due = self._sources.next_deadline()
        if self._stops.active != self.active:
            self.active = self._stops.active
            self.since = time.time() if self.active else None
            self.count += int(self.active)
        if (publish and (state_changed or done.changed)) or done.actions:
            turn.carry_out(done.actions)
        logger = self._node.get_logger()
        if done.stopped:
            holding = '; '.join(f'{t}: {w}' for t, w in self._sources.holding(now))
            logger.error(f'EMERGENCY STOP ({holding}): {"; ".join(done.stopped)}')
        if done.released:
            logger.warning(f'emergency stop released on lanes {", ".join(done.released)} '
                           '(nothing restarts: callers send new goals)')

    def snapshot(self) -> dict:
        """Lane state `emergency_stop`: the older keys (topic = the first source's) and every
        source with its last value, age and publisher.
        """
        sources = self._sources.snapshot(time.monotonic())
        for source in sources:  # who is on the graph to publish there (polled)
            source['publishers'] = sorted(p.label for p in self._graph[source['topic']].values())
        return {'topic': self.topic, 'active': self.active, 'lanes': list(self.lanes),
                'since': round(self.since, 3) if self.since else None, 'count': self.count,
                'sources': sources}

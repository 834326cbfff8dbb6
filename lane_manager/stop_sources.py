"""Emergency stop sources: which lanes are stopped, and by whom. Pure Python, no ROS import.

Any number of sources (lane_manager.emergency_stop.sources), each a std_msgs/Bool topic
covering some lanes. A lane is stopped while ANY source covering it holds the stop. The
node shell (lane_manager/emergency_stop.py) feeds in what the graph says (`heard`,
`publisher_gone`, `tick`) and blocks or opens the lanes (`LaneKeeper.block`) as
`lane_reasons` says. Clearing a stop never restarts anything: the keeper has already ended
the goals the stop cancelled; callers send new goals.

A source holds the stop for these reasons (each named in the refusal, lane state and
/diagnostics):
- `on (set by <publisher>)`: a publisher said true. That stop is latched PER PUBLISHER: only
  a false of that same publisher clears it (ISO 13850: a stop is reset where it was set).
  A second publisher's false on the same topic (a fleet supervisor beside a pendant)
  clears nothing but its own stops. A latch whose publisher left the graph stays on, and
  says so: `... ; its publisher left the graph`.
- `silent for N s (heartbeat_s=H)`: a heartbeat source (heartbeat_s set) heard nothing for H
  seconds: its device may be dead (battery, radio, crash). Like Spot's E-Stop endpoints and
  twist_mux's locks with a timeout: a stop source that goes quiet stops the robot.
- `its publisher <p> left the graph`: a heartbeat source's last publisher left the graph
  (faster than its silence when the graph notices first).
- `never heard since start`: a required source (default for heartbeat sources) that has not
  spoken since the lane manager started.

Silence, departure and never-heard are cleared by the source speaking again: any message of
any of its publishers (a false is "all clear, I am alive"; a true also checks in, and
latches). Chosen so because the silence stop is the lane manager's own inference, not a
stop anyone set: the device's first message after it comes back is a deliberate message of
that device, and nothing restarts when the stop clears (the reset ISO 13850 asks for is the
device's own word plus a new goal from a caller). A stop the device SET (a true) stays
latched until that device says false.

Publisher identity (`Publisher`) and the latch key. A latch is keyed by the publishing
NODE's fully qualified name where the graph names it, else by the publisher's gid:
- a pendant whose node died with the stop on comes back as a new publisher (new gid) under
  the same node name: it can clear its own stop, as an operator expects of the pendant;
- the supervisor is another node: its false never matches the pendant's latch;
- a gid that the graph did not (yet) name matches by gid, and learns its node name later.
Two nodes started under the same name (ROS warns about that) count as one publisher.
On an open graph any process may take that name: identity here is bookkeeping for honest
operators and devices, not security (SROS2 is what closes the graph).

Where the middleware does not say which publisher sent a message (rclpy 7, Jazzy, gives no
publisher gid) the shell attributes a message to its topic's only publisher; with several
publishers on the topic it cannot, and passes `Publisher.unidentified(candidates)`. An
unidentified true latches as `an unidentified publisher (one of ...)`; an unidentified
false clears nothing; that latch clears only once EVERY candidate has said false on its own
(identified: alone on the topic). Safe, not convenient: on Jazzy give each source its own
topic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol, Sequence


@dataclass(frozen=True)
class SourceSpec:
    """One configured emergency stop source."""

    topic: str
    lanes: tuple[str, ...]          # the lanes it stops (resolved: never empty)
    heartbeat_s: Optional[float] = None
    required: bool = False          # never heard since start = stop


@dataclass(frozen=True)
class Publisher:
    """Who sent a message: the endpoint gid (hex) and its node's name, where known."""

    gid: Optional[str] = None
    node: Optional[str] = None
    candidates: tuple[str, ...] = ()  # unidentified: the publishers it may have been

    @staticmethod
    def unidentified(candidates: Iterable[str]) -> 'Publisher':
        return Publisher(None, None, tuple(sorted(set(candidates))))

    @property
    def identified(self) -> bool:
        return self.gid is not None or self.node is not None

    @property
    def key(self) -> str:
        """The latch key: node name, else gid, else the unidentified marker."""
        return self.node or (f'gid:{self.gid}' if self.gid else '?')

    @property
    def label(self) -> str:
        if self.node:
            return self.node
        if self.gid:
            return f'publisher gid {self.gid}'
        names = ', '.join(self.candidates) or 'unknown'
        return f'an unidentified publisher (one of: {names})'

    def same(self, other: 'Publisher') -> bool:
        """The same publisher (same gid, or same node name). Unidentified is nobody."""
        if self.gid is not None and self.gid == other.gid:
            return True
        return self.node is not None and self.node == other.node


@dataclass
class _Latch:
    publisher: Publisher
    since: float
    gone: bool = False
    said_false: set[str] = field(default_factory=set)  # unidentified: candidates cleared


@dataclass
class _Source:
    spec: SourceSpec
    started: float
    latches: dict[str, _Latch] = field(default_factory=dict)
    last_value: Optional[bool] = None
    last_heard: Optional[float] = None
    last_publisher: Optional[Publisher] = None
    gone_why: Optional[str] = None  # a heartbeat source whose last publisher left

    def whys(self, now: float) -> list[tuple[str, str]]:
        """(kind, text) of each reason it holds the stop; kind stays while text ages."""
        out = []
        for key, latch in self.latches.items():
            why = f'on (set by {latch.publisher.label})'
            if latch.gone:
                why += '; its publisher left the graph'
            out.append((f'on:{key}:{latch.gone}', why))
        beat = self.spec.heartbeat_s
        if self.last_heard is None:
            if self.spec.required:
                out.append(('never', 'never heard since start'))
        elif self.gone_why is not None:
            out.append(('gone', self.gone_why))
        elif beat is not None and now - self.last_heard >= beat:
            out.append(('silent', f'silent for {_seconds(now - self.last_heard)} s '
                                  f'(heartbeat_s={beat:g})'))
        return out


def _seconds(value: float) -> str:
    return f'{value:.1f}' if value < 10 else f'{value:.0f}'


class StopSources:
    """Every emergency stop source of one lane manager. Not thread-safe: the shell
    serializes (it calls inside the node's keeper turn).
    """

    def __init__(self, specs: Sequence[SourceSpec], now: float) -> None:
        topics = [s.topic for s in specs]
        if len(set(topics)) != len(topics):
            raise ValueError(f'an emergency stop topic is given twice: {topics}')
        self._sources = {s.topic: _Source(s, now) for s in specs}

    @property
    def specs(self) -> list[SourceSpec]:
        return [s.spec for s in self._sources.values()]

    # ----------------------------------------------------------------- events
    def heard(self, topic: str, publisher: Publisher, value: bool, now: float) -> None:
        """A message on a source's topic: `value` true sets (latches) the publisher's stop,
        false clears the stops that same publisher set. Either checks the source in.
        """
        source = self._sources[topic]
        source.last_value, source.last_heard = bool(value), now
        source.last_publisher, source.gone_why = publisher, None
        if value:
            mine = next((k for k, latch in source.latches.items()
                         if publisher.identified and latch.publisher.same(publisher)), None)
            if mine is not None:  # again (or its node's new gid): refresh who it is
                latch = source.latches.pop(mine)
                latch.publisher, latch.gone = publisher, False
                source.latches[publisher.key] = latch
            elif publisher.key not in source.latches:
                source.latches[publisher.key] = _Latch(publisher, now)
            else:  # an unidentified true again: more candidates, none cleared yet
                latch = source.latches[publisher.key]
                latch.publisher = Publisher.unidentified(
                    latch.publisher.candidates + publisher.candidates)
                latch.said_false.clear()
            return
        if not publisher.identified:
            return  # nobody can be named: a false that clears nothing
        for key, latch in list(source.latches.items()):
            if latch.publisher.identified:
                if latch.publisher.same(publisher):
                    del source.latches[key]
            elif publisher.node is not None:
                latch.said_false.add(publisher.node)
                if latch.said_false >= set(latch.publisher.candidates):
                    del source.latches[key]

    def publisher_gone(self, topic: str, publisher: Publisher, remaining: int,
                       now: float) -> None:
        """A publisher of the topic left the graph; `remaining` publishers are left."""
        source = self._sources[topic]
        for latch in source.latches.values():
            if latch.publisher.identified and latch.publisher.same(publisher):
                latch.gone = True
        if (source.spec.heartbeat_s is not None and remaining == 0
                and source.last_heard is not None and source.gone_why is None):
            source.gone_why = f'its publisher {publisher.label} left the graph'

    def named(self, topic: str, publisher: Publisher) -> None:
        """The graph now names a publisher it did not name when its messages came (the
        node's name reaches the graph on its own topic, sometimes seconds late): its
        latches and last message learn the name (so its restarted node can clear them).
        """
        source = self._sources[topic]
        if publisher.node is None or publisher.gid is None:
            return
        last = source.last_publisher
        if last is not None and last.node is None and last.gid == publisher.gid:
            source.last_publisher = publisher
        for key, latch in list(source.latches.items()):
            if latch.publisher.node is None and latch.publisher.gid == publisher.gid:
                del source.latches[key]
                latch.publisher = publisher
                source.latches[publisher.key] = latch

    def tick(self, now: float) -> None:
        """Time passes (silence is computed from `now`: nothing to store)."""

    # ---------------------------------------------------------------- queries
    def next_deadline(self) -> Optional[float]:
        """The earliest moment a heartbeat source falls silent (None: none can)."""
        deadlines = [s.last_heard + s.spec.heartbeat_s for s in self._sources.values()
                     if s.spec.heartbeat_s is not None and s.last_heard is not None
                     and s.gone_why is None]
        return min(deadlines) if deadlines else None

    def holding(self, now: float) -> list[tuple[str, str]]:
        """(topic, why) of every reason any source holds the stop."""
        return [(topic, why) for topic, source in self._sources.items()
                for _, why in source.whys(now)]

    def lane_holders(self, lane: str, now: float) -> list[tuple[str, str, str]]:
        """(topic, kind, why) of every reason a source covering `lane` holds it stopped.
        `kind` changes only when the reason does (not as a silence ages).
        """
        return [(topic, kind, why) for topic, source in self._sources.items()
                if lane in source.spec.lanes for kind, why in source.whys(now)]

    def lane_reason(self, lane: str, now: float) -> Optional[str]:
        """The refusal text for `lane` (None: no source stops it). Names every source."""
        holders = self.lane_holders(lane, now)
        if not holders:
            return None
        parts = '; '.join(f'{topic}: {why}' for topic, _, why in holders)
        return (f'the emergency stop is on ({parts}); goals are refused until every source '
                'holding it releases it')

    def snapshot(self, now: float) -> list[dict]:
        """JSON-ready view of every source (lane state `emergency_stop.sources`)."""
        out = []
        for topic, source in self._sources.items():
            whys = [why for _, why in source.whys(now)]
            last = source.last_publisher
            out.append({
                'topic': topic, 'lanes': list(source.spec.lanes),
                'heartbeat_s': source.spec.heartbeat_s, 'required': source.spec.required,
                'active': bool(whys), 'why': '; '.join(whys) or None,
                'last_value': source.last_value,
                'age_s': (round(now - source.last_heard, 3)
                          if source.last_heard is not None else None),
                'publisher': last.label if last is not None else None,
                'latched_by': [latch.publisher.label for latch in source.latches.values()],
            })
        return out


class _Blocks(Protocol):
    """The part of LaneKeeper a stop needs (lane_manager/keeper.py)."""

    def block(self, key: str, active: bool, lanes: Iterable[str], reason: str,
              now: float) -> tuple[str, list]: ...

    def reword_block(self, key: str, lane: str, reason: str) -> bool: ...


@dataclass
class Synced:
    """What one `LaneStops.sync` did: keeper actions to carry out, and what to log."""

    actions: list
    stopped: list[str]    # the keeper's messages for lanes newly stopped
    released: list[str]   # lanes let in again (nothing restarts)
    changed: bool         # the lane state changed (publish it)


class LaneStops:
    """Keeps the keeper's blocks in step with the sources, lane by lane: block a lane when a
    source starts holding it (cancels its goals), reword the refusal when the holding
    sources change while it stays stopped (cancels nothing again), open it when none holds
    it. Pure: the node shell and the tests drive the same code.
    """

    def __init__(self, sources: StopSources, lanes: Sequence[str], key: str) -> None:
        self.sources = sources
        self.lanes = list(lanes)
        self.key = key
        self.applied: dict[str, tuple[tuple, str]] = {}  # lane -> (kinds, reason) in force

    @property
    def active(self) -> bool:
        return bool(self.applied)

    def sync(self, keeper: _Blocks, now: float, reword: bool = False) -> Synced:
        """`reword`: also rewrite reasons whose text merely aged ("silent for N s")."""
        done = Synced([], [], [], False)
        for lane in self.lanes:
            holders = self.sources.lane_holders(lane, now)
            text = self.sources.lane_reason(lane, now)
            kinds = tuple((topic, kind) for topic, kind, _ in holders)
            old = self.applied.get(lane)
            if text is None:
                if old is not None:
                    del self.applied[lane]
                    _, taken = keeper.block(self.key, False, [lane], '', now)
                    done.actions += taken
                    done.released.append(lane)
                    done.changed = True
                continue
            reason = f'{self.key}: {text}'
            if old is None:
                message, taken = keeper.block(self.key, True, [lane], reason, now)
                done.actions += taken
                done.stopped.append(message)
                done.changed = True
            elif old[0] != kinds or (reword and old[1] != reason):
                keeper.reword_block(self.key, lane, reason)
                done.changed = done.changed or old[0] != kinds
            else:
                continue
            self.applied[lane] = (kinds, reason)
        return done

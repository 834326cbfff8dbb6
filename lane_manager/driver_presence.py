"""Is a driver there, and what does it itself say it runs: one state machine per driver.

Plain Python (no ROS import). The node only samples: the graph (`graph_sample`, every
state_period_s), the liveness probe and its status reader (`look`, every watchdog tick: was a
probe answered, is our status reader matched, and, when this machine asks for it, the probe
itself), and the driver's `<action>/_action/status` lists (`status_message`). Every decision
on those samples is made here; the lane keeper asks `may_send`, `status_known`, `active`, ...

Why the driver's word: the lane manager's own bookkeeping cannot see a cancel the driver
ignored, a goal a stalled driver resumes, a goal it accepted after the lane manager gave up,
goals that ran before the lane manager (re)started, or goals sent around it. Every action
server, rclcpp or rclpy, publishes each goal's status (transient local), so a subscriber
learns the current list at once after its reader is matched with the driver's status writer.
Until it is known, the driver counts as busy (its lanes are held).

When is "no status message" the driver's word that it runs nothing? An action server
publishes only once it has had goals, so silence must be inferred: it counts once our status
reader has been matched with the driver's status writer (the transient-local list would have
arrived) for STATUS_SETTLE_S. That the driver answers our requests is not enough: its goal
services and its status topic are matched separately, and on a loaded host the status came
seconds after the services (the soak caught a restarted lane manager taking a running goal's
lane as free and sending a second goal 33 ms after its start).

Why a probe answer before the first goal: seeing a server on the graph is not enough; until
it has discovered our readers, its answer to a goal is dropped and the goal runs unseen (seen
with freshly started drivers). A server that was off the graph must answer again. The probe
(skill_lanes/action_link.py) asks the driver's cancel service to cancel an unknown goal id.

Stages (`Stage`; every move is listed in TRANSITIONS and `_move` refuses any other):
    absent            not on the graph at the last sample (never seen, or left), nothing known
    on_graph          on the graph, not answering (yet, or again since it was off the graph)
    answering         answers the probe; its status is not known yet
    known             answers, its status is known: it may be given goals
    known_unanswered  its status is known (a status message came first), it does not answer
                      (yet, or again since it was off the graph): no goal yet
    lost              a probe went unanswered driver_lost_s while a goal of ours may run: its
                      goals' callers are told (the keeper); what it answered before stands
                      until the next look, as for `known`
    lost_unanswered   lost, and not answering since it was off the graph
    gone              off the graph driver_lost_s (STARTUP_DISCOVERY_S at start): it runs
                      nothing (a process killed with SIGKILL leaves the graph after its DDS
                      lease, about 20 s; a stalled one never: it is `lost`, not gone)
Off the graph for less than driver_lost_s is not news by itself: the stage stays (a driver
counts as answering until a look on the graph finds it has not answered since), its lanes
stay held by what it may run.

A new process under the driver's name is a driver not known yet: each look names the
driver's status writers on the graph (their DDS gids), and a writer that was not there while
its status was known is a restarted driver (a process killed with SIGKILL stays on the graph
until its lease ends, so its successor shows up beside it: it is never off the graph at a
sample) or a second server. Its status is not known (-> on_graph) until our reader is
matched with every writer and STATUS_SETTLE_S has passed, and it must answer afresh; until
then its lanes are held. What the old process reported stays until the new one reports (a
second server may be the one running our goal: forgetting its list would free a lane under a
running goal).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Optional

from skill_lanes.goal_outcome import ACTIVE_STATUSES

STATUS_SETTLE_S = 1.0  # matched with a driver's status writer this long without a message:
                       # it runs nothing
# A driver not seen on the graph this long after start is gone (discovery can take 2.6 s).
STARTUP_DISCOVERY_S = 4.0


class Stage(str, enum.Enum):
    ABSENT = 'absent'
    ON_GRAPH = 'on_graph'
    ANSWERING = 'answering'
    KNOWN = 'known'
    KNOWN_UNANSWERED = 'known_unanswered'
    LOST = 'lost'
    LOST_UNANSWERED = 'lost_unanswered'
    GONE = 'gone'


# Every move a driver's stage may make (a look may make two: on_graph -> answering -> known
# when matched silence from before it was off the graph has lasted STATUS_SETTLE_S).
# test/test_driver_presence.py walks the table, each move by the observation that makes it.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.ABSENT: frozenset({Stage.ON_GRAPH, Stage.KNOWN_UNANSWERED, Stage.GONE}),
    Stage.ON_GRAPH: frozenset({Stage.ABSENT, Stage.ANSWERING, Stage.KNOWN_UNANSWERED}),
    Stage.ANSWERING: frozenset({Stage.ON_GRAPH, Stage.KNOWN, Stage.GONE}),
    Stage.KNOWN: frozenset({Stage.KNOWN_UNANSWERED, Stage.LOST, Stage.GONE, Stage.ON_GRAPH}),
    Stage.KNOWN_UNANSWERED: frozenset({Stage.KNOWN, Stage.LOST_UNANSWERED, Stage.GONE,
                                       Stage.ON_GRAPH}),
    Stage.LOST: frozenset({Stage.KNOWN, Stage.LOST_UNANSWERED, Stage.GONE, Stage.ON_GRAPH}),
    Stage.LOST_UNANSWERED: frozenset({Stage.KNOWN, Stage.KNOWN_UNANSWERED, Stage.GONE,
                                      Stage.ON_GRAPH}),
    Stage.GONE: frozenset({Stage.ANSWERING, Stage.KNOWN_UNANSWERED}),
}

STATUS_KNOWN = frozenset({Stage.KNOWN, Stage.KNOWN_UNANSWERED, Stage.LOST,
                          Stage.LOST_UNANSWERED})
STATUS_UNKNOWN = frozenset({Stage.ABSENT, Stage.ON_GRAPH, Stage.ANSWERING})
ANSWERS = frozenset({Stage.ANSWERING, Stage.KNOWN, Stage.LOST})
UNREACHABLE = frozenset({Stage.LOST, Stage.LOST_UNANSWERED, Stage.GONE})
# A look that finds it answering / not answering (again) moves it so:
_HEARD = {Stage.ON_GRAPH: Stage.ANSWERING, Stage.GONE: Stage.ANSWERING,
          Stage.KNOWN_UNANSWERED: Stage.KNOWN, Stage.LOST: Stage.KNOWN,
          Stage.LOST_UNANSWERED: Stage.KNOWN}
_UNHEARD = {Stage.ANSWERING: Stage.ON_GRAPH, Stage.KNOWN: Stage.KNOWN_UNANSWERED,
            Stage.LOST: Stage.LOST_UNANSWERED}
_STATUS = {Stage.ABSENT: Stage.KNOWN_UNANSWERED, Stage.ON_GRAPH: Stage.KNOWN_UNANSWERED,
           Stage.GONE: Stage.KNOWN_UNANSWERED, Stage.ANSWERING: Stage.KNOWN,
           Stage.LOST: Stage.KNOWN, Stage.LOST_UNANSWERED: Stage.KNOWN_UNANSWERED}
_SILENT = {Stage.KNOWN: Stage.LOST, Stage.KNOWN_UNANSWERED: Stage.LOST_UNANSWERED}


def _in_time(_give_up_s: float) -> bool:
    return True


@dataclass(frozen=True)
class ProbeSample:
    """One watchdog look at a driver, as the node samples it.

    answered: a probe was answered since the last look (ActionServerLink.take_answer).
    status_matched: our status reader is matched with every status writer of the driver on
    the graph (a successor's writer may be on the graph before it is matched with us).
    writers: the DDS gids of the driver's status writers on the graph (None: not sampled).
    probe: send or check the probe (ActionServerLink.probe); called only when this machine
    wants a probe out, with how long one may go unanswered; False: it went unanswered that
    long (the link then gives it up and sends a fresh one next).
    """

    answered: bool
    status_matched: bool
    probe: Callable[[float], bool] = _in_time
    writers: Optional[frozenset[bytes]] = None


@dataclass(frozen=True)
class Look:
    """What one look found, for the keeper: `known` its status became known (silence);
    `lost` a probe went unanswered driver_lost_s while a goal of ours may run there; `gone`
    it has been off the graph driver_lost_s (`news`: it was not gone before); `new_process`
    a status writer that was not there: its status is not known any more.
    """

    known: bool = False
    lost: bool = False
    gone: bool = False
    news: bool = False
    new_process: bool = False


@dataclass(frozen=True)
class ProbeAfresh:
    """The node's link to this driver drops its probe in flight and any answer not taken
    yet: the server left the graph, one back under its name must answer afresh.
    """

    driver: str


class DriverPresence:
    """One driver: its stage, fed raw observations only."""

    def __init__(self, name: str, lost_s: float, started_at: float = 0.0) -> None:
        self.name = name
        self.lost_s = lost_s
        self.stage = Stage.ABSENT
        self.statuses: dict[str, int] = {}
        self.on_graph = False  # at the last graph sample
        # Never seen yet: gone only once discovery has had its time too.
        self.off_since: Optional[float] = started_at + max(0.0, STARTUP_DISCOVERY_S - lost_s)
        self.heard = False  # a probe answered since it was last off the graph
        self.answered_once = False  # it has answered since it was last gone (or start)
        self.status_matched = False  # at the last look that found it answering
        self.silent_since: Optional[float] = None  # answering, status matched, no message
        self.writers: frozenset[bytes] = frozenset()  # its status writers, last look

    # ------------------------------------------------------------ queries
    @property
    def status_known(self) -> bool:
        """Its status list is known (or it has published none: no goals)."""
        return self.stage in STATUS_KNOWN

    @property
    def answering(self) -> bool:
        """It has answered the probe since it (re)appeared, as of the last look on the graph."""
        return self.stage in ANSWERS

    @property
    def may_send(self) -> bool:
        """A goal may be sent to it: on the graph at the last sample, it answers and its
        status is known. Off the graph it gets no goal even before it counts as gone: the
        keeper's state machine found a goal sent to a driver in the very look that then
        found it gone (the goal ended towards its caller while its request was on its way:
        a goal at a driver that nothing tracked). It waits instead (driver_wait_s).
        """
        return self.on_graph and self.answering and self.status_known

    @property
    def driver_available(self) -> bool:
        """On the graph with its goal status known: it can take a goal (lane state)."""
        return self.on_graph and self.status_known

    @property
    def active(self) -> set[str]:
        """The goal ids it reports running (ACCEPTED, EXECUTING, CANCELING)."""
        if not self.status_known:
            return set()
        return {gid for gid, code in self.statuses.items() if code in ACTIVE_STATUSES}

    def held_because(self) -> str:
        """Why its status is not known yet, for the lane's held_because."""
        if self.answered_once and not self.status_matched and not self.status_known:
            return (f'the goal status of driver {self.name} is not known yet: its status '
                    'topic has not reached the lane manager')
        return f'the goal status of driver {self.name} is not known yet'

    def snapshot(self) -> dict:
        """The lane state's `drivers.<driver>` record (skill_lanes/lane_state.py)."""
        return {'status_known': self.status_known,
                'reachable': self.stage not in UNREACHABLE,
                'present': self.stage is not Stage.GONE,
                'active_goals': sorted(self.active)}

    # ------------------------------------------------------------ observations
    def graph_sample(self, on_graph: bool, now: float) -> list[ProbeAfresh]:
        """Whether the driver's action server is on the graph now."""
        self.on_graph = on_graph
        if on_graph:
            self.off_since = None
            if self.stage is Stage.ABSENT:
                self._move(Stage.ON_GRAPH)
            return []
        if self.off_since is None:
            self.off_since = now
        self.heard = False
        if self.stage is Stage.ON_GRAPH:
            self._move(Stage.ABSENT)
        return [ProbeAfresh(self.name)]

    def look(self, now: float, sample: ProbeSample, runs_ours: bool) -> Look:
        """One watchdog look. `runs_ours`: a goal of ours may run there (its liveness is worth
        probing); the probe is also out while it has not answered since it (re)appeared.
        """
        if sample.answered:
            self.heard = True
        if not self.on_graph:
            if self.off_since is not None and now - self.off_since >= self.lost_s:
                return self._gone()
            return Look()
        if sample.writers is not None:
            newcomer = bool(self.writers) and not sample.writers <= self.writers
            self.writers = sample.writers
            if newcomer and self.status_known:
                self._new_process()
                return Look(new_process=True)
        give_up_s = self.lost_s if runs_ours else (None if self.heard else float('inf'))
        in_time = sample.probe(give_up_s) if give_up_s is not None else True
        known = self._heard(now, sample.status_matched) if self.heard else self._unheard()
        if in_time:
            return Look(known=known)
        if self.stage in _SILENT:
            self._move(_SILENT[self.stage])
        return Look(known=known, lost=True)

    def status_message(self, statuses: dict[str, int]) -> bool:
        """Its status list (every goal it knows, by goal id). True: the first word on its
        status since start or since it was gone (goals it reports running then were running
        before we saw it: adopted, not external).
        """
        first = not self.status_known
        self.statuses = dict(statuses)
        if self.stage in _STATUS:
            self._move(_STATUS[self.stage])
        return first

    # ------------------------------------------------------------ internals
    def _heard(self, now: float, status_matched: bool) -> bool:
        """A look on the graph finds it answering. Returns True when silence made its status
        known (see the module's docstring).
        """
        self.answered_once = True
        self.status_matched = status_matched
        if self.stage is Stage.GONE:
            self.statuses = {}
        if self.stage in _HEARD:
            self._move(_HEARD[self.stage])
        if not status_matched:
            self.silent_since = None
            return False
        if self.silent_since is None:
            self.silent_since = now
        if self.stage is Stage.ANSWERING and now - self.silent_since >= STATUS_SETTLE_S:
            self._move(Stage.KNOWN)
            return True
        return False

    def _unheard(self) -> bool:
        if self.stage in _UNHEARD:
            self._move(_UNHEARD[self.stage])
        return False

    def _new_process(self) -> None:
        """A status writer that was not there: a new process (see the module's docstring).
        It must answer afresh (the keeper has the link drop its probe: ProbeAfresh).
        """
        self.heard = False
        self.silent_since = None
        self.status_matched = False
        self._move(Stage.ON_GRAPH)

    def _gone(self) -> Look:
        self.silent_since = None
        self.answered_once = False
        if self.stage is Stage.GONE:
            return Look(gone=True)
        self._move(Stage.GONE)
        self.statuses = {}
        return Look(gone=True, news=True)

    def _move(self, stage: Stage) -> None:
        if stage is not self.stage:
            if stage not in TRANSITIONS[self.stage]:
                raise AssertionError(f'driver {self.name}: no move {self.stage.value} -> '
                                     f'{stage.value} (TRANSITIONS)')
            self.stage = stage

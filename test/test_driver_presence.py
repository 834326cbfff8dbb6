"""A driver's presence (lane_manager/driver_presence.py): its transition table walked, the
status-match rule the soak caught, and the machine against the five places it replaced.

Each listed move is made by the observation that makes it on a robot; together the walks
cover the table exactly. Moves the table does not list are refused by `DriverPresence._move`,
so the keeper's adversarial state machine (test_keeper.py) fails on any of them.
"""
from __future__ import annotations

from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skill_lanes.config import LaneConfig, LaneManagerConfig
from lane_manager.driver_presence import (STARTUP_DISCOVERY_S, STATUS_SETTLE_S, TRANSITIONS,
                                          DriverPresence, Look, ProbeAfresh, ProbeSample,
                                          Stage)
from lane_manager.goal_lifecycle import SendToDriver
from skill_lanes.goal_outcome import ACTIVE_STATUSES
from lane_manager.keeper import LaneKeeper, SkillRoute

LOST_S = 1.0
OLD, NEW = frozenset({b'old process'}), frozenset({b'new process'})  # status writer gids
ANSWERED = ProbeSample(answered=True, status_matched=True, writers=OLD)
QUIET = ProbeSample(answered=False, status_matched=True, writers=OLD)  # no answer since
SILENT = ProbeSample(answered=False, status_matched=True, probe=lambda _give_up_s: False,
                     writers=OLD)


def absent() -> DriverPresence:
    return DriverPresence('/arm', LOST_S, started_at=0.0)


def on_graph() -> DriverPresence:
    p = absent()
    p.graph_sample(True, 0.0)
    return p


def answering() -> DriverPresence:
    p = on_graph()
    p.look(0.0, ANSWERED, runs_ours=False)
    return p


def known() -> DriverPresence:
    p = answering()
    p.look(STATUS_SETTLE_S, ANSWERED, runs_ours=False)
    return p


def known_unanswered() -> DriverPresence:
    p = on_graph()
    p.status_message({})
    p.look(0.0, QUIET, runs_ours=False)  # no answer yet: it stays so
    return p


def lost() -> DriverPresence:
    p = known()
    p.look(2.0, SILENT, runs_ours=True)
    return p


def lost_unanswered() -> DriverPresence:
    p = known_unanswered()
    p.look(2.0, SILENT, runs_ours=True)
    return p


def gone() -> DriverPresence:
    p = absent()
    p.look(STARTUP_DISCOVERY_S, QUIET, runs_ours=False)
    return p


def off_and_back(p: DriverPresence) -> None:
    """Off the graph at one sample, back at the next, and a look finds no answer since."""
    p.graph_sample(False, 3.0)
    p.graph_sample(True, 3.5)
    p.look(3.5, QUIET, runs_ours=False)


def left(p: DriverPresence) -> None:
    """Off the graph, looked at driver_lost_s later."""
    p.graph_sample(False, 3.0)
    p.look(3.0 + LOST_S, QUIET, runs_ours=False)


def back(p: DriverPresence) -> None:
    p.graph_sample(True, 9.0)
    p.look(9.0, ANSWERED, runs_ours=False)


def writers(names: frozenset[bytes], answered: bool = True,
            matched: bool = True) -> ProbeSample:
    """A look naming the driver's status writers on the graph."""
    return ProbeSample(answered=answered, status_matched=matched, writers=names)


def new_process(p: DriverPresence) -> None:
    """A status writer that was not there shows up beside the old one (SIGKILL: the old
    process stays on the graph until its DDS lease ends).
    """
    p.look(3.0, writers(OLD | NEW, answered=False), runs_ours=False)


# (start, observation, expected stage after it): one walk per move of the table.
WALKS: list[tuple[Callable[[], DriverPresence], Callable[[DriverPresence], object], Stage]] = [
    (absent, lambda p: p.graph_sample(True, 0.5), Stage.ON_GRAPH),
    (absent, lambda p: p.status_message({}), Stage.KNOWN_UNANSWERED),
    (absent, lambda p: p.look(STARTUP_DISCOVERY_S, QUIET, False), Stage.GONE),
    (on_graph, lambda p: p.graph_sample(False, 0.5), Stage.ABSENT),
    (on_graph, lambda p: p.look(0.5, ANSWERED, False), Stage.ANSWERING),
    (on_graph, lambda p: p.status_message({}), Stage.KNOWN_UNANSWERED),
    (answering, off_and_back, Stage.ON_GRAPH),
    (answering, lambda p: p.look(STATUS_SETTLE_S, QUIET, False), Stage.KNOWN),
    (answering, left, Stage.GONE),
    (known, off_and_back, Stage.KNOWN_UNANSWERED),
    (known, lambda p: p.look(2.0, SILENT, True), Stage.LOST),
    (known, left, Stage.GONE),
    (known_unanswered, lambda p: p.look(0.5, ANSWERED, False), Stage.KNOWN),
    (known_unanswered, lambda p: p.look(2.0, SILENT, True), Stage.LOST_UNANSWERED),
    (known_unanswered, left, Stage.GONE),
    (lost, lambda p: p.look(2.1, QUIET, False), Stage.KNOWN),
    (lost, off_and_back, Stage.LOST_UNANSWERED),
    (lost, left, Stage.GONE),
    (lost_unanswered, lambda p: p.look(2.1, ANSWERED, True), Stage.KNOWN),
    (lost_unanswered, lambda p: p.status_message({}), Stage.KNOWN_UNANSWERED),
    (lost_unanswered, left, Stage.GONE),
    (known, new_process, Stage.ON_GRAPH),
    (known_unanswered, new_process, Stage.ON_GRAPH),
    (lost, new_process, Stage.ON_GRAPH),
    (lost_unanswered, new_process, Stage.ON_GRAPH),
    (gone, back, Stage.ANSWERING),
    (gone, lambda p: p.status_message({}), Stage.KNOWN_UNANSWERED),
]


@pytest.mark.parametrize('start, observation, expected', WALKS)
def test_walk(start, observation, expected):
    presence = start()
    before = presence.stage
    observation(presence)
    assert presence.stage is expected, (before, presence.stage)
    assert expected in TRANSITIONS[before]


def test_the_walks_cover_the_table_exactly():
    walked = {(start().stage, expected) for start, _, expected in WALKS}
    listed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert walked == listed
    assert set(TRANSITIONS) == set(Stage)


def test_an_unlisted_move_is_refused():
    presence = gone()
    with pytest.raises(AssertionError, match='gone -> known'):
        presence._move(Stage.KNOWN)


# ---------------------------------------------------------------- the status-match rule
def test_answering_is_not_enough_while_the_status_reader_is_not_matched():
    """The soak's case: its services answer, its status topic has not reached us yet."""
    presence = on_graph()
    for now in (0.0, 1.0, 5.0, 100.0):
        presence.look(now, ProbeSample(True, status_matched=False), runs_ours=False)
        assert presence.stage is Stage.ANSWERING and not presence.may_send
    assert 'its status topic has not reached the lane manager' in presence.held_because()


def test_known_after_status_settle_s_of_matched_silence_not_before():
    presence = on_graph()
    presence.look(0.0, ProbeSample(True, status_matched=False), runs_ours=False)
    presence.look(5.0, ANSWERED, runs_ours=False)   # matched now: silence counts from here
    presence.look(5.0 + STATUS_SETTLE_S - 0.01, QUIET, runs_ours=False)
    assert not presence.status_known and not presence.may_send
    assert presence.held_because() == 'the goal status of driver /arm is not known yet'
    look = presence.look(5.0 + STATUS_SETTLE_S, QUIET, runs_ours=False)
    assert look.known and presence.status_known and presence.may_send


def test_an_unmatched_look_starts_the_silence_again():
    presence = on_graph()
    presence.look(0.0, ANSWERED, runs_ours=False)
    presence.look(0.5, ProbeSample(False, status_matched=False), runs_ours=False)
    presence.look(0.6, QUIET, runs_ours=False)
    presence.look(0.6 + STATUS_SETTLE_S - 0.01, QUIET, runs_ours=False)
    assert not presence.status_known
    presence.look(0.6 + STATUS_SETTLE_S, QUIET, runs_ours=False)
    assert presence.status_known


def test_a_status_message_is_its_word_at_once_but_a_goal_waits_for_an_answer():
    presence = on_graph()
    assert presence.status_message({'g1': 2, 'g0': 4}) is True
    assert presence.status_known and presence.active == {'g1'}
    assert not presence.may_send, 'it has not answered: its answer to a goal could be lost'
    presence.look(0.1, ANSWERED, runs_ours=False)
    assert presence.may_send


def test_unknown_status_holds_the_lane_and_no_goal_is_sent_until_known():
    keeper = LaneKeeper({'arm': LaneConfig()}, {'grasp': SkillRoute('arm', '/arm')},
                        LaneManagerConfig(driver_wait_s=30.0, driver_lost_s=LOST_S))
    keeper.driver_on_graph('/arm', True, 0.0)
    keeper.look({'/arm': ProbeSample(True, status_matched=False)}, 0.0)
    decision, actions = keeper.submit('c1', 'grasp', 0.1)
    assert decision.accepted and not [a for a in actions if isinstance(a, SendToDriver)]
    assert not [a for a in keeper.tick(0.2) if isinstance(a, SendToDriver)]
    (occupant,) = keeper.arbiter.lanes['arm'].occupants.values()
    assert occupant.origin == 'unknown'
    keeper.look({'/arm': ANSWERED}, 2.0)
    assert not [a for a in keeper.tick(2.0) if isinstance(a, SendToDriver)]
    assert keeper.look({'/arm': QUIET}, 2.0 + STATUS_SETTLE_S) == []
    assert [a.caller_goal_id for a in keeper.tick(3.5) if isinstance(a, SendToDriver)] == ['c1']


# ---------------------------------------------------------------- gone, lost, the probe
def test_never_seen_is_gone_after_startup_discovery_not_before():
    presence = DriverPresence('/arm', LOST_S, started_at=10.0)
    presence.graph_sample(False, 10.0)
    assert not presence.look(10.0 + STARTUP_DISCOVERY_S - 0.01, QUIET, False).gone
    look = presence.look(10.0 + STARTUP_DISCOVERY_S, QUIET, False)
    assert look.gone and look.news and presence.stage is Stage.GONE
    assert presence.snapshot() == {'status_known': False, 'reachable': False,
                                   'present': False, 'active_goals': []}
    assert presence.look(20.0, QUIET, False) == type(look)(gone=True), 'news only once'


def test_off_the_graph_is_gone_after_driver_lost_s_and_its_probe_starts_afresh():
    presence = known()
    presence.status_message({'g1': 2})
    assert presence.graph_sample(False, 5.0) == [ProbeAfresh('/arm')]
    assert presence.graph_sample(False, 5.5) == [ProbeAfresh('/arm')]
    assert not presence.look(5.0 + LOST_S - 0.01, QUIET, True).gone
    assert presence.active == {'g1'}, 'within grace its goals may still run'
    assert presence.look(5.0 + LOST_S, QUIET, True).news and presence.active == set()


def test_the_probe_is_out_only_while_wanted_and_silence_is_lost_only_mid_goal():
    asked: list[float] = []

    def probe(in_time: bool) -> ProbeSample:
        return ProbeSample(False, True, lambda give_up_s: asked.append(give_up_s) or in_time)

    presence = on_graph()
    presence.look(0.0, probe(True), runs_ours=False)
    assert asked == [float('inf')], 'not answered yet: probed, never judged silent'
    presence.look(0.1, ProbeSample(True, True, probe(True).probe), runs_ours=False)
    presence.look(STATUS_SETTLE_S + 0.1, probe(False), runs_ours=False)
    assert asked == [float('inf')] and presence.stage is Stage.KNOWN, 'idle: no probe'
    look = presence.look(2.0, probe(False), runs_ours=True)
    assert asked[-1] == LOST_S and look.lost and presence.stage is Stage.LOST
    assert presence.snapshot()['reachable'] is False


def test_driver_available_is_on_the_graph_with_its_status_known():
    presence = known()
    assert presence.driver_available
    presence.graph_sample(False, 3.0)
    assert presence.status_known and not presence.driver_available


# ---------------------------------------------------------------- the places it replaced
class OldDriverView:
    """lane_manager/driver_status.py's DriverView before this machine replaced it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.presence = 'unknown'
        self.statuses: dict[str, int] = {}
        self.silent_since: Optional[float] = None
        self.answers = False
        self.status_matched = False
        self.reachable = True

    @property
    def active(self) -> set[str]:
        if self.presence != 'known':
            return set()
        return {gid for gid, code in self.statuses.items() if code in ACTIVE_STATUSES}

    def report(self, statuses: dict[str, int]) -> bool:
        first = self.presence != 'known'
        self.statuses = dict(statuses)
        self.presence = 'known'
        self.reachable = True
        return first

    def answering(self, now: float, status_matched: bool) -> bool:
        self.reachable = True
        self.answers = True
        self.status_matched = status_matched
        if self.presence == 'gone':
            self.presence = 'unknown'
            self.statuses = {}
        if not status_matched:
            self.silent_since = None
            return False
        if self.silent_since is None:
            self.silent_since = now
        if self.presence == 'unknown' and now - self.silent_since >= STATUS_SETTLE_S:
            self.presence = 'known'
            return True
        return False

    def unknown_because(self) -> str:
        if self.answers and not self.status_matched and self.presence == 'unknown':
            return (f'the goal status of driver {self.name} is not known yet: its status '
                    'topic has not reached the lane manager')
        return f'the goal status of driver {self.name} is not known yet'

    def gone(self) -> bool:
        self.silent_since = None
        self.answers = False
        self.reachable = False
        if self.presence == 'gone':
            return False
        self.presence = 'gone'
        self.statuses = {}
        return True

    def snapshot(self) -> dict:
        return {'status_known': self.presence == 'known',
                'reachable': self.reachable and self.presence != 'gone',
                'present': self.presence != 'gone', 'active_goals': sorted(self.active)}


class OldPlaces:
    """The other four: node._periodic_state/_watchdog (_driver_available, _off_graph_since,
    STARTUP_DISCOVERY_S), ActionServerLink.answered/ready_for_goals/forget, keeper.ready.
    """

    def __init__(self, started_at: float) -> None:
        self.view = OldDriverView('/arm')
        self.available = False
        self.off_since: Optional[float] = started_at + max(0.0, STARTUP_DISCOVERY_S - LOST_S)
        self.answered = False
        self.ready = False

    def graph_sample(self, on: bool, now: float) -> None:
        if on:
            self.off_since = None
        else:
            self.off_since = now if self.off_since is None else self.off_since
            self.answered = False
        self.available = on

    def look(self, now: float, matched: bool, in_time: bool, busy: bool) -> tuple:
        """(known, lost, gone news or None, the probe's give-up time or None)."""
        asked = None
        if self.available:
            if not self.answered:
                asked = float('inf')
            self.ready = self.answered
            known = self.answered and self.view.answering(now, matched)
            if busy:
                asked = LOST_S
                if not in_time:
                    self.view.reachable = False
                    return known, True, None, asked
            return known, False, None, asked
        if now - (now if self.off_since is None else self.off_since) >= LOST_S:
            self.ready = False
            return False, False, self.view.gone(), asked
        return False, False, None, asked


EVENTS = st.one_of(
    st.tuples(st.just('graph'), st.booleans()),
    st.tuples(st.just('answer')),
    st.tuples(st.just('look'), st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just('status'), st.dictionaries(st.sampled_from(['g1', 'g2']),
                                                 st.integers(1, 6), max_size=2)),
    st.tuples(st.just('time'), st.sampled_from([0.1, 0.5, 1.0, 3.0, 5.0])))


@settings(max_examples=400, deadline=None)
@given(events=st.lists(EVENTS, max_size=40), started_at=st.sampled_from([0.0, 2.0]))
def test_it_decides_as_the_five_places_it_replaced(events, started_at):
    """Random observation sequences: the machine decides as the old rules did, but for
    may_send off the graph (deliberately stricter).
    """
    old, new = OldPlaces(started_at), DriverPresence('/arm', LOST_S, started_at)
    noted = False  # an answer the link noted and nobody took yet
    now = started_at
    for event in events:
        if event[0] == 'graph':
            if new.graph_sample(event[1], now):
                noted = False  # ProbeAfresh: the link forgets
            old.graph_sample(event[1], now)
        elif event[0] == 'answer':
            noted, old.answered = True, True
        elif event[0] == 'status':
            assert new.status_message(event[1]) == old.view.report(event[1])
        elif event[0] == 'time':
            now += event[1]
        else:
            _, matched, in_time, busy = event
            # A goal of ours reaches a driver only while its status is known, and it ends
            # when the driver is gone: only then may one run there.
            busy = busy and old.view.presence == 'known'
            asked: list[float] = []
            sample = ProbeSample(noted, matched,
                                 lambda give_up_s: asked.append(give_up_s) or in_time
                                 or give_up_s == float('inf'))
            noted = False
            look = new.look(now, sample, busy)
            known, lost, news, old_asked = old.look(now, matched, in_time, busy)
            assert (look.known, look.lost) == (known, lost)
            assert (look.news if look.gone else None) == news
            assert asked == ([] if old_asked is None else [old_asked])
        assert new.answering == old.ready
        # One deliberate change: off the graph at the last sample, no goal (the old rules
        # sent one until the driver counted as gone; see DriverPresence.may_send).
        assert new.may_send == (old.ready and old.view.presence == 'known' and old.available)
        assert new.status_known == (old.view.presence == 'known')
        assert (new.stage in (Stage.ABSENT, Stage.ON_GRAPH, Stage.ANSWERING)) == (
            old.view.presence == 'unknown')
        assert new.snapshot() == old.view.snapshot()
        assert new.driver_available == (old.available and old.view.presence == 'known')
        if not new.status_known:
            assert new.held_because() == old.view.unknown_because()


@pytest.mark.parametrize('exits', [True, False], ids=['off the graph between', 'never off'])
def test_a_new_process_back_within_driver_lost_s_is_not_trusted_on_the_old_status(exits):
    """Its process exits and a new one comes up under its name before driver_lost_s (seen
    off the graph between, or never: a SIGKILLed process stays on the graph until its DDS
    lease ends). The new process may already run a goal sent around the lane manager whose
    status has not reached us: the old list is not its word. Its new status writer makes it
    a driver not known yet: no goal until it answers and our reader is matched with every
    writer for STATUS_SETTLE_S. Before this, a goal was sent beside it.
    """
    keeper = LaneKeeper({'arm': LaneConfig()}, {'grasp': SkillRoute('arm', '/arm')},
                        LaneManagerConfig(driver_wait_s=30.0, driver_lost_s=3.0))
    keeper.driver_on_graph('/arm', True, 0.0)
    keeper.look({'/arm': writers(OLD)}, 0.0)
    keeper.look({'/arm': writers(OLD)}, STATUS_SETTLE_S)
    assert keeper.presence['/arm'].status_known
    if exits:
        keeper.driver_on_graph('/arm', False, 2.0)
        keeper.look({'/arm': writers(frozenset(), answered=False)}, 2.0)
        keeper.driver_on_graph('/arm', True, 3.0)
    now_on_graph = NEW if exits else OLD | NEW
    # Its writer not matched yet (the answer noted is the old process's).
    actions = keeper.look({'/arm': writers(now_on_graph, matched=False)}, 3.0)
    assert ProbeAfresh('/arm') in actions          # it must answer afresh, too
    assert not keeper.presence['/arm'].status_known
    for t in (3.1, 3.5, 3.0 + 2 * STATUS_SETTLE_S):   # the node's watchdog: look, tick
        keeper.look({'/arm': writers(now_on_graph, matched=False)}, t)
        keeper.tick(t)
    decision, actions = keeper.submit('c1', 'grasp', 5.5)
    assert decision.accepted
    assert not [a for a in actions if isinstance(a, SendToDriver)]
    assert 'not known yet' in keeper.snapshot(5.5)['arm']['held_because']
    # Matched, silent STATUS_SETTLE_S: now its word is that it runs nothing; the goal goes.
    keeper.look({'/arm': writers(now_on_graph)}, 6.0)
    actions = keeper.look({'/arm': writers(now_on_graph)}, 6.0 + STATUS_SETTLE_S)
    actions += keeper.tick(6.0 + STATUS_SETTLE_S)
    assert [a for a in actions if isinstance(a, SendToDriver)]


def test_the_old_process_leaving_the_graph_is_no_news():
    """Writers only going away (the old process's DDS lease ending) change nothing."""
    p = known()
    p.look(2.0, writers(OLD), runs_ours=False)
    p.look(2.1, writers(OLD | NEW), runs_ours=False)     # a new one: settles again
    p.look(2.5, writers(OLD | NEW), runs_ours=False)
    p.look(2.5 + STATUS_SETTLE_S, writers(OLD | NEW), runs_ours=False)
    assert p.stage is Stage.KNOWN
    assert p.look(4.0, writers(NEW), runs_ours=False) == Look()
    assert p.stage is Stage.KNOWN


def test_writers_first_seen_after_the_status_is_known_are_not_a_new_process():
    """The first sample naming writers (none known before) is no evidence of a restart."""
    p = known()
    assert not p.look(2.0, writers(OLD), runs_ours=False).new_process
    assert p.stage is Stage.KNOWN


def test_a_driver_off_the_graph_gets_no_goal_before_it_counts_as_gone():
    """The keeper's machine found it: a lane freed in the same look that then found the
    driver of the next goal gone sent that goal on its way and ended it towards its caller:
    a goal at a driver nothing tracked. Off the graph, a driver gets no goal at all.
    """
    keeper = LaneKeeper({'arm': LaneConfig()}, {'grasp': SkillRoute('arm', '/arm')},
                        LaneManagerConfig(driver_wait_s=30.0, driver_lost_s=3.0))
    keeper.driver_on_graph('/arm', True, 0.0)
    keeper.look({'/arm': ANSWERED}, 0.0)
    keeper.look({'/arm': ANSWERED}, STATUS_SETTLE_S)
    keeper.driver_on_graph('/arm', False, 2.0)   # the process exits
    decision, actions = keeper.submit('c1', 'grasp', 2.1)
    assert decision.accepted
    assert not [a for a in actions if isinstance(a, SendToDriver)]
    actions = keeper.look({'/arm': ANSWERED}, 2.2)
    assert not [a for a in actions if isinstance(a, SendToDriver)]

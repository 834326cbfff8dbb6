"""Emergency stop sources without ROS (lane_manager/stop_sources.py) and with a real keeper.

Unit tests pin each rule (per-publisher latching, heartbeat silence, departure, never heard,
Jazzy's unidentified publishers, the reasons' wording, the config forms); a hypothesis state
machine drives the sources together with a real LaneKeeper through `LaneStops` (the code the
node shell runs) and checks at the drivers: no goal is sent while a source covering its lane
holds the stop, a publisher's stop is cleared only by that publisher, and clearing the stop
restarts nothing.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from skill_lanes.config import ConfigError, LaneConfig, LaneManagerConfig, parse_config
from lane_manager.goal_lifecycle import CancelGoalAtDriver, EndCaller, SendToDriver
from lane_manager.keeper import LaneKeeper, Notice, SkillRoute, Started
from lane_manager.stop_sources import LaneStops, Publisher, SourceSpec, StopSources

from keeper_support import answering

PENDANT = Publisher('aa01', '/robot/pendant')
PENDANT_RESTARTED = Publisher('aa02', '/robot/pendant')
SUPERVISOR = Publisher('bb01', '/fleet/supervisor')
KEY = 'emergency_stop'


def sources(*specs: SourceSpec) -> StopSources:
    return StopSources(list(specs), now=0.0)


def test_a_second_publishers_false_does_not_clear_the_first_ones_stop():
    stops = sources(SourceSpec('/estop', ('base',)))
    stops.heard('/estop', PENDANT, True, 1.0)
    stops.heard('/estop', SUPERVISOR, False, 2.0)
    assert stops.lane_holders('base', 2.0) == [
        ('/estop', 'on:/robot/pendant:False', 'on (set by /robot/pendant)')]
    stops.heard('/estop', PENDANT, False, 3.0)
    assert stops.lane_reason('base', 3.0) is None


def test_a_restarted_pendant_node_clears_its_own_stop_and_a_dead_ones_stays():
    stops = sources(SourceSpec('/estop', ('base',)))
    stops.heard('/estop', PENDANT, True, 1.0)
    stops.publisher_gone('/estop', PENDANT, remaining=1, now=2.0)
    assert stops.holding(2.0) == [
        ('/estop', 'on (set by /robot/pendant); its publisher left the graph')]
    stops.heard('/estop', SUPERVISOR, False, 3.0)
    assert stops.lane_reason('base', 3.0) is not None
    stops.heard('/estop', PENDANT_RESTARTED, False, 4.0)  # same node name, new gid
    assert stops.lane_reason('base', 4.0) is None


def test_a_gid_the_graph_had_not_named_yet_matches_by_gid():
    stops = sources(SourceSpec('/estop', ('base',)))
    stops.heard('/estop', Publisher('cc01', None), True, 1.0)
    stops.heard('/estop', Publisher('dd01', None), False, 2.0)
    assert stops.lane_reason('base', 2.0) is not None
    stops.heard('/estop', Publisher('cc01', '/robot/pendant'), False, 3.0)
    assert stops.lane_reason('base', 3.0) is None


def test_a_name_the_graph_learns_late_lets_the_restarted_node_clear_its_stop():
    stops = sources(SourceSpec('/estop', ('base',)))
    stops.heard('/estop', Publisher('aa01', None), True, 1.0)
    stops.named('/estop', PENDANT)
    assert stops.snapshot(1.0)[0]['latched_by'] == ['/robot/pendant']
    assert stops.snapshot(1.0)[0]['publisher'] == '/robot/pendant'
    stops.heard('/estop', PENDANT_RESTARTED, False, 2.0)
    assert stops.lane_reason('base', 2.0) is None


def test_unidentified_publishers_clear_only_once_every_candidate_said_false():
    """On Jazzy (rclpy 7) no publisher gid comes with a message: with two publishers on
    the topic nobody can be told apart, so a false clears nothing; alone, each is known.
    """
    both = Publisher.unidentified(['/robot/pendant', '/fleet/supervisor'])
    stops = sources(SourceSpec('/estop', ('base',)))
    stops.heard('/estop', both, True, 1.0)
    assert 'an unidentified publisher (one of: /fleet/supervisor, /robot/pendant)' in (
        stops.lane_reason('base', 1.0))
    stops.heard('/estop', both, False, 2.0)
    stops.heard('/estop', SUPERVISOR, False, 3.0)
    assert stops.lane_reason('base', 3.0) is not None
    stops.heard('/estop', PENDANT, False, 4.0)
    assert stops.lane_reason('base', 4.0) is None


def test_heartbeat_silence_stops_and_the_sources_next_message_clears_it():
    stops = sources(SourceSpec('/beat', ('base', 'arm'), heartbeat_s=0.5, required=True))
    assert stops.holding(0.1) == [('/beat', 'never heard since start')]
    stops.heard('/beat', PENDANT, False, 1.0)
    assert stops.holding(1.4) == [] and stops.next_deadline() == 1.5
    assert stops.holding(1.6) == [('/beat', 'silent for 0.6 s (heartbeat_s=0.5)')]
    assert stops.lane_holders('arm', 30.0)[0][1:] == (
        'silent', 'silent for 29 s (heartbeat_s=0.5)')
    stops.heard('/beat', PENDANT, False, 31.0)
    assert stops.holding(31.0) == []


def test_a_heartbeat_sources_last_publisher_leaving_is_a_stop_at_once():
    stops = sources(SourceSpec('/beat', ('base',), heartbeat_s=5.0))
    stops.heard('/beat', PENDANT, False, 1.0)
    stops.publisher_gone('/beat', SUPERVISOR, remaining=1, now=1.1)
    assert stops.holding(1.1) == []
    stops.publisher_gone('/beat', PENDANT, remaining=0, now=1.2)
    assert stops.holding(1.2) == [('/beat', 'its publisher /robot/pendant left the graph')]
    assert stops.next_deadline() is None


def test_a_source_covers_only_its_lanes_and_the_reason_names_every_holder():
    stops = sources(SourceSpec('/pendant', ('base', 'arm')),
                    SourceSpec('/beat', ('arm',), heartbeat_s=1.0, required=True))
    stops.heard('/pendant', PENDANT, True, 0.0)
    assert stops.lane_reason('tools', 0.0) is None
    assert stops.lane_reason('arm', 0.5) == (
        'the emergency stop is on (/pendant: on (set by /robot/pendant); /beat: never heard '
        'since start); goals are refused until every source holding it releases it')
    snap = {s['topic']: s for s in stops.snapshot(2.0)}
    assert snap['/pendant'] == {
        'topic': '/pendant', 'lanes': ['base', 'arm'], 'heartbeat_s': None, 'required': False,
        'active': True, 'why': 'on (set by /robot/pendant)', 'last_value': True, 'age_s': 2.0,
        'publisher': '/robot/pendant', 'latched_by': ['/robot/pendant']}
    assert snap['/beat']['why'] == 'never heard since start' and snap['/beat']['required']


def test_an_optional_source_never_heard_holds_nothing():
    stops = sources(SourceSpec('/estop', ('base',)))
    assert stops.holding(100.0) == [] and stops.next_deadline() is None


def test_diagnostics_name_each_holding_source():
    from lane_manager.diagnostics import ERROR, OK, emergency_stop_diagnostics
    stops = sources(SourceSpec('/pendant', ('base',)),
                    SourceSpec('/beat', ('base',), heartbeat_s=0.5, required=True))
    stops.heard('/pendant', PENDANT, True, 1.0)
    [(name, level, message, values)] = emergency_stop_diagnostics(
        {'emergency_stop': {'sources': stops.snapshot(2.0)}})
    assert (name, level) == ('skill_lanes: emergency stop', ERROR)
    assert message == ('on: /pendant: on (set by /robot/pendant); '
                       '/beat: never heard since start')
    assert values == {'/pendant': 'STOP: on (set by /robot/pendant); last true 1.0 s ago '
                                  'from /robot/pendant',
                      '/beat': 'STOP: never heard since start; never heard'}
    stops.heard('/pendant', PENDANT, False, 3.0)
    stops.heard('/beat', PENDANT, False, 3.0)
    assert emergency_stop_diagnostics({'emergency_stop': {'sources': stops.snapshot(3.0)}})[
        0][1:3] == (OK, 'off (every source clear)')
    assert emergency_stop_diagnostics({'emergency_stop': {'sources': []}}) == []


@pytest.mark.parametrize('lane_manager, error', [
    ({'emergency_stop': {'sources': [{'topic': '/p'}, {'topic': '/p'}]}},
     "lane_manager.emergency_stop.sources.1.topic: topic '/p' is given twice"),
    ({'emergency_stop': {'sources': [{'topic': '/p', 'lanes': ['nope']}]}},
     "lane_manager.emergency_stop.sources.0.lanes: unknown lane 'nope' (known: arm, base)"),
    ({'emergency_stop': {'sources': [{'topic': '/p'}]}, 'emergency_stop_topic': '/x'},
     'lane_manager.emergency_stop_topic: give either emergency_stop.sources or the older '
     'emergency_stop_topic / emergency_stop_lanes, not both'),
    ({'emergency_stop': {'sources': [{'topic': '/p', 'heartbeat_s': 0}]}},
     'lane_manager.emergency_stop.sources.0.heartbeat_s: Input should be greater than 0'),
    ({'emergency_stop': {'sources': [{'topic': '/p', 'heartbeat': 1}]}},
     'lane_manager.emergency_stop.sources.0.heartbeat: unknown key'),
])
def test_config_errors_name_the_key(lane_manager, error):
    data = {'lanes': {'base': {}, 'arm': {}}, 'lane_manager': lane_manager}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, 'robot.yaml', check_types=False)
    assert str(caught.value) == f'robot.yaml: {error}'


def test_config_forms_old_keys_are_one_source_and_heartbeats_default_to_required():
    old = LaneManagerConfig(emergency_stop_topic='/stop', emergency_stop_lanes=['base'])
    assert [(s.topic, s.lanes, s.is_required) for s in old.stop_sources()] == [
        ('/stop', ['base'], False)]
    assert LaneManagerConfig(emergency_stop_topic=None).stop_sources() == []
    assert [s.topic for s in LaneManagerConfig().stop_sources()] == ['/emergency_stop']
    new = LaneManagerConfig(emergency_stop={'sources': [
        {'topic': '/beat', 'heartbeat_s': 0.5}, {'topic': '/opt', 'heartbeat_s': 1,
                                                 'required': False}, {'topic': '/p'}]})
    assert [s.is_required for s in new.stop_sources()] == [True, False, False]
    assert LaneManagerConfig(emergency_stop={'sources': []}).stop_sources() == []


# --------------------------------------------------------------- with a real keeper
LANES = {'base': LaneConfig(policy='queue', max_queue=2, max_hold_s=None),
         'arm': LaneConfig(policy='preempt', max_queue=2, max_hold_s=None)}
SKILLS = {'drive': SkillRoute('base', '/base'), 'grasp': SkillRoute('arm', '/arm'),
          'fetch': SkillRoute('base', '/body', lanes=('base', 'arm'))}
LANES_OF = {r.driver: set(r.all_lanes) for r in SKILLS.values()}
SPECS = (SourceSpec('/pendant', ('base', 'arm')), SourceSpec('/arm_stop', ('arm',)),
         SourceSpec('/beat', ('base',), heartbeat_s=1.0, required=True))
PUBLISHERS = {'/pendant': [PENDANT, PENDANT_RESTARTED, SUPERVISOR],
              '/arm_stop': [Publisher('ee01', '/arm/stop')],
              '/beat': [Publisher('ff01', '/beat/node')]}


def lane_keeper() -> LaneKeeper:
    ids = itertools.count()
    keeper = LaneKeeper(LANES, SKILLS, LaneManagerConfig(driver_wait_s=3.0),
                        new_id=lambda: f'd{next(ids)}')
    for driver in LANES_OF:
        answering(keeper, [driver], 0.0)
        keeper.driver_status(driver, {}, 0.0)
    return keeper


def test_stop_cancels_rewording_cancels_nothing_again_clearing_starts_nothing():
    keeper, stops = lane_keeper(), sources(*SPECS[:2])
    lanes = LaneStops(stops, ['base', 'arm'], KEY)
    decision, actions = keeper.submit('c1', 'grasp', 0.0)
    assert decision.accepted and any(isinstance(a, SendToDriver) for a in actions)
    keeper.driver_answer('d0', True, 0.1)
    stops.heard('/pendant', PENDANT, True, 1.0)
    done = lanes.sync(keeper, 1.0)
    assert [a.driver_goal_id for a in done.actions if isinstance(a, CancelGoalAtDriver)] == ['d0']
    stops.heard('/arm_stop', PUBLISHERS['/arm_stop'][0], True, 1.1)
    done = lanes.sync(keeper, 1.1)
    assert done.actions == [] and done.changed  # reworded, nothing cancelled twice
    assert '/arm_stop: on (set by /arm/stop)' in keeper.arbiter.lanes['arm'].blocked[KEY]
    refused, _ = keeper.submit('c2', 'drive', 1.2)
    assert not refused.accepted and refused.reason.startswith('emergency_stop: ')
    assert '/pendant: on (set by /robot/pendant)' in refused.reason
    keeper.driver_result('d0', 'canceled', object(), 1.3)
    stops.heard('/pendant', PENDANT, False, 2.0)
    stops.heard('/arm_stop', PUBLISHERS['/arm_stop'][0], False, 2.0)
    done = lanes.sync(keeper, 2.0)
    assert done.released == ['base', 'arm']
    assert not any(isinstance(a, (SendToDriver, Started)) for a in done.actions)
    assert keeper.arbiter.active_goals() == [] and keeper.goals == {}


class StopSourcesMachine(RuleBasedStateMachine):
    """Callers, drivers, stop publishers and time, interleaved at random."""

    @initialize()
    def setup(self):
        self.keeper = lane_keeper()
        self.now = 0.0
        self.sources = StopSources(list(SPECS), self.now)
        self.lanes = LaneStops(self.sources, ['base', 'arm'], KEY)
        self.callers = itertools.count()
        self.running: dict[str, str] = {}   # driver goal id -> driver (the drivers' truth)
        self.said: dict[tuple[str, str], bool] = {}  # (topic, node) -> its last word
        self.beat_heard = None                        # the heartbeat source's last message
        self.skill_of: dict[str, str] = {}
        self.sync()

    # ------------------------------------------------------------ helpers
    def stopped(self, lane: str) -> bool:
        """The model: a lane is stopped while a publisher's last word is true, or the
        heartbeat source is silent / never heard (the model's own bookkeeping).
        """
        for (topic, _), value in self.said.items():
            if value and lane in next(s.lanes for s in SPECS if s.topic == topic):
                return True
        if lane in SPECS[2].lanes:
            heard = self.beat_heard
            if heard is None or self.now - heard >= SPECS[2].heartbeat_s:
                return True
        return False

    def apply(self, actions, released: tuple[str, ...] = ()):
        """`released`: lanes the stop was just cleared on: nothing may start there (a stop
        on one lane may let another lane's queue move on: a multi-lane goal cancelled).
        """
        for action in actions:
            if isinstance(action, SendToDriver):
                goal = self.keeper.goals[action.driver_goal_id]
                for lane in LANES_OF[goal.driver]:
                    assert not self.stopped(lane), f'{action.driver_goal_id} sent to a ' \
                        f'stopped lane {lane}'
                    assert lane not in released, f'clearing the stop sent {goal.driver_goal_id}'
                self.running[action.driver_goal_id] = goal.driver
            elif isinstance(action, Started):
                lanes = set(SKILLS[self.skill_of[action.caller_goal_id]].all_lanes)
                assert not lanes & set(released), f'clearing the stop started {action}'
            else:
                assert isinstance(action, (CancelGoalAtDriver, EndCaller, Notice))

    def sync(self):
        was = dict(self.lanes.applied)
        done = self.lanes.sync(self.keeper, self.now)
        for lane in done.released:
            assert lane in was
        self.apply(done.actions, released=tuple(done.released))

    # ------------------------------------------------------------ rules
    @rule(skill=st.sampled_from(sorted(SKILLS)))
    def submit(self, skill):
        caller = f'c{next(self.callers)}'
        self.skill_of[caller] = skill
        decision, actions = self.keeper.submit(caller, skill, self.now)
        lanes = SKILLS[skill].all_lanes
        if any(self.stopped(lane) for lane in lanes):
            assert not decision.accepted and decision.reason.startswith('emergency_stop: ')
        self.apply(actions)

    @rule(topic=st.sampled_from(sorted(PUBLISHERS)), index=st.integers(0, 2),
          value=st.booleans())
    def publish(self, topic, index, value):
        publisher = PUBLISHERS[topic][index % len(PUBLISHERS[topic])]
        self.sources.heard(topic, publisher, value, self.now)
        self.said[(topic, publisher.node)] = value
        if topic == '/beat':
            self.beat_heard = self.now
        self.sync()

    @rule(data=st.data(), outcome=st.sampled_from(['succeeded', 'canceled']))
    def driver_ends(self, data, outcome):
        if self.running:
            gid = data.draw(st.sampled_from(sorted(self.running)))
            driver = self.running.pop(gid)
            self.apply(self.keeper.driver_answer(gid, True, self.now))
            self.apply(self.keeper.driver_result(gid, outcome, object(), self.now))
            self.apply(self.keeper.driver_status(driver, {}, self.now))

    @rule(dt=st.sampled_from([0.1, 0.5, 1.5]))
    def time_passes(self, dt):
        self.now += dt
        self.sync()
        self.apply(self.keeper.tick(self.now))

    @invariant()
    def stopped_lanes_are_blocked_and_run_nothing_new(self):
        if not hasattr(self, 'keeper'):
            return
        self.keeper.check_invariants()
        for lane in ('base', 'arm'):
            blocked = KEY in self.keeper.arbiter.lanes[lane].blocked
            assert blocked == self.stopped(lane), (lane, self.said, self.now)
            holder = self.keeper.arbiter.lanes[lane].holder
            if blocked and holder is not None:
                assert holder.state.value == 'cancelling', f'{lane} stopped, holder runs on'


StopSourcesMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_stop_sources_state_machine = StopSourcesMachine.TestCase

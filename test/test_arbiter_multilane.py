"""Multi-lane skills in the pure arbiter (`lanes: [base, arm]`).

All lanes or none, never one held while waiting for another, no deadlock, no starvation by
single-lane goals, each lane's policy respected. Examples, then a hypothesis state machine
mixing single- and multi-lane goals with driver ends, cancels, preemption and time.
"""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lane_manager.arbiter import Arbiter, CancelAtDriver, EndWithoutDriver, Occupant, StartGoal
from skill_lanes.config import LaneConfig


def make(**policies: str) -> Arbiter:
    return Arbiter({name: LaneConfig(policy=p, max_queue=4) for name, p in policies.items()})


def started(effects) -> list[str]:
    return [e.goal_id for e in effects if isinstance(e, StartGoal)]


def test_all_free_starts_at_once_holding_every_lane():
    arb = make(base='queue', arm='queue')
    decision = arb.submit('m', 'fetch', '', 0, 0.0, lanes=['base', 'arm'])
    assert decision.accepted and started(decision.effects) == ['m']
    assert arb.lanes['base'].holder is arb.lanes['arm'].holder
    assert arb.lanes_of('m') == ('base', 'arm')
    assert arb.active_goals() == ['m']
    snap = arb.snapshot(1.0)
    assert snap['arm']['holder']['lanes'] == ['base', 'arm']
    assert arb.goal_ended('m', 'succeeded', 1.0) == []
    assert arb.lanes['base'].holder is None and arb.lanes['arm'].holder is None
    assert [e['goal_id'] for e in arb.lanes['arm'].endings] == ['m']
    arb.check_invariants()


def test_waits_holding_nothing_and_reserves_free_lanes_against_overtaking():
    arb = make(base='queue', arm='queue')
    assert started(arb.submit('a1', 'grasp', 'arm', 0, 0.0).effects) == ['a1']
    decision = arb.submit('m', 'fetch', '', 0, 0.1, lanes=['base', 'arm'])
    assert decision.accepted and not started(decision.effects)
    assert "'arm' is held by skill 'grasp'" in decision.reason
    assert arb.lanes['base'].holder is None          # nothing held while waiting
    # A single-lane goal of equal priority for the free lane waits behind the multi-lane one.
    later = arb.submit('b1', 'drive', 'base', 0, 0.2)
    assert later.accepted and not started(later.effects)
    assert 'reserved for skill' in later.reason
    arb.check_invariants()
    assert started(arb.goal_ended('a1', 'succeeded', 1.0)) == ['m']
    assert arb.queued('base') == ['b1']
    assert started(arb.goal_ended('m', 'succeeded', 2.0)) == ['b1']
    arb.check_invariants()


def test_reject_lane_refuses_a_multi_lane_goal_that_cannot_start_now():
    arb = make(base='reject', arm='queue')
    arb.submit('a1', 'grasp', 'arm', 0, 0.0)
    decision = arb.submit('m', 'fetch', '', 0, 0.1, lanes=['base', 'arm'])
    assert not decision.accepted and "'arm' is held" in decision.reason
    assert arb.lanes['base'].holder is None and not arb.lanes['base'].queue
    assert arb.lanes['base'].refusals[-1]['goal_id'] == 'm'
    arb.check_invariants()


def test_preempt_cancels_each_lower_holder_once_and_starts_after_both_end():
    arb = make(base='preempt', arm='preempt')
    arb.submit('b1', 'drive', 'base', 0, 0.0)
    arb.submit('a1', 'grasp', 'arm', 0, 0.0)
    decision = arb.submit('m', 'fetch', '', 5, 0.1, lanes=['base', 'arm'])
    assert sorted(e.goal_id for e in decision.effects if isinstance(e, CancelAtDriver)) == [
        'a1', 'b1']
    assert arb.goal_ended('b1', 'canceled', 0.2) == []   # arm still held: nothing starts
    assert arb.lanes['base'].holder is None
    assert started(arb.goal_ended('a1', 'canceled', 0.3)) == ['m']


def test_occupant_on_one_lane_keeps_the_multi_lane_goal_waiting():
    arb = make(base='queue', arm='queue')
    arb.occupy('arm', 'x', Occupant('external', 'driver runs goal x', 0.0, 'arm_drv', 'x'))
    decision = arb.submit('m', 'fetch', '', 0, 0.1, lanes=['base', 'arm'])
    assert decision.accepted and not started(decision.effects)
    assert started(arb.vacate('arm', 'x', 1.0)) == ['m']


def test_cancel_while_waiting_leaves_every_queue_and_frees_reserved_lanes():
    arb = make(base='queue', arm='queue')
    arb.submit('a1', 'grasp', 'arm', 0, 0.0)
    arb.submit('m', 'fetch', '', 0, 0.1, lanes=['base', 'arm'])
    arb.submit('b1', 'drive', 'base', 0, 0.2)
    effects = arb.cancel('m', 0.3)
    assert isinstance(effects[0], EndWithoutDriver) and started(effects) == ['b1']
    assert arb.queued('arm') == [] and arb.lanes_of('m') == ()
    arb.check_invariants()


def test_crossed_lane_order_never_deadlocks():
    arb = make(base='queue', arm='queue')
    arb.submit('a1', 'grasp', 'arm', 0, 0.0)
    arb.submit('b1', 'drive', 'base', 0, 0.0)
    arb.submit('m1', 'fetch', '', 0, 0.1, lanes=['base', 'arm'])
    arb.submit('m2', 'place', '', 0, 0.2, lanes=['arm', 'base'])
    assert arb.goal_ended('a1', 'succeeded', 1.0) == []
    assert started(arb.goal_ended('b1', 'succeeded', 1.1)) == ['m1']
    assert started(arb.goal_ended('m1', 'succeeded', 2.0)) == ['m2']


def test_max_hold_cancels_a_multi_lane_holder_once():
    arb = Arbiter({'base': LaneConfig(max_hold_s=1), 'arm': LaneConfig(max_hold_s=1)})
    arb.submit('m', 'fetch', '', 0, 0.0, lanes=['base', 'arm'])
    assert [e.goal_id for e in arb.tick(2.0)] == ['m']
    assert arb.tick(3.0) == []


LANES = {
    'q': LaneConfig(policy='queue', max_queue=3, max_hold_s=30),
    'r': LaneConfig(policy='reject'),
    'p': LaneConfig(policy='preempt', max_queue=2, max_hold_s=None),
    'q2': LaneConfig(policy='queue', max_queue=2),
}
SHAPES = [('q',), ('r',), ('p',), ('q2',), ('q', 'p'), ('p', 'q'), ('q', 'r'), ('q2', 'q'),
          ('q', 'q2', 'p')]


class MultiLaneMachine(RuleBasedStateMachine):
    """Drivers and callers around the arbiter, with skills spanning several lanes."""

    @initialize()
    def setup(self):
        self.arb = Arbiter(LANES)
        self.now = 0.0
        self.ids = itertools.count()
        self.goals: dict[str, tuple[tuple[str, ...], int, int]] = {}
        self.waiting: set[str] = set()
        self.running: set[str] = set()   # at a driver (one driver per goal, any lane count)
        self.ended: set[str] = set()
        self.accepted: set[str] = set()

    def live_on(self, lane: str) -> set[str]:
        return {g for g in self.running if lane in self.goals[g][0]}

    def apply(self, effects):
        for effect in effects:
            gid = effect.goal_id
            lanes, priority, seq = self.goals[gid]
            if isinstance(effect, StartGoal):
                assert gid not in self.ended and gid not in self.running
                for lane in lanes:  # all or none, never two at the drivers on one lane
                    assert not self.live_on(lane), (lane, self.live_on(lane))
                    for other in self.waiting - {gid}:
                        if lane in self.goals[other][0]:
                            _, p2, s2 = self.goals[other]
                            assert p2 < priority or (p2 == priority and s2 > seq), 'not FIFO'
                self.waiting.discard(gid)
                self.running.add(gid)
            elif isinstance(effect, CancelAtDriver):
                assert gid in self.running
            elif isinstance(effect, EndWithoutDriver):
                assert gid not in self.ended and gid not in self.running
                self.ended.add(gid)
                self.waiting.discard(gid)

    @rule(lanes=st.sampled_from(SHAPES), priority=st.integers(0, 3))
    def submit(self, lanes, priority):
        gid = f'g{next(self.ids)}'
        self.goals[gid] = (lanes, priority, len(self.goals))
        decision = self.arb.submit(gid, 'skill', lanes[0], priority, self.now, lanes=lanes)
        if not decision.accepted:
            assert decision.reason and decision.retry_after_ms is not None
            assert any(self.live_on(n) or self.arb.lanes[n].queue for n in lanes)
            self.ended.add(gid)
            return
        self.accepted.add(gid)
        self.waiting.add(gid)
        self.apply(decision.effects)
        if gid in self.waiting:
            assert 'r' not in lanes, 'a reject lane queued'
            assert all(self.arb.lanes[n].holder is None or self.arb.lanes[n].holder.goal.goal_id
                       != gid for n in lanes)

    @rule(data=st.data(), outcome=st.sampled_from(['succeeded', 'aborted', 'canceled']))
    def driver_ends_a_goal(self, data, outcome):
        if self.running:
            gid = data.draw(st.sampled_from(sorted(self.running)))
            self.running.discard(gid)
            self.ended.add(gid)
            self.apply(self.arb.goal_ended(gid, outcome, self.now))

    @rule(data=st.data())
    def driver_accepts(self, data):
        if self.running:
            self.arb.driver_accepted(data.draw(st.sampled_from(sorted(self.running))))

    @rule(data=st.data())
    def caller_cancels(self, data):
        if self.goals:
            self.apply(self.arb.cancel(data.draw(st.sampled_from(sorted(self.goals))),
                                       self.now))

    @rule(dt=st.sampled_from([0.5, 40.0]))
    def time_passes(self, dt):
        self.now += dt
        self.apply(self.arb.tick(self.now))

    @invariant()
    def consistent(self):
        if not hasattr(self, 'arb'):
            return
        self.arb.check_invariants()
        for name, lane in self.arb.lanes.items():
            live = self.live_on(name)
            assert len(live) <= 1
            assert live == ({lane.holder.goal.goal_id} if lane.holder else set())
            # No deadlock: a waiting goal heading a free lane waits for a busy lane.
            if lane.holder is None and lane.queue:
                head = lane.queue[0]
                assert any(self.arb.lanes[n].holder or self.arb.lanes[n].queue[0] is not head
                           for n in head.all_lanes)

    def teardown(self):
        """Drain: drivers end what they run; every accepted goal must end (no deadlock)."""
        if not hasattr(self, 'arb'):
            return
        for _ in range(200):
            if not self.running and not self.waiting:
                break
            for gid in sorted(self.running):
                self.running.discard(gid)
                self.ended.add(gid)
                self.apply(self.arb.goal_ended(gid, 'succeeded', self.now))
        assert self.accepted <= self.ended, self.accepted - self.ended
        assert all(lane.holder is None and not lane.queue for lane in self.arb.lanes.values())


MultiLaneMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_multi_lane_state_machine = MultiLaneMachine.TestCase


def test_blocked_lane_refuses_every_goal_with_its_reason_until_unblocked():
    arb = make(base='queue', arm='queue')
    arb.block('arm', 'emergency_stop', 'emergency_stop: the emergency stop is on')
    for lanes in (['arm'], ['base', 'arm']):
        decision = arb.submit(f'g{len(lanes)}', 's', lanes[0], 9, 0.0, lanes=lanes)
        assert not decision.accepted and decision.reason.startswith('emergency_stop')
    assert started(arb.submit('b', 's', 'base', 0, 0.0).effects) == ['b']
    snap = arb.snapshot(0.0)
    assert snap['arm']['blocked_by'] == ['emergency_stop'] and snap['base']['blocked_by'] == []
    arb.unblock('arm', 'emergency_stop', 1.0)
    assert started(arb.submit('a', 's', 'arm', 0, 1.0).effects) == ['a']
    arb.check_invariants()

"""The arbitration core, without ROS: examples for each policy plus a hypothesis state machine
that drives random interleavings of goals, driver ends, cancels and time, and checks after
every step that no lane ever forwards two goals to its drivers, that queues are FIFO within a
priority, and that every accepted goal eventually ends (no hung lane). Goals of approval
skills are among them: none starts while its approval is pending, a denied or timed-out one
never starts.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lane_manager.arbiter import Arbiter, CancelAtDriver, EndWithoutDriver, Occupant, StartGoal
from skill_lanes.config import LaneConfig


def make(policy: str, **kw) -> Arbiter:
    return Arbiter({'lane': LaneConfig(policy=policy, **kw), 'other': LaneConfig()})


def test_free_lane_starts_at_once_and_frees_on_end():
    arb = make('queue')
    decision = arb.submit('a', 'nav', 'lane', 0, now=0.0)
    assert decision.accepted and decision.effects == (StartGoal('a'),)
    assert arb.is_holder('a')
    assert arb.goal_ended('a', 'succeeded', now=1.0) == []
    assert arb.snapshot(1.0)['lane']['holder'] is None
    assert arb.snapshot(1.0)['lane']['counters']['succeeded'] == 1


def test_queue_policy_is_fifo_within_priority_and_priority_first():
    arb = make('queue', max_queue=8)
    arb.submit('a', 's', 'lane', 0, 0.0)
    assert arb.submit('b', 's', 'lane', 0, 0.1).queued_position == 0
    assert arb.submit('c', 's', 'lane', 0, 0.2).queued_position == 1
    assert arb.submit('d', 's', 'lane', 5, 0.3).queued_position == 0
    order = []
    current = 'a'
    for t in range(4):
        effects = arb.goal_ended(current, 'succeeded', float(t + 1))
        if not effects:
            break
        current = effects[0].goal_id
        order.append(current)
    assert order == ['d', 'b', 'c']


def test_queue_full_is_refused_with_reason_naming_the_holder():
    arb = make('queue', max_queue=1, retry_after_ms=250)
    arb.submit('a', 'nav', 'lane', 0, 0.0)
    assert arb.submit('b', 'nav', 'lane', 0, 0.0).accepted
    refused = arb.submit('c', 'dock', 'lane', 0, 0.0)
    assert not refused.accepted
    assert "held by skill 'nav' goal a" in refused.reason and 'queue is full' in refused.reason
    assert refused.retry_after_ms == 250
    refusal = arb.snapshot(0.0)['lane']['last_refusals'][-1]
    assert refusal['goal_id'] == 'c' and refusal['holder'] == {'skill': 'nav', 'goal_id': 'a'}


def test_reject_policy_refuses_while_held_and_other_lanes_run():
    arb = make('reject', retry_after_ms=1000)
    arb.submit('a', 'grasp', 'lane', 0, 0.0)
    refused = arb.submit('b', 'grasp', 'lane', 0, 0.0)
    assert not refused.accepted and refused.retry_after_ms == 1000
    assert arb.submit('c', 'nav', 'other', 0, 0.0).effects == (StartGoal('c'),)
    arb.goal_ended('a', 'succeeded', 1.0)
    assert arb.submit('d', 'grasp', 'lane', 0, 1.0).effects == (StartGoal('d'),)


def test_preempt_cancels_lower_priority_holder_then_starts_after_driver_confirms():
    arb = make('preempt')
    arb.submit('low', 'home', 'lane', 0, 0.0)
    decision = arb.submit('high', 'retract', 'lane', 10, 0.5)
    assert decision.accepted
    (cancel,) = decision.effects
    assert isinstance(cancel, CancelAtDriver) and cancel.goal_id == 'low'
    assert 'preempted' in cancel.reason
    assert arb.is_holder('low')                       # not free until the driver confirms
    effects = arb.goal_ended('low', 'canceled', 0.6)
    assert effects == [StartGoal('high')]
    ending = arb.snapshot(0.6)['lane']['last_endings'][-1]
    assert ending['goal_id'] == 'low' and 'preempted' in ending['reason']


def test_preempt_with_equal_priority_queues():
    arb = make('preempt')
    arb.submit('a', 's', 'lane', 3, 0.0)
    decision = arb.submit('b', 's', 'lane', 3, 0.0)
    assert decision.accepted and decision.effects == () and decision.queued_position == 0


def test_cancel_queued_goal_never_touches_driver():
    arb = make('queue')
    arb.submit('a', 's', 'lane', 0, 0.0)
    arb.submit('b', 's', 'lane', 0, 0.0)
    assert arb.cancel('b', 0.1) == [EndWithoutDriver('b', 'canceled', 'canceled by its caller')]
    assert arb.goal_ended('a', 'succeeded', 0.2) == []


def test_cancel_holder_goes_to_driver_and_an_ignored_cancel_never_frees_the_lane():
    arb = make('queue', cancel_grace_s=2.0)
    arb.submit('a', 's', 'lane', 0, 0.0)
    arb.submit('b', 's', 'lane', 0, 0.0)
    assert arb.cancel('a', 1.0) == [CancelAtDriver('a', 'canceled by its caller')]
    assert arb.cancel('a', 1.1) == []                 # a second cancel is not re-sent
    assert arb.tick(3.0) == [] and arb.tick(1000.0) == []
    assert arb.is_holder('a')                         # only the driver's end frees it
    assert arb.goal_ended('a', 'canceled', 1001.0) == [StartGoal('b')]


def test_occupants_keep_a_lane_held_after_its_holder_ended():
    arb = make('queue')
    arb.submit('a', 's', 'lane', 0, 0.0)
    arb.submit('b', 's', 'lane', 0, 0.0)
    arb.occupy('lane', 'drv-a', Occupant('lane_manager', 'driver /d stopped answering', 1.0,
                                         '/d', 'drv-a'))
    assert arb.goal_ended('a', 'aborted', 1.0) == []  # caller told; driver never confirmed
    snap = arb.snapshot(1.0)['lane']
    assert snap['holder']['driver_goal_id'] == 'drv-a'
    assert 'stopped answering' in snap['held_because']
    refused = make('reject')
    refused.occupy('lane', 'x', Occupant('external', 'external goal x at driver /d', 0.0,
                                         '/d', 'x'))
    decision = refused.submit('c', 's', 'lane', 0, 0.0)
    assert not decision.accepted and 'external goal x' in decision.reason
    assert arb.vacate('lane', 'drv-a', 2.0) == [StartGoal('b')]


def test_max_hold_cancels_at_driver():
    arb = make('queue', max_hold_s=5.0)
    arb.submit('a', 's', 'lane', 0, 0.0)
    arb.driver_accepted('a')
    assert arb.tick(4.9) == []
    (effect,) = arb.tick(5.0)
    assert isinstance(effect, CancelAtDriver) and 'max_hold_s' in effect.reason
    assert arb.goal_ended('a', 'canceled', 5.1) == []
    assert 'max_hold_s' in arb.snapshot(5.1)['lane']['last_endings'][-1]['reason']


def test_duplicate_goal_id_is_refused():
    arb = make('queue')
    arb.submit('a', 's', 'lane', 0, 0.0)
    assert not arb.submit('a', 's', 'lane', 0, 0.0).accepted


def test_unknown_goal_events_are_ignored():
    arb = make('queue')
    assert arb.cancel('nope', 0.0) == []
    assert arb.goal_ended('nope', 'succeeded', 0.0) == []
    arb.driver_accepted('nope')
    arb.check_invariants()


LANES = {
    'q': LaneConfig(policy='queue', max_queue=3, max_hold_s=30, cancel_grace_s=2),
    'r': LaneConfig(policy='reject', max_awaiting_approval=2),
    'p': LaneConfig(policy='preempt', max_queue=2, max_hold_s=None, cancel_grace_s=1),
}


class ArbiterMachine(RuleBasedStateMachine):
    """A model of drivers and callers around the arbiter."""

    @initialize()
    def setup(self):
        self.arb = Arbiter(LANES)
        self.now = 0.0
        self.ids = itertools.count()
        self.goals: dict[str, tuple[str, int, int]] = {}  # id -> (lane, priority, seq)
        self.waiting: dict[str, str] = {}                 # queued id -> lane
        self.at_driver: dict[str, set[str]] = {lane: set() for lane in LANES}
        self.released: set[str] = set()                   # force-released, driver may run on
        self.ended: set[str] = set()
        self.accepted: set[str] = set()
        self.seq = itertools.count()
        self.awaiting: dict[str, float] = {}              # awaiting approval id -> deadline
        self.never: set[str] = set()                      # denied / timed out: never starts

    def apply(self, effects):
        for effect in effects:
            gid = effect.goal_id
            lane = self.goals[gid][0]
            if isinstance(effect, StartGoal):
                assert gid not in self.ended
                assert gid not in self.awaiting, 'started while its approval is pending'
                assert gid not in self.never, 'a denied or timed-out goal started'
                # Never two goals of one lane at the drivers (force-released ones excepted).
                assert not (self.at_driver[lane] - self.released), (lane, self.at_driver[lane])
                _, priority, seq = self.goals[gid]
                for other, other_lane in self.waiting.items():
                    if other_lane == lane and other != gid:
                        _, p2, s2 = self.goals[other]
                        assert p2 < priority or (p2 == priority and s2 > seq), 'not FIFO'
                self.waiting.pop(gid, None)
                self.at_driver[lane].add(gid)
            elif isinstance(effect, CancelAtDriver):
                assert gid in self.at_driver[lane]
            elif isinstance(effect, EndWithoutDriver):
                assert gid not in self.ended
                self.ended.add(gid)
                if gid in self.at_driver[lane]:
                    self.released.add(gid)
                self.waiting.pop(gid, None)
                if self.awaiting.pop(gid, None) is not None:
                    self.never.add(gid)

    @rule(lane=st.sampled_from(sorted(LANES)), priority=st.integers(0, 3))
    def submit(self, lane, priority):
        gid = f'g{next(self.ids)}'
        self.goals[gid] = (lane, priority, next(self.seq))
        held = bool(self.at_driver[lane] - self.released)
        decision = self.arb.submit(gid, 'skill', lane, priority, self.now)
        if not decision.accepted:
            assert held and decision.reason and decision.retry_after_ms is not None
            self.ended.add(gid)
            return
        self.accepted.add(gid)
        if not any(isinstance(e, StartGoal) and e.goal_id == gid for e in decision.effects):
            assert LANES[lane].policy != 'reject'
            self.waiting[gid] = lane
        self.apply(decision.effects)

    @rule(lane=st.sampled_from(sorted(LANES)), priority=st.integers(0, 3),
          timeout=st.sampled_from([0.3, 1.0, 50.0]))
    def submit_needing_approval(self, lane, priority, timeout):
        gid = f'g{next(self.ids)}'
        self.goals[gid] = (lane, priority, next(self.seq))
        decision = self.arb.submit(gid, 'careful', lane, priority, self.now,
                                   approval_timeout_s=timeout)
        if not decision.accepted:  # only when the lane's awaiting list is full
            waiting = sum(1 for g in self.awaiting if self.goals[g][0] == lane)
            assert waiting >= LANES[lane].max_awaiting_approval, decision.reason
            self.ended.add(gid)
            return
        assert decision.awaiting_approval and not decision.effects
        self.accepted.add(gid)
        self.awaiting[gid] = self.now + timeout

    @rule(data=st.data(), approve=st.booleans())
    def operator_decides(self, data, approve):
        if not self.awaiting:
            assert self.arb.decide('nobody', approve, 'op', self.now)[0] is False
            return
        gid = data.draw(st.sampled_from(sorted(self.awaiting)))
        decided, _, effects = self.arb.decide(gid, approve, 'op', self.now)
        assert decided
        del self.awaiting[gid]
        lane, priority, _ = self.goals[gid]
        self.goals[gid] = (lane, priority, next(self.seq))  # it arrives now
        if not approve:
            self.never.add(gid)
            assert EndWithoutDriver(gid, 'aborted', 'denied by op') in effects
        elif not any(e.goal_id == gid for e in effects):
            self.waiting[gid] = lane  # queued from now on
        self.apply(effects)
        assert self.arb.decide(gid, approve, 'op', self.now)[0] is False  # decided once

    @rule(data=st.data(), outcome=st.sampled_from(['succeeded', 'aborted', 'canceled']))
    def driver_ends_a_goal(self, data, outcome):
        running = sorted(g for lane in self.at_driver.values() for g in lane)
        if not running:
            return
        gid = data.draw(st.sampled_from(running))
        lane = self.goals[gid][0]
        self.at_driver[lane].discard(gid)
        if gid in self.released:
            self.released.discard(gid)
            assert self.arb.goal_ended(gid, outcome, self.now) == []
            return
        self.ended.add(gid)
        self.apply(self.arb.goal_ended(gid, outcome, self.now))

    @rule(data=st.data())
    def driver_accepts(self, data):
        running = sorted(g for lane in self.at_driver.values() for g in lane)
        if running:
            self.arb.driver_accepted(data.draw(st.sampled_from(running)))

    @rule(data=st.data())
    def caller_cancels(self, data):
        if self.goals:
            gid = data.draw(st.sampled_from(sorted(self.goals)))
            self.apply(self.arb.cancel(gid, self.now))

    @rule(dt=st.sampled_from([0.1, 0.5, 1.5, 40.0]))
    def time_passes(self, dt):
        self.now += dt
        self.apply(self.arb.tick(self.now))
        assert all(deadline > self.now for deadline in self.awaiting.values()), 'not timed out'

    @invariant()
    def consistent(self):
        if hasattr(self, 'arb'):
            self.arb.check_invariants()
            for lane in LANES:
                holder = self.arb.lanes[lane].holder
                live = self.at_driver[lane] - self.released
                assert len(live) <= 1
                if holder is not None:
                    assert live == {holder.goal.goal_id}

    def teardown(self):
        """Drain: drivers end what they run, time passes: every accepted goal must end."""
        if not hasattr(self, 'arb'):
            return
        self.now += 100.0  # every goal awaiting approval times out
        self.apply(self.arb.tick(self.now))
        assert not self.awaiting
        for _ in range(200):
            running = sorted(g for lane in self.at_driver.values() for g in lane)
            if not running and not self.waiting:
                break
            for gid in running:
                lane = self.goals[gid][0]
                self.at_driver[lane].discard(gid)
                if gid in self.released:
                    self.released.discard(gid)
                    self.arb.goal_ended(gid, 'succeeded', self.now)
                else:
                    self.ended.add(gid)
                    self.apply(self.arb.goal_ended(gid, 'succeeded', self.now))
        assert self.accepted <= self.ended, self.accepted - self.ended
        assert all(lane.holder is None and not lane.queue and not lane.awaiting
                   for lane in self.arb.lanes.values())


ArbiterMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_arbiter_state_machine = ArbiterMachine.TestCase


@pytest.mark.parametrize('policy', ['queue', 'reject', 'preempt'])
def test_snapshot_is_json_serializable(policy):
    import json
    arb = make(policy)
    arb.submit('a', 's', 'lane', 0, 0.0)
    arb.submit('b', 's', 'lane', 1, 0.0)
    json.dumps(arb.snapshot(1.0))

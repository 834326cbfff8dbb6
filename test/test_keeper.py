"""The lane keeper (arbiter + goal lifecycles + drivers' status) against adversarial drivers,
without ROS: a hypothesis state machine plays drivers that answer late or never, ignore
cancels, stall, leave, and clients that send goals around the lane manager. It checks the
promise at the drivers' truth (the model), not the keeper's bookkeeping: a goal is sent to
a lane only when nothing the keeper was told about may still run there, every caller gets
exactly one end, and a caller's result is never invented. The lane manager also restarts
(a fresh keeper beside goals that still run), and a driver's status topic may reach it
long after the driver answers (matched later: its status messages are not delivered until
then, and then its latest list at once, as transient local does). A driver process may be
restarted at once or come back before it counts as gone: a new status writer on the graph
(the old one's lingering until its lease ends), not matched yet, maybe already running a goal
sent around the lane manager.
"""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from skill_lanes.config import LaneConfig, LaneManagerConfig
from lane_manager.driver_presence import ProbeAfresh, ProbeSample
from lane_manager.goal_lifecycle import (RESULT_WAIT_S, CancelGoalAtDriver, DriverGoal,
                                         EndCaller, Phase, SendToDriver)
from lane_manager.keeper import LaneKeeper, Notice, SkillRoute, Started

from keeper_support import answering

LANES = {'q': LaneConfig(policy='queue', max_queue=3, max_hold_s=20, cancel_grace_s=2),
         'p': LaneConfig(policy='preempt', max_queue=2, max_hold_s=None, cancel_grace_s=1,
                         external_goals='cancel')}
SKILLS = {'a': SkillRoute('q', '/a'), 'b': SkillRoute('q', '/b'),
          'c': SkillRoute('p', '/c'), 'd': SkillRoute('p', '/d', priority=5),
          'free': SkillRoute(None, '/e'),
          'whole': SkillRoute('q', '/w', lanes=('q', 'p')),  # a multi-lane skill
          # approval: operator (single- and multi-lane)
          'careful': SkillRoute('q', '/a', approval_timeout_s=5.0),
          'careful_whole': SkillRoute('q', '/w', lanes=('q', 'p'), approval_timeout_s=2.0)}
DRIVERS = sorted({r.driver for r in SKILLS.values()})
LANES_OF = {r.driver: set(r.all_lanes) for r in SKILLS.values()}
SETTINGS = LaneManagerConfig(driver_wait_s=3.0, driver_response_s=2.0, driver_lost_s=1.0)
CODES = {'succeeded': 4, 'canceled': 5, 'aborted': 6}


class TruthGoal:
    def __init__(self, driver: str, external: bool = False) -> None:
        self.driver = driver
        self.state = 'running' if external else 'requested'
        self.cancel_asked = False
        self.external = external


class KeeperMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        ids = itertools.count()
        self.keeper = LaneKeeper(LANES, SKILLS, SETTINGS, new_id=lambda: f'd{next(ids)}')
        self.now = 0.0
        self.callers = itertools.count()
        self.truth: dict[str, TruthGoal] = {}       # every goal a driver ever got
        self.released: set[str] = set()              # the operator took responsibility
        self.accepted: set[str] = set()
        self.ended: dict[str, EndCaller] = {}
        self.driver_of_result: set[str] = set()      # callers whose driver gave a result
        self.gone: set[str] = set()
        self.cancels: list[str] = []                 # cancel requests not answered yet
        self.forgotten: set[str] = set()             # goals of a driver that restarted
        self.orphaned: set[str] = set()  # callers of a lane manager that died: no end due
        self.generation = 0
        self.matched = {driver: True for driver in DRIVERS}  # its status topic reaches us
        self.quiet: set[str] = set()  # on the graph, its probe answers do not reach us (yet)
        self.left_at: dict[str, float] = {}
        self.processes = {driver: 0 for driver in DRIVERS}   # its process, counted
        self.writers = {driver: self.writer(driver) for driver in DRIVERS}  # on the graph
        self.sent_callers: set[str] = set()          # callers whose goal reached a driver
        self.never: set[str] = set()                 # denied / timed out: never sent
        for driver in DRIVERS:
            self.apply(self.keeper.driver_on_graph(driver, True, self.now))
        self.ready_all()
        self.now += 1.5
        self.ready_all()

    # ------------------------------------------------------------ helpers
    def writer(self, driver: str) -> frozenset[bytes]:
        """The status writer gid of the driver's current process."""
        return frozenset({f'{driver}#{self.processes[driver]}'.encode()})

    def sample(self, driver: str, answered: bool, probe=None) -> ProbeSample:
        """A look at a driver as the node samples it (status writers on the graph)."""
        return ProbeSample(answered, self.matched[driver], probe or (lambda _s: True),
                           writers=self.writers[driver])

    def ready_all(self):
        """A watchdog look at every driver: those on the graph answer the probe in time, a
        driver that left answers nothing.
        """
        self.apply(self.keeper.look(
            {driver: self.sample(driver, driver not in self.gone | self.quiet)
             for driver in DRIVERS}, self.now))

    def may_run(self, lane) -> set[str]:
        return {gid for gid, g in self.truth.items()
                if lane in LANES_OF[g.driver] and g.state != 'ended' and gid not in self.released}

    def apply(self, actions):
        for action in actions:
            if isinstance(action, SendToDriver):
                goal = self.keeper.goals[action.driver_goal_id]
                for lane in LANES_OF[goal.driver] if goal.lane is not None else ():
                    busy = self.may_run(lane)
                    assert not busy, f'sent {action.driver_goal_id} while {busy} may run'
                assert action.driver_goal_id not in self.truth
                caller = goal.caller_goal_id
                assert caller not in self.never, f'{caller} sent after denial / timeout'
                assert not self.keeper.arbiter.is_awaiting(caller), f'{caller} sent unapproved'
                self.sent_callers.add(caller)
                self.truth[action.driver_goal_id] = TruthGoal(goal.driver)
                if goal.driver in self.gone:  # sent to a process that left: lost with it
                    self.truth[action.driver_goal_id].state = 'ended'
                    self.forgotten.add(action.driver_goal_id)
            elif isinstance(action, CancelGoalAtDriver):
                goal = self.truth.get(action.driver_goal_id)
                if goal is not None:
                    goal.cancel_asked = True
                self.cancels.append(action.driver_goal_id)
            elif isinstance(action, EndCaller):
                assert action.caller_goal_id not in self.ended, 'two ends for one caller'
                assert action.driver_result == (action.caller_goal_id in self.driver_of_result)
                if not action.driver_result:
                    assert action.result is None, 'an invented result'
                self.ended[action.caller_goal_id] = action
                if (action.reason or '').startswith(('denied by', 'not approved within')):
                    assert action.caller_goal_id not in self.sent_callers
                    assert action.outcome == 'aborted' and not action.driver_result
                    self.never.add(action.caller_goal_id)
            else:
                assert isinstance(action, (Started, Notice, ProbeAfresh))

    def caller_of(self, driver_goal_id):
        goal = self.keeper.goals.get(driver_goal_id)
        return goal.caller_goal_id if goal else None

    # ------------------------------------------------------------ callers
    @rule(skill=st.sampled_from(sorted(SKILLS)))
    def submit(self, skill):
        cid = f'c{next(self.callers)}'
        decision, actions = self.keeper.submit(cid, skill, self.now)
        if decision.accepted:
            self.accepted.add(cid)
            # approval: operator -> it waits (it cannot start with its submission)
            assert decision.awaiting_approval == (SKILLS[skill].approval_timeout_s is not None)
        else:
            assert decision.reason
        self.apply(actions)

    @rule(data=st.data())
    def caller_cancels(self, data):
        live = sorted(self.accepted - set(self.ended) - self.orphaned)
        if live:
            self.apply(self.keeper.cancel(data.draw(st.sampled_from(live)), self.now))

    @rule(data=st.data(), approve=st.booleans())
    def operator_decides(self, data, approve):
        waiting = sorted({g for lane in LANES for g in self.keeper.arbiter.awaiting(lane)})
        if not waiting:
            return
        cid = data.draw(st.sampled_from(waiting))
        decided, text, actions = self.keeper.decide(cid, approve, 'op', self.now)
        assert decided and text
        if not approve:
            self.never.add(cid)
        self.apply(actions)
        assert not self.keeper.arbiter.is_awaiting(cid)

    @rule(lane=st.sampled_from(sorted(LANES)), approve=st.booleans())
    def operator_presses_approve_button(self, lane, approve):
        waiting = self.keeper.arbiter.awaiting(lane)
        decided, text, actions = self.keeper.decide_oldest(lane, approve, 'button', self.now)
        assert decided == bool(waiting) and text
        if waiting and not approve:
            self.never.add(waiting[0])
        self.apply(actions)

    # ------------------------------------------------------------ drivers
    def _pick(self, data, states):
        pool = sorted(g for g, t in self.truth.items() if t.state in states
                      and t.driver not in self.gone)
        return data.draw(st.sampled_from(pool)) if pool else None

    @rule(data=st.data(), accept=st.booleans())
    def driver_answers(self, data, accept):
        gid = self._pick(data, ('requested',))
        if gid is None:
            return
        self.truth[gid].state = 'running' if accept else 'ended'
        self.apply(self.keeper.driver_answer(gid, accept, self.now))

    @rule(data=st.data(), outcome=st.sampled_from(sorted(CODES)), with_result=st.booleans(),
          status_first=st.booleans())
    def driver_ends(self, data, outcome, with_result, status_first):
        """The drivers (rclpy, rclcpp) publish the terminal status just before the Result;
        either may be lost or arrive first.
        """
        gid = self._pick(data, ('running',))
        if gid is None:
            return
        truth = self.truth[gid]
        truth.state = 'ended'
        if status_first:
            self.report(truth.driver, outcome)
        if with_result and not truth.external:
            caller = self.caller_of(gid)
            goal = self.keeper.goals.get(gid)
            if caller is not None and goal is not None and not goal.caller_ended:
                self.driver_of_result.add(caller)
            self.apply(self.keeper.driver_result(gid, outcome, object(), self.now))
        if not status_first:
            self.report(truth.driver, outcome)

    @rule(data=st.data())
    def driver_honours_a_cancel(self, data):
        pool = sorted(g for g, t in self.truth.items() if t.state == 'running' and t.cancel_asked
                      and t.driver not in self.gone)
        if pool:
            gid = data.draw(st.sampled_from(pool))
            self.truth[gid].state = 'ended'
            self.report(self.truth[gid].driver, 'canceled')

    @rule(driver=st.sampled_from(DRIVERS))
    def driver_reports(self, driver):
        if driver not in self.gone:
            self.report(driver, 'succeeded')

    def report(self, driver, outcome):
        if not self.matched[driver]:
            return  # not delivered: the list it publishes last arrives once matched
        statuses = {}
        for gid, t in self.truth.items():
            if t.driver != driver or t.state == 'requested' or gid in self.forgotten:
                continue
            statuses[gid] = 2 if t.state == 'running' else CODES[outcome]
        self.apply(self.keeper.driver_status(driver, statuses, self.now))

    @rule(data=st.data())
    def driver_answers_a_cancel(self, data):
        """Truthfully: 0 running, 2 unknown (not received yet, or forgotten), 3 ended or
        cancelling (rcl answers ERROR_GOAL_TERMINATED for a goal already CANCELING).
        """
        if not self.cancels:
            return
        gid = self.cancels.pop(data.draw(st.integers(0, len(self.cancels) - 1)))
        truth = self.truth.get(gid)
        if truth is None or truth.driver in self.gone:
            return
        if gid in self.forgotten or truth.state == 'requested':
            code = 2
        else:
            code = 3 if truth.state == 'ended' or data.draw(st.booleans()) else 0
        self.apply(self.keeper.driver_cancel_answer(gid, code, self.now))

    @rule(driver=st.sampled_from(DRIVERS), matched_at_once=st.booleans())
    def driver_restarts_under_the_same_name(self, driver, matched_at_once):
        """Killed and back at once: never off the graph, its old goals forgotten; the new
        process's status writer is on the graph beside the old one's (until its lease
        ends), matched with our reader at once or later.
        """
        if driver in self.gone:
            return
        for gid, t in self.truth.items():
            if t.driver == driver and t.state != 'ended':
                t.state = 'ended'
                self.forgotten.add(gid)
            elif t.driver == driver:
                self.forgotten.add(gid)
        self.processes[driver] += 1
        self.writers[driver] = self.writers[driver] | self.writer(driver)
        self.matched[driver] = matched_at_once
        # One watchdog look sees the new writer before anything else happens: a goal sent
        # around the lane manager, or by it, within that look is a race nothing can win
        # (as a bypass goal sent just before one of ours; README "What frees a lane").
        self.apply(self.keeper.look({driver: self.sample(driver, driver not in self.quiet)},
                                    self.now))

    @rule(driver=st.sampled_from(DRIVERS))
    def old_process_lease_ends(self, driver):
        """The writers of the driver's earlier processes leave the graph."""
        if driver not in self.gone:
            self.writers[driver] = self.writer(driver)

    @rule(driver=st.sampled_from(DRIVERS))
    def external_goal(self, driver):
        if driver in self.gone:
            return
        gid = f'x{len(self.truth)}'
        self.truth[gid] = TruthGoal(driver, external=True)
        self.report(driver, 'succeeded')

    @rule(driver=st.sampled_from(DRIVERS))
    def driver_stalls(self, driver):
        """A look finds its probe unanswered for as long as it may be (driver_lost_s)."""
        if driver not in self.gone:
            self.apply(self.keeper.look(
                {driver: self.sample(driver, False, lambda _s: False)}, self.now))

    @rule(driver=st.sampled_from(DRIVERS))
    def driver_leaves(self, driver):
        """Its process ends and leaves the graph: the lane manager sees it off the graph at
        the next graph sample, and takes it as gone driver_lost_s later (time_passes).
        """
        for gid, t in self.truth.items():
            if t.driver == driver:
                t.state = 'ended'   # its process is gone: nothing of it runs
                self.forgotten.add(gid)  # one back under its name knows none of its goals
        self.gone.add(driver)
        self.left_at[driver] = self.now
        self.matched[driver] = False  # a driver back on the graph is matched afresh
        self.writers[driver] = frozenset()
        self.apply(self.keeper.driver_on_graph(driver, False, self.now))

    @rule(driver=st.sampled_from(DRIVERS))
    def driver_comes_back(self, driver):
        """A new process under its name, taken as gone already or not yet (back within
        driver_lost_s: its new status writer says it is not the process that left).
        """
        if driver in self.gone:
            self.gone.discard(driver)
            self.processes[driver] += 1
            self.writers[driver] = self.writer(driver)
            self.apply(answering(self.keeper, [driver], self.now, self.matched[driver],
                                 self.writers))

    @rule(driver=st.sampled_from(DRIVERS), answers_again=st.booleans())
    def driver_off_the_graph_briefly(self, driver, answers_again):
        """One graph sample misses it (its process runs on): it must answer again before its
        next goal; its answers may take a while to reach us.
        """
        if driver in self.gone:
            return
        self.apply(self.keeper.driver_on_graph(driver, False, self.now))
        self.apply(self.keeper.driver_on_graph(driver, True, self.now))
        if not answers_again:
            self.quiet.add(driver)

    @rule(driver=st.sampled_from(DRIVERS))
    def probe_answers_arrive(self, driver):
        self.quiet.discard(driver)

    @rule(driver=st.sampled_from(DRIVERS))
    def status_topic_matches(self, driver):
        """Our status reader is matched with the driver's writer: its latest list (if it
        ever published one) arrives at once.
        """
        if driver in self.gone or self.matched[driver]:
            return
        self.matched[driver] = True
        if any(t.driver == driver and t.state != 'requested' for t in self.truth.values()):
            self.report(driver, 'succeeded')

    @rule(data=st.data())
    def lane_manager_restarts(self, data):
        """Killed and started again: a fresh keeper, the drivers' goals run on. Callers of
        the old one learn it is gone (no end from the new one); every status topic is
        matched afresh, as late as discovery makes it. A goal request the old one had in
        flight lands (or is lost) before the new one is up: a start takes seconds.
        """
        for t in self.truth.values():
            if t.state == 'requested':
                t.state = 'running' if data.draw(st.booleans()) else 'ended'
        self.generation += 1
        ids = itertools.count()
        prefix = f'g{self.generation}d'
        self.keeper = LaneKeeper(LANES, SKILLS, SETTINGS, new_id=lambda: f'{prefix}{next(ids)}',
                                 started_at=self.now)
        self.orphaned |= self.accepted - set(self.ended)
        self.cancels.clear()
        for driver in DRIVERS:
            self.matched[driver] = False
            if data.draw(st.booleans()):  # its answers reach the new one later
                self.quiet.add(driver)
            if driver not in self.gone:
                self.apply(self.keeper.driver_on_graph(driver, True, self.now))
        self.ready_all()

    @rule(dt=st.sampled_from([0.1, 0.6, 1.1, 2.5, 30.0]))
    def time_passes(self, dt):
        self.now += dt
        self.ready_all()
        self.apply(self.keeper.tick(self.now))

    @rule(lane=st.sampled_from(sorted(LANES)))
    def operator_releases(self, lane):
        def on_lane():
            return {g for g, goal in self.keeper.goals.items()
                    if goal.lane is not None and lane in LANES_OF[goal.driver]}
        before = on_lane()
        ok, message, actions = self.keeper.release(lane, self.now)
        assert message
        after = on_lane()
        self.released |= before - after
        self.apply(actions)

    @rule(lane=st.sampled_from(sorted(LANES)))
    def operator_stops(self, lane):
        ok, message, actions = self.keeper.stop(lane, self.now)
        assert ok and message
        self.apply(actions)

    @invariant()
    def consistent(self):
        if hasattr(self, 'keeper'):
            self.keeper.check_invariants()

    def drain(self):
        """Drivers answer and end everything, time passes."""
        for _ in range(60):
            self.quiet.clear()
            for driver in DRIVERS:
                if driver in self.gone:
                    self.gone.discard(driver)
                self.matched[driver] = True
                for gid, t in list(self.truth.items()):
                    if t.driver == driver and t.state == 'requested':
                        t.state = 'running'
                        self.apply(self.keeper.driver_answer(gid, True, self.now))
                for gid, t in list(self.truth.items()):
                    if t.driver == driver and t.state == 'running':
                        t.state = 'ended'
                        goal = self.keeper.goals.get(gid)
                        if goal is not None and goal.caller_goal_id and not goal.caller_ended:
                            self.driver_of_result.add(goal.caller_goal_id)
                        self.apply(self.keeper.driver_result(gid, 'succeeded', object(),
                                                             self.now))
                self.writers[driver] = self.writer(driver)
                self.apply(answering(self.keeper, [driver], self.now, True, self.writers))
                self.report(driver, 'succeeded')
            for gid in list(self.cancels):
                truth = self.truth.get(gid)
                code = 2 if gid in self.forgotten or truth is None else (
                    3 if truth.state == 'ended' else 0)
                self.apply(self.keeper.driver_cancel_answer(gid, code, self.now))
            self.cancels.clear()
            self.now += 1.0
            self.apply(self.keeper.tick(self.now))
            if self.accepted - self.orphaned <= set(self.ended) and not self.keeper.goals:
                break

    def teardown(self):
        """Drain: drivers answer and end everything; every accepted caller gets an end."""
        if not hasattr(self, 'keeper'):
            return
        self.drain()
        # A request lost with a driver restart is never reported by anyone: by design only
        # an operator frees that lane (unknown counts as held). Nothing else may remain.
        for lane_name, lane in self.keeper.arbiter.lanes.items():
            for key in list(lane.occupants):
                assert key in self.forgotten and not self.keeper.goals[key].seen_active, key
            if lane.occupants:
                ok, _, actions = self.keeper.release(lane_name, self.now)
                assert ok
                self.apply(actions)
                self.drain()
        assert self.accepted - self.orphaned <= set(self.ended), (
            self.accepted - self.orphaned - set(self.ended))
        for lane in self.keeper.arbiter.lanes.values():
            assert lane.holder is None and not lane.queue and not lane.occupants, lane
            assert not lane.awaiting, lane


KeeperMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_keeper_state_machine = KeeperMachine.TestCase


def test_machine_found_a_restarted_driver_running_an_unreported_goal():
    """The machine's find (3000 examples, before new status writers counted): a driver
    restarted at once, its new status writer not matched yet (seen by the next watchdog
    look), a goal sent around the lane manager at the new process, then a goal of lane q:
    it was sent beside that goal.
    """
    machine = KeeperMachine()
    machine.setup()
    machine.driver_restarts_under_the_same_name(driver='/a', matched_at_once=False)
    machine.external_goal(driver='/a')
    machine.submit(skill='a')
    machine.time_passes(dt=0.6)
    machine.teardown()


def test_lifecycle_never_ends_a_caller_twice_and_holds_after_give_up():
    goal = DriverGoal('/d', 'g', 'lane', 0.0, 'c')
    assert isinstance(goal.send(0.0)[0], SendToDriver)
    (end,) = goal.tick(5.0, response_s=2.0)
    assert end.outcome == 'aborted' and end.result is None and not end.driver_result
    assert goal.phase is Phase.UNANSWERED and goal.lingering
    (cancel,) = goal.answered(True, 6.0)   # accepted late: cancelled at once
    assert isinstance(cancel, CancelGoalAtDriver)
    assert goal.status(2, 6.1) == [] and goal.lingering
    assert goal.status(5, 7.0) == [] and goal.ended


def _queued_pair(keeper: LaneKeeper) -> tuple[str, str]:
    """Two goals of lane q: c0 forwarded and running at /a, c1 queued behind it."""
    answering(keeper, DRIVERS, 0.0)
    answering(keeper, DRIVERS, 1.5)
    keeper.submit('c0', 'a', 2.0)
    first = keeper.by_caller['c0']
    keeper.driver_answer(first, True, 2.1)
    keeper.driver_status('/a', {first: 2}, 2.1)
    decision, _ = keeper.submit('c1', 'b', 2.2)
    assert decision.accepted and keeper.arbiter.queued('q') == ['c1']
    return first, 'c1'


def test_terminal_status_hands_the_lane_on_before_the_result():
    keeper = LaneKeeper(LANES, SKILLS, SETTINGS)
    first, queued = _queued_pair(keeper)
    actions = keeper.driver_status('/a', {first: 4}, 3.0)  # SUCCEEDED, the Result follows
    (send,) = [a for a in actions if isinstance(a, SendToDriver)]
    assert send.caller_goal_id == queued
    assert not [a for a in actions if isinstance(a, EndCaller)], 'the caller waits for its Result'
    (end,) = [a for a in keeper.driver_result(first, 'succeeded', 'R', 3.01)
              if isinstance(a, EndCaller)]
    assert end.caller_goal_id == 'c0' and end.result == 'R' and end.driver_result
    (record,) = [e for e in keeper.arbiter.lanes['q'].endings if e['goal_id'] == 'c0']
    assert record['outcome'] == 'succeeded' and record['driver_result']
    keeper.check_invariants()


def test_terminal_status_without_a_result_ends_the_caller_with_none():
    keeper = LaneKeeper(LANES, SKILLS, SETTINGS)
    first, _ = _queued_pair(keeper)
    keeper.driver_status('/a', {first: 6}, 3.0)  # ABORTED, and its Result is lost
    assert not [a for a in keeper.tick(3.5) if isinstance(a, EndCaller)], 'waits for it'
    (end,) = [a for a in keeper.tick(3.0 + RESULT_WAIT_S)
              if isinstance(a, EndCaller) and a.caller_goal_id == 'c0']
    assert end.outcome == 'aborted' and end.result is None and not end.driver_result
    assert 'sent no result' in end.reason
    (record,) = [e for e in keeper.arbiter.lanes['q'].endings if e['goal_id'] == 'c0']
    assert not record['driver_result'] and 'sent no result' in record['reason']


def test_goals_to_ask_is_a_query_and_mark_asked_resets_the_wait():
    keeper = LaneKeeper(LANES, SKILLS, SETTINGS)
    first, _ = _queued_pair(keeper)          # running at /a since 2.1, never asked about
    goal = keeper.goals[first]
    assert keeper.goals_to_ask(10.0, 5.0) == [goal]
    assert keeper.goals_to_ask(10.0, 5.0) == [goal], 'asking changed what is due'
    keeper.mark_asked([goal], 10.0)
    assert keeper.goals_to_ask(14.0, 5.0) == []
    assert keeper.goals_to_ask(15.0, 5.0) == [goal]

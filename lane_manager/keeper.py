"""The lane keeper: the arbiter's decisions carried out on the drivers' own word.

Plain Python (no ROS import). The node feeds in every ROS event (a caller's goal or cancel,
a driver's answer, result, status list; samples of each driver's presence on the graph, its
liveness probe and status reader; time) and carries out the actions that come back
(`SendToDriver`, `CancelGoalAtDriver`, `EndCaller`, `Notice`, `ProbeAfresh`).

It joins three things:
- the `Arbiter` (who holds each lane, queues, refusals, preemption, max_hold_s);
- one `DriverGoal` lifecycle per goal at a driver (lane_manager/goal_lifecycle.py);
- one `DriverPresence` per driver (lane_manager/driver_presence.py): whether it is there,
  answers, and what it itself reports running; it alone judges the samples.

The rule it keeps: a lane is free only when its holder has ended AND no driver of the lane
reports an active goal (unless the driver is gone), and every driver's status is known. A
goal whose end the driver has not confirmed, a goal found running at start (adopted) and a
goal sent around the lane manager (external) occupy their lane in the arbiter until the
driver reports them ended. Nothing here frees a lane by a timeout; only an operator can
(`release`).
"""
from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional

from lane_manager.arbiter import (Arbiter, CancelAtDriver, Decision, EndWithoutDriver,
                                  Occupant, StartGoal)
from skill_lanes.config import LaneConfig, LaneManagerConfig
from lane_manager.effects import Notice, Started  # noqa: F401 - the keeper's effects
from lane_manager.driver_presence import (STATUS_UNKNOWN, DriverPresence, ProbeAfresh,
                                          ProbeSample)
from lane_manager.goal_lifecycle import (Action, DriverEnded, DriverGoal, EndCaller,
                                         Phase)
from skill_lanes.goal_outcome import EndedHow, outcome_of_status

FINISHED_LIMIT = 4096


@dataclass(frozen=True)
class SkillRoute:
    lane: Optional[str]
    driver: str
    priority: int = 0
    lanes: tuple[str, ...] = ()  # a multi-lane skill: all its lanes (`lane` is the first)
    approval_timeout_s: Optional[float] = None  # approval: operator (None: no approval)

    @property
    def all_lanes(self) -> tuple[str, ...]:
        return self.lanes or ((self.lane,) if self.lane is not None else ())




class LaneKeeper:
    """All lanes and drivers of one lane manager. Not thread-safe: the node serializes."""

    def __init__(self, lanes: dict[str, LaneConfig], skills: dict[str, SkillRoute],
                 settings: LaneManagerConfig,
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
                 started_at: float = 0.0) -> None:
        """started_at: when the lane manager started (a driver never seen is gone only once
        discovery has had its time: driver_presence.STARTUP_DISCOVERY_S).
        """
        self.arbiter = Arbiter(lanes)
        self.lane_configs = lanes
        self.skills = skills
        self.settings = settings
        self._new_id = new_id
        self.presence: dict[str, DriverPresence] = {}
        self.driver_lane: dict[str, Optional[str]] = {}
        # Every lane a driver's goals may hold (a multi-lane skill's driver: all of them).
        self.driver_lanes: dict[str, tuple[str, ...]] = {}
        for route in skills.values():
            self.presence.setdefault(route.driver, DriverPresence(
                route.driver, settings.driver_lost_s, started_at))
            self.driver_lane.setdefault(route.driver, route.lane)
            known = self.driver_lanes.get(route.driver, ())
            self.driver_lanes[route.driver] = tuple(dict.fromkeys(known + route.all_lanes))
        self.goals: dict[str, DriverGoal] = {}        # driver goal id -> lifecycle
        self.by_caller: dict[str, str] = {}           # caller goal id -> driver goal id
        self.caller_skill: dict[str, str] = {}
        self.finished: OrderedDict[str, EndedHow] = OrderedDict()  # driver goal id -> how
        self._actions: list = []

    # ------------------------------------------------------------ callers
    def submit(self, caller_goal_id: str, skill: str, now: float) -> tuple[Decision, list]:
        route = self.skills[skill]
        if route.lane is None:
            self.caller_skill[caller_goal_id] = skill
            self._start_goal(caller_goal_id, now)
            return Decision(True), self._take()
        decision = self.arbiter.submit(caller_goal_id, skill, route.lane, route.priority, now,
                                       lanes=route.lanes or None,
                                       approval_timeout_s=route.approval_timeout_s)
        if decision.awaiting_approval:
            self._actions.append(Notice('info', f'{skill} goal {caller_goal_id} awaits an '
                                        f"operator's approval: {decision.reason}"))
        if decision.accepted:
            self.caller_skill[caller_goal_id] = skill
            self._effects(decision.effects, now)
        return decision, self._take()

    def refuse(self, caller_goal_id: str, skill: str, reason: str, now: float,
               details: Optional[dict] = None) -> Decision:
        """Refuse a goal before arbitration (its skill's limits): in its lanes' refusals,
        with `details` (field, value, limit) in each record.
        """
        route = self.skills[skill]
        if not route.all_lanes:
            return Decision(False, reason=reason)
        return self.arbiter.refuse(caller_goal_id, skill, route.all_lanes, route.priority,
                                   now, reason, details)

    def cancel(self, caller_goal_id: str, now: float,
               reason: str = 'canceled by its caller') -> list:
        skill = self.caller_skill.get(caller_goal_id)
        if skill is None:
            return []
        if self.skills[skill].lane is None:
            goal = self._goal_of_caller(caller_goal_id)
            if goal is not None:
                self._run(goal, goal.cancel(reason, now), now)
        else:
            self._effects(self.arbiter.cancel(caller_goal_id, now, reason), now)
        return self._take()

    # ------------------------------------------------------------ drivers
    def driver_on_graph(self, driver: str, on_graph: bool, now: float) -> list:
        """A graph sample: the driver's action server is on the graph (or not)."""
        presence = self.presence.get(driver)
        return [] if presence is None else presence.graph_sample(on_graph, now)

    def look(self, samples: Mapping[str, ProbeSample], now: float) -> list:
        """One watchdog look at the drivers (their probe and status reader, as sampled):
        their DriverPresence judges; a driver lost mid-goal or gone is acted on here.
        """
        ours = self.drivers_with_goals()  # before any look: a goal sent now is not out yet
        for driver, sample in samples.items():
            presence = self.presence.get(driver)
            if presence is None:
                continue
            look = presence.look(now, sample, driver in ours)
            if look.gone:
                if look.news:  # nothing of it runs
                    for goal in [g for g in self.goals.values() if g.driver == driver]:
                        if goal.phase is not Phase.WAITING:
                            self._run(goal, goal.driver_gone(now), now, how=EndedHow.GONE)
                self._sync_driver(driver, now)
                continue
            if look.new_process:  # it must answer afresh; its lanes are held meanwhile
                self._actions.append(ProbeAfresh(driver))
            if look.known or look.new_process:
                self._sync_driver(driver, now)
            if look.lost:
                for goal in [g for g in self.goals.values() if g.driver == driver]:
                    self._run(goal, goal.driver_lost(self.settings.driver_lost_s, now), now)
                self._sync_driver(driver, now)
        return self._take()

    def driver_answer(self, driver_goal_id: str, accepted: bool, now: float) -> list:
        goal = self.goals.get(driver_goal_id)
        if goal is not None:
            if accepted and goal.caller_goal_id is not None and goal.awaiting_answer:
                self.arbiter.driver_accepted(goal.caller_goal_id)
            self._run(goal, goal.answered(accepted, now), now)
        return self._take()

    def driver_result(self, driver_goal_id: str, outcome: str, result: object,
                      now: float) -> list:
        goal = self.goals.get(driver_goal_id)
        if goal is not None:
            self._run(goal, goal.result(outcome, result, now), now, how=EndedHow.RESULT)
        return self._take()

    def driver_cancel_answer(self, driver_goal_id: str, return_code: int, now: float) -> list:
        """The driver's answer to a cancel we sent (its word on whether the goal runs)."""
        goal = self.goals.get(driver_goal_id)
        if goal is not None:
            self._run(goal, goal.cancel_answer(return_code, now), now, how=EndedHow.GONE)
        return self._take()

    def driver_result_answer(self, driver_goal_id: str, status: int, result: object,
                             now: float) -> list:
        """The driver's answer to a result request we (re)sent for a goal it once ran:
        0 = it knows no such goal (it restarted under the same name), 4-6 = its end.
        """
        goal = self.goals.get(driver_goal_id)
        if goal is None:
            return []
        if status == 0:
            return self.driver_cancel_answer(driver_goal_id, 2, now)
        outcome = outcome_of_status(status)
        if outcome is not None:
            self._run(goal, goal.result(outcome, result, now), now, how=EndedHow.RESULT)
        return self._take()

    def goals_to_ask(self, now: float, every_s: float) -> list[DriverGoal]:
        """Goals a driver once reported running, not asked about for `every_s`: ask it again
        (its result service answers at once for a goal it does not know). A query: once
        asked, say so with `mark_asked`.
        """
        return [goal for goal in self.goals.values()
                if goal.seen_active and not goal.ended and now - goal.asked_at >= every_s]

    def mark_asked(self, goals: Iterable[DriverGoal], now: float) -> None:
        """Their drivers were asked for these goals' results now (see goals_to_ask)."""
        for goal in goals:
            goal.asked_at = now

    def driver_status(self, driver: str, statuses: dict[str, int], now: float) -> list:
        """The driver's own status list (every goal it knows, by goal id)."""
        presence = self.presence.get(driver)
        if presence is None:
            return []
        first = presence.status_message(statuses)
        for gid in presence.active:
            if gid not in self.goals:
                self._untracked_active(driver, gid, first, now)
        for goal in [g for g in self.goals.values() if g.driver == driver]:
            self._run(goal, goal.status(statuses.get(goal.driver_goal_id), now), now,
                      how=EndedHow.RESULT)
        self._sync_driver(driver, now)
        return self._take()

    def tick(self, now: float) -> list:
        self._effects(self.arbiter.tick(now), now)
        for goal in list(self.goals.values()):
            if goal.phase is Phase.WAITING:
                self._try_send(goal, now)
            else:
                self._run(goal, goal.tick(now, self.settings.driver_response_s), now)
        for lane in self.arbiter.lanes:
            self._sync_lane(lane, now)
        return self._take()

    # ------------------------------------------------------------ operator
    def decide(self, caller_goal_id: str, approve: bool, by: str,
               now: float) -> tuple[bool, str, list]:
        """An operator approves or denies a goal awaiting approval (Arbiter.decide)."""
        decided, text, effects = self.arbiter.decide(caller_goal_id, approve, by, now)
        if decided:
            self._actions.append(Notice('info' if approve else 'warn', text))
            self._effects(effects, now)
        return decided, text, self._take()

    def decide_oldest(self, lane: str, approve: bool, by: str,
                      now: float) -> tuple[bool, str, list]:
        """Approve or deny the lane's oldest goal awaiting approval (a physical button)."""
        waiting = self.arbiter.awaiting(lane)
        if not waiting:
            return False, f'no goal awaits approval in lane {lane!r}', []
        return self.decide(waiting[0], approve, by, now)

    def release(self, lane: str, now: float) -> tuple[bool, str, list]:
        """Free a lane held only because a driver never confirmed an end. Never automatic."""
        freed = []
        for goal in [g for g in self.goals.values()
                     if lane in self._lanes_of(g) and not g.ended]:
            if goal.lingering or goal.phase is Phase.CANCELLING:
                freed.append(goal.driver_goal_id)
                self._run(goal, goal.operator_release(now), now, how=EndedHow.RELEASED)
                self.arbiter.record_operator_release(lane, goal.driver_goal_id, now)
        self._sync_lane(lane, now)
        actions = self._take()
        if not freed:
            return False, (f'lane {lane!r} has no goal with an unconfirmed end to release '
                           '(use stop to cancel its holder)'), actions
        return True, (f'released lane {lane!r} from {len(freed)} goal(s) the drivers never '
                      f'confirmed ended: {", ".join(freed)}'), actions

    def stop(self, lane: str, now: float, reason: str = 'stopped by lane_stop') -> tuple[
            bool, str, list]:
        """Cancel the lane's holder (and what its drivers run) and empty its queue."""
        queued = self.arbiter.queued(lane)
        for caller_goal_id in queued:
            self._effects(self.arbiter.cancel(caller_goal_id, now, reason), now)
        holder = self.arbiter.lanes[lane].holder
        if holder is not None:
            self._effects(self.arbiter.cancel(holder.goal.goal_id, now, reason), now)
        others = [g for g in self.goals.values() if lane in self._lanes_of(g) and g.lingering]
        for goal in others:
            self._run(goal, goal.cancel(reason, now), now)
        self._sync_lane(lane, now)
        what = (f'holder {holder.goal.goal_id}' if holder else 'no holder')
        return True, (f'lane {lane!r}: cancelling {what}, {len(others)} other running goal(s); '
                      f'{len(queued)} queued goal(s) ended'), self._take()

    def block(self, key: str, active: bool, lanes: Iterable[str], reason: str,
              now: float, cancel_running: bool = True) -> tuple[str, list]:
        """Emergency stop / operator: cancel everything of the lanes (or only their queues:
        not cancel_running) and refuse new goals with `reason` (active), or let goals in
        again (not active).
        """
        actions: list = []
        stopped = []
        for lane in lanes:
            if active:
                self.arbiter.block(lane, key, reason)
                if cancel_running:
                    _, message, taken = self.stop(lane, now, reason=reason)
                else:
                    queued = self.arbiter.queued(lane)
                    for caller_goal_id in queued:
                        self._effects(self.arbiter.cancel(caller_goal_id, now, reason), now)
                    taken = self._take()
                    message = (f'lane {lane!r}: its running goal may finish; {len(queued)} '
                               'queued goal(s) ended')
                actions += taken
                stopped.append(message)
            else:
                self._effects(self.arbiter.unblock(lane, key, now), now)
                actions += self._take()
        return ('; '.join(stopped) if active else 'goals accepted again'), actions

    def reword_block(self, key: str, lane: str, reason: str) -> bool:
        """Change the refusal text of a block already in place, cancelling nothing again
        (the emergency stop stays on while the sources holding it change). False: the lane
        is not blocked by `key` (use `block`).
        """
        blocked = self.arbiter.lanes[lane].blocked
        if key not in blocked:
            return False
        blocked[key] = reason
        return True

    # ------------------------------------------------------------ queries
    def drivers_with_goals(self) -> set[str]:
        """Drivers that may run a goal of ours: their liveness is worth probing."""
        return {g.driver for g in self.goals.values() if g.may_run}

    def tracked_goal_ids(self, driver: str) -> list[str]:
        """The driver goal ids this keeper follows at `driver` (their status is decoded)."""
        return [g.driver_goal_id for g in self.goals.values() if g.driver == driver]

    def forwarded_goals(self) -> list[tuple[str, str]]:
        """(driver, driver goal id) of every goal of a caller's that may run at its driver:
        what a shutting-down lane manager must cancel.
        """
        return [(g.driver, g.driver_goal_id) for g in self.goals.values()
                if g.may_run and g.caller_goal_id is not None]

    def driver_available(self, driver: str) -> bool:
        """On the graph with its goal status known: it can take a goal (lane state)."""
        return self.presence[driver].driver_available

    def snapshot(self, now: float, wall_offset: float = 0.0) -> dict:
        lanes = self.arbiter.snapshot(now, wall_offset)
        for lane in lanes.values():
            lane['unhonoured'] = []
        for goal in self.goals.values():
            for name in self._lanes_of(goal) if not goal.caller_ended and goal.why else ():
                lane = lanes[name]
                lane['unhonoured'].append(goal.why)
                lane['held_because'] = '; '.join(
                    t for t in (lane['held_because'], goal.why) if t)
        for driver, driver_lanes in self.driver_lanes.items():
            for name in driver_lanes:
                lanes[name].setdefault('drivers', {})[driver] = self.presence[driver].snapshot()
        return lanes

    def check_invariants(self) -> None:
        self.arbiter.check_invariants()
        for lane_name in self.arbiter.lanes:
            for caller_goal_id in self.arbiter.awaiting(lane_name):
                assert caller_goal_id not in self.by_caller, ('awaiting approval yet at a '
                                                              'driver', caller_goal_id)
        for lane_name, lane in self.arbiter.lanes.items():
            running = [g for g in self.goals.values()
                       if lane_name in self._lanes_of(g) and g.may_run]
            keys = set(lane.occupants)
            for goal in running:
                if goal.lingering:
                    assert goal.driver_goal_id in keys, ('lingering goal not occupying',
                                                         goal.driver_goal_id)
            if lane.holder is None and not lane.occupants:
                assert not running, f'lane {lane_name} free while a goal may run'

    # ------------------------------------------------------------ internals
    def _take(self) -> list:
        actions, self._actions = self._actions, []
        return actions

    def _lanes_of(self, goal: DriverGoal) -> tuple[str, ...]:
        """The lanes a goal at a driver may hold: every lane of its driver's skills."""
        return self.driver_lanes.get(goal.driver, ()) if goal.lane is not None else ()

    def _goal_of_caller(self, caller_goal_id: str) -> Optional[DriverGoal]:
        driver_goal_id = self.by_caller.get(caller_goal_id)
        return None if driver_goal_id is None else self.goals.get(driver_goal_id)

    def _effects(self, effects: Iterable, now: float) -> None:
        """Carry out arbiter effects."""
        for effect in effects:
            if isinstance(effect, StartGoal):
                self._start_goal(effect.goal_id, now)
            elif isinstance(effect, CancelAtDriver):
                goal = self._goal_of_caller(effect.goal_id)
                if goal is not None:
                    self._run(goal, goal.cancel(effect.reason, now), now)
            elif isinstance(effect, EndWithoutDriver):
                self.caller_skill.pop(effect.goal_id, None)
                self._actions.append(EndCaller(effect.goal_id, effect.outcome, effect.reason))

    def _start_goal(self, caller_goal_id: str, now: float) -> None:
        route = self.skills[self.caller_skill[caller_goal_id]]
        driver_goal_id = self._new_id()
        lane_cfg = self.lane_configs.get(route.lane) if route.lane else None
        goal = DriverGoal(route.driver, driver_goal_id, route.lane, now, caller_goal_id,
                          cancel_grace_s=lane_cfg.cancel_grace_s if lane_cfg else 5.0)
        self.goals[driver_goal_id] = goal
        self.by_caller[caller_goal_id] = driver_goal_id
        if route.lane is not None:
            self.arbiter.set_driver(caller_goal_id, route.driver, driver_goal_id)
        self._actions.append(Started(caller_goal_id))
        self._try_send(goal, now)

    def _try_send(self, goal: DriverGoal, now: float) -> None:
        presence = self.presence[goal.driver]
        occupied = any(self.arbiter.lanes[n].occupants for n in self._lanes_of(goal))
        if presence.may_send and not occupied:
            self._run(goal, goal.send(now), now)
        elif now - goal.since >= self.settings.driver_wait_s and not (
                occupied and presence.answering):
            self._run(goal, goal.give_up_waiting(
                f'driver {goal.driver} unavailable: no action server after '
                f'{self.settings.driver_wait_s:g} s', now), now, how=EndedHow.NEVER_SENT)

    def _untracked_active(self, driver: str, gid: str, first: bool, now: float) -> None:
        """A driver runs a goal this lane manager does not track."""
        lane = self.driver_lane.get(driver)
        how = self.finished.get(gid)
        if how in (EndedHow.RESULT, EndedHow.RELEASED) or lane is None:
            return  # it said (or an operator said) it ended: a stale report
        if how is EndedHow.GONE:
            goal = DriverGoal(driver, gid, lane, now, None, Phase.UNCONFIRMED)
            goal.why = (f'driver {driver} came back still running goal {gid} it had when it '
                        'left; cancelling it, lane held until it ends')
            self._add(goal)
            self._run(goal, goal.cancel('its caller was told it was lost', now), now)
            self._actions.append(Notice('error', goal.why))
            return
        phase = Phase.ADOPTED if first else Phase.EXTERNAL
        goal = DriverGoal(driver, gid, lane, now, None, phase,
                          cancel_grace_s=self.lane_configs[lane].cancel_grace_s)
        self._add(goal)
        if phase is Phase.ADOPTED:
            goal.why = f'adopted goal {gid} found running at driver {driver} at start'
            cancel = self.settings.on_start == 'cancel'
            reason = 'adopted at lane manager start (lane_manager.on_start: cancel)'
        else:
            goal.why = f'external goal {gid} at driver {driver}, sent around the lane manager'
            cancel = self.lane_configs[lane].external_goals == 'cancel'
            reason = 'external goal fenced off (external_goals: cancel)'
        self._actions.append(Notice('warn', f'lane {lane!r}: {goal.why}'
                                    + ('; cancelling it' if cancel else '; holding the lane')))
        if cancel:
            self._run(goal, goal.cancel(reason, now), now)

    def _add(self, goal: DriverGoal) -> None:
        self.goals[goal.driver_goal_id] = goal
        self.finished.pop(goal.driver_goal_id, None)

    def _run(self, goal: DriverGoal, actions: list[Action], now: float,
             how: EndedHow = EndedHow.RESULT) -> None:
        """Carry out a lifecycle's actions; keep the lane's occupants in step."""
        for action in actions:
            if isinstance(action, EndCaller):
                self._end_caller(goal, action, now)
            elif isinstance(action, DriverEnded):
                self._driver_ended(goal, action, now)
            else:
                self._actions.append(action)
        if goal.ended and self.goals.get(goal.driver_goal_id) is goal:
            del self.goals[goal.driver_goal_id]
            if goal.caller_goal_id is not None:
                self.by_caller.pop(goal.caller_goal_id, None)
            if goal.reached_driver or how is not EndedHow.RESULT:
                self.finished[goal.driver_goal_id] = how
                while len(self.finished) > FINISHED_LIMIT:
                    self.finished.popitem(last=False)
            for name in self._lanes_of(goal):
                self._sync_lane(name, now)
        elif goal.lingering:
            for name in self._lanes_of(goal):
                self._sync_lane(name, now)

    def _end_caller(self, goal: DriverGoal, action: EndCaller, now: float) -> None:
        if goal.lane is not None:
            for name in self._lanes_of(goal):  # a lingering goal occupies them first
                self._sync_lane(name, now, start=False)
            self._effects(self.arbiter.goal_ended(action.caller_goal_id, action.outcome, now,
                                                  action.reason, action.driver_result), now)
            if goal.driver_said is not None and not action.driver_result:
                self.arbiter.amend_ending(action.caller_goal_id, action.reason, False)
        self.caller_skill.pop(action.caller_goal_id, None)
        self._actions.append(action)

    def _driver_ended(self, goal: DriverGoal, action: DriverEnded, now: float) -> None:
        """The driver's status says the goal is over: free its lanes now (the next goal
        starts one message earlier than on the Result); the caller's end follows with the
        Result. The lane's ending is recorded now, as the driver reported it.
        """
        if goal.lane is not None:
            self._effects(self.arbiter.goal_ended(action.caller_goal_id, action.outcome, now,
                                                  action.reason, driver_result=True), now)

    def _sync_driver(self, driver: str, now: float) -> None:
        for lane in self.driver_lanes.get(driver, ()):
            self._sync_lane(lane, now)

    def _sync_lane(self, lane_name: str, now: float, start: bool = True) -> None:
        """Make the arbiter's occupants of a lane what the drivers and lifecycles say."""
        lane = self.arbiter.lanes[lane_name]
        wanted: dict[str, Occupant] = {}
        for driver, driver_lanes in self.driver_lanes.items():
            presence = self.presence[driver]
            if lane_name in driver_lanes and presence.stage in STATUS_UNKNOWN:
                wanted[f'status:{driver}'] = Occupant('unknown', presence.held_because(), now,
                                                      driver)
        for goal in self.goals.values():
            if lane_name in self._lanes_of(goal) and goal.lingering:
                skill = next((s for s, r in self.skills.items() if r.driver == goal.driver),
                             None)
                why = goal.why or f'goal {goal.driver_goal_id} at driver {goal.driver}'
                old = lane.occupants.get(goal.driver_goal_id)
                wanted[goal.driver_goal_id] = Occupant(
                    goal.origin if goal.caller_goal_id is None or goal.origin != 'lane_manager'
                    else 'lane_manager', why, old.since if old else now, goal.driver,
                    goal.driver_goal_id, skill)
        for key, occupant in wanted.items():
            self.arbiter.occupy(lane_name, key, occupant)
        for key in [k for k in lane.occupants if k not in wanted]:
            if start:
                self._effects(self.arbiter.vacate(lane_name, key, now), now)
            else:
                lane.occupants.pop(key, None)
        if start and lane.holder is None and not lane.occupants:
            self._effects(self.arbiter.start_if_free(now), now)

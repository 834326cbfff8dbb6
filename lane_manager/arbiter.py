"""Lane arbitration: which goal holds each lane, decided when a goal asks to be accepted.

Pure Python with no ROS import, so every interleaving can be tested fast and exhaustively
(test/test_arbiter.py runs a hypothesis state machine against it). The lane manager node is
a thin shell: it feeds events in (a goal asks, the driver accepted it, the driver ended it,
a caller cancels, time passes) and carries out the effects that come back (start a goal at
its driver, cancel a goal at its driver, end a goal that never reached the driver).

The invariant the whole product rests on: a lane has at most one holder, and only the holder
is ever forwarded to a driver. A lane becomes free only when its holder has ended AND nothing
else occupies it: `occupants` are what the drivers themselves report (a goal whose end the
driver has not confirmed, a goal found running at start, a goal sent around the lane
manager, a driver whose status is not known yet). The lane keeper (lane_manager/keeper.py)
sets and clears them from the drivers' word; the arbiter never frees a lane by a timeout.

A multi-lane goal (a skill with `lanes: [base, arm]`) holds all its lanes or none: it starts
only when every one of them is free and it heads every one of their queues; until then it
waits in each of those queues and holds nothing. Queues are ordered by one total order
(priority, then arrival), so no two waiting goals block each other (no deadlock), and a free
lane whose queue is headed by such a goal starts nothing else (no starvation: it is not
overtaken forever by single-lane goals of equal priority).

A goal of an approval skill (`approval: operator`) is accepted into its lanes' `awaiting`
lists instead: it holds, queues and reserves nothing, so it never blocks another goal and
can never start while it waits. Only `decide` (an operator) lets it in, and then as a goal
arriving at that moment; denied, timed out (`tick`), cancelled or stopped it ends without
ever having been forwarded.
"""
from __future__ import annotations

from typing import Optional, Sequence

from skill_lanes.config import LaneConfig
from lane_manager.lane_model import (RECENT_LIMIT, Awaiting, CancelAtDriver, Decision, Effect,
                                     EndWithoutDriver, GoalRequest, Holder, HolderState, Lane,
                                     LaneCounters, Occupant, StartGoal)
from lane_manager.lane_snapshot import held_because, held_text, lane_snapshot

__all__ = ['RECENT_LIMIT', 'Arbiter', 'CancelAtDriver', 'Decision', 'Effect', 'EndWithoutDriver',
           'GoalRequest', 'Holder', 'HolderState', 'Lane', 'LaneCounters', 'Occupant',
           'StartGoal']


class Arbiter:
    """All lanes of one lane manager. Not thread-safe: the node serializes calls."""

    def __init__(self, lanes: dict[str, LaneConfig]) -> None:
        self.lanes: dict[str, Lane] = {name: Lane(name, cfg) for name, cfg in lanes.items()}
        self._lane_of_goal: dict[str, str] = {}

    # ----------------------------------------------------------------- events
    def submit(self, goal_id: str, skill: str, lane_name: str, priority: int,
               now: float, lanes: Optional[Sequence[str]] = None,
               approval_timeout_s: Optional[float] = None) -> Decision:
        """A goal asks for its lane(s). Accept (start now or queue), or refuse with a reason.

        lanes: every lane of a multi-lane skill (lane_name is then ignored); all or none.
        approval_timeout_s: the skill needs an operator's approval (None: it does not); the
        goal is accepted to await it (`Decision.awaiting_approval`) unless a lane is blocked
        or already has max_awaiting_approval goals waiting.
        """
        names = tuple(dict.fromkeys(lanes)) if lanes else (lane_name,)
        goal = GoalRequest(goal_id, skill, names[0], priority, now,
                           names if len(names) > 1 else ())
        mine = [self.lanes[name] for name in names]
        for lane in mine:
            lane.counters.submitted += 1
        if goal_id in self._lane_of_goal:
            return self._refuse(mine[0], goal, now, f'goal id {goal_id} is already known')
        if approval_timeout_s is not None and not any(lane.blocked for lane in mine):
            return self._await_approval(goal, now, approval_timeout_s)
        return self._admit(goal, now)

    def _admit(self, goal: GoalRequest, now: float) -> Decision:
        """A new goal, or one an operator just approved, asks for its lanes."""
        goal_id, skill, priority = goal.goal_id, goal.skill, goal.priority
        mine = [self.lanes[name] for name in goal.all_lanes]
        for lane in mine:
            if lane.blocked:
                return self._refuse(lane, goal, now, '; '.join(lane.blocked.values()))
        if all(self._free(lane) for lane in mine):
            return Decision(True, self._start(goal, now))
        busy = [lane for lane in mine if not self._free(lane)]
        for lane in mine:
            if lane.config.policy == 'reject':
                blocking = lane if lane in busy else busy[0]
                return self._refuse(lane, goal, now, held_text(blocking))
        for lane in mine:
            if len(lane.queue) >= lane.config.max_queue:
                return self._refuse(
                    lane, goal, now,
                    f'{held_text(lane)} and its queue is full '
                    f'({lane.config.max_queue} waiting)')
        positions = [lane.enqueue(goal) for lane in mine]
        self._lane_of_goal[goal_id] = goal.lane
        effects: list[Effect] = []
        cancelled: set[str] = set()
        for lane in mine:
            lane.counters.queued += 1
            holder = lane.holder
            if (lane.config.policy == 'preempt' and holder is not None
                    and priority > holder.goal.priority
                    and holder.state is not HolderState.CANCELLING
                    and holder.goal.goal_id not in cancelled):
                reason = (f'preempted by skill {skill!r} goal {goal_id} '
                          f'(priority {priority} > {holder.goal.priority})')
                lane.counters.preempted += 1
                cancelled.add(holder.goal.goal_id)
                effects.append(self._begin_cancel(holder, reason))
        effects.extend(self._start_ready(now))
        if any(isinstance(e, StartGoal) and e.goal_id == goal_id for e in effects):
            return Decision(True, tuple(effects))
        return Decision(True, tuple(effects), queued_position=max(positions),
                        reason=f'queued behind {held_text(busy[0])}')

    def refuse(self, goal_id: str, skill: str, lanes: Sequence[str], priority: int,
               now: float, reason: str, details: Optional[dict] = None) -> Decision:
        """A goal refused before it asks for its lanes (it breaks its skill's limits):
        recorded in the refusals of every one of its lanes, as any refusal, with `details`
        added to the record; nothing else changes.
        """
        names = tuple(dict.fromkeys(lanes))
        goal = GoalRequest(goal_id, skill, names[0], priority, now,
                           names if len(names) > 1 else ())
        decision = Decision(False, reason=reason)
        for name in names:
            self.lanes[name].counters.submitted += 1
            decision = self._refuse(self.lanes[name], goal, now, reason)
            self.lanes[name].refusals[-1].update(details or {})
        return decision
    def _await_approval(self, goal: GoalRequest, now: float, timeout_s: float) -> Decision:
        mine = [self.lanes[name] for name in goal.all_lanes]
        for lane in mine:
            if len(lane.awaiting) >= lane.config.max_awaiting_approval:
                return self._refuse(
                    lane, goal, now, f'lane {lane.name!r} already has {len(lane.awaiting)} '
                    'goal(s) awaiting approval (max_awaiting_approval)')
        waiting = Awaiting(goal, timeout_s)
        for lane in mine:
            lane.awaiting.append(waiting)
        self._lane_of_goal[goal.goal_id] = goal.lane
        return Decision(True, awaiting_approval=True,
                        reason=f'awaiting approval by an operator (approval_timeout_s='
                               f'{timeout_s:g} s)')

    def decide(self, goal_id: str, approve: bool, by: str,
               now: float) -> tuple[bool, str, list[Effect]]:
        """An operator approves or denies a goal awaiting approval: (decided, text, effects).

        Approved, the goal asks for its lanes from this moment, as a goal arriving now
        would: it queues behind the goals already queued (a goal that waited for a person
        does not overtake ones that waited for the lane), a reject lane that is busy refuses
        it, a preempt lane may preempt for it. Refused then, it ends aborted with that
        reason (its caller was accepted: it cannot be refused any more). Denied, it ends
        aborted `denied by <by>`. Not decided when no such goal awaits approval.
        """
        waiting = self._take_awaiting(goal_id)
        if waiting is None:
            return False, f'no goal {goal_id} awaits approval', []
        goal = waiting.goal
        self._record_decision(goal, 'approved' if approve else 'denied', by, now)
        text = f'skill {goal.skill!r} goal {goal_id} {"approved" if approve else "denied"} by {by}'
        if not approve:
            return True, text, self._end_awaiting(goal, f'denied by {by}', now)
        decision = self._admit(GoalRequest(goal_id, goal.skill, goal.lane, goal.priority, now,
                                           goal.lanes), now)
        if not decision.accepted:
            reason = f'approved by {by}, then refused: {decision.reason}'
            return True, f'{text}, then refused: {decision.reason}', self._end_awaiting(
                goal, reason, now)
        if decision.queued_position is not None:
            text += f'; {decision.reason}'
        return True, text, list(decision.effects)

    def driver_accepted(self, goal_id: str) -> None:
        """The driver accepted the forwarded goal."""
        holder = self._holder_of(goal_id)
        if holder is not None and holder.state is HolderState.STARTING:
            holder.state = HolderState.ACTIVE

    def goal_ended(self, goal_id: str, outcome: str, now: float,
                   reason: Optional[str] = None, driver_result: bool = False) -> list[Effect]:
        """The goal is over towards its caller (result, driver refusal, given up).

        outcome: 'succeeded', 'aborted' or 'canceled'. Ends the holding of every lane of the
        goal; the next goals start only where nothing else occupies the lanes (the keeper
        occupies them first when the driver has not confirmed the end). A goal still queued
        just leaves its queues.
        driver_result: the driver gave a result (else the caller gets none: `result: null`).
        """
        holder = self._holder_of(goal_id)
        if holder is not None:
            if reason is None and holder.cancel_reason and outcome != 'succeeded':
                reason = holder.cancel_reason
            for name in holder.goal.all_lanes:
                lane = self.lanes[name]
                self._record_end(lane, holder.goal, outcome, reason, now, driver_result)
                lane.holder = None
            return self._start_ready(now)
        goal = self._remove_queued(goal_id)
        if goal is None:
            return []
        for name in goal.all_lanes:
            self._record_end(self.lanes[name], goal, outcome, reason, now, driver_result)
        return self._start_ready(now)

    def amend_ending(self, goal_id: str, reason: Optional[str], driver_result: bool) -> None:
        """Correct a recorded ending: the lanes were freed on the driver's status, and the
        Result that should have followed never came.
        """
        for lane in self.lanes.values():
            for record in lane.endings:
                if record['goal_id'] == goal_id:
                    record['reason'], record['driver_result'] = reason, driver_result

    def set_driver(self, goal_id: str, driver: str, driver_goal_id: str) -> None:
        """Which driver and driver goal id the holder was forwarded as (for lane state)."""
        holder = self._holder_of(goal_id)
        if holder is not None:
            holder.driver, holder.driver_goal_id = driver, driver_goal_id

    def occupy(self, lane_name: str, key: str, occupant: Occupant) -> None:
        """Something a driver reports (or may still run) holds the lane besides the holder."""
        lane = self.lanes[lane_name]
        if key not in lane.occupants and occupant.origin in ('adopted', 'external'):
            setattr(lane.counters, occupant.origin,
                    getattr(lane.counters, occupant.origin) + 1)
        lane.occupants[key] = occupant

    def vacate(self, lane_name: str, key: str, now: float) -> list[Effect]:
        """The driver confirmed it: that occupant is gone. Starts the next goals if free."""
        self.lanes[lane_name].occupants.pop(key, None)
        return self._start_ready(now)

    def start_if_free(self, now: float) -> list[Effect]:
        """Start every queued goal whose lanes are all free (a lane just freed outside a
        holder's end, e.g. its last occupant gone: any lane's head may be waiting on it).
        """
        return self._start_ready(now)

    def record_operator_release(self, lane_name: str, what: str, now: float) -> None:
        lane = self.lanes[lane_name]
        lane.counters.operator_releases += 1
        lane.endings.append({'goal_id': what, 'skill': None, 'outcome': 'released',
                             'reason': 'released by an operator', 'driver_result': False,
                             'at': now})

    def block(self, lane_name: str, key: str, reason: str) -> None:
        """Refuse every new goal of the lane with this reason (emergency stop, operator)."""
        self.lanes[lane_name].blocked[key] = reason

    def unblock(self, lane_name: str, key: str, now: float) -> list[Effect]:
        self.lanes[lane_name].blocked.pop(key, None)
        return self._start_ready(now)

    def queued(self, lane_name: str) -> list[str]:
        """Every goal waiting in the lane: queued, then awaiting approval."""
        lane = self.lanes[lane_name]
        return [g.goal_id for g in lane.queue] + [w.goal.goal_id for w in lane.awaiting]

    def awaiting(self, lane_name: str) -> list[str]:
        """The lane's goals awaiting approval, oldest first."""
        return [w.goal.goal_id for w in self.lanes[lane_name].awaiting]

    def is_awaiting(self, goal_id: str) -> bool:
        name = self._lane_of_goal.get(goal_id)
        return name is not None and goal_id in self.awaiting(name)

    def cancel(self, goal_id: str, now: float,
               reason: str = 'canceled by its caller') -> list[Effect]:
        """A caller cancels its goal. Queued: removed at once. Holding: cancelled at driver."""
        holder = self._holder_of(goal_id)
        if holder is not None:
            if holder.state is HolderState.CANCELLING:
                return []
            return [self._begin_cancel(holder, reason)]
        goal = self._remove_queued(goal_id)
        if goal is None:
            return []
        for name in goal.all_lanes:
            self._record_end(self.lanes[name], goal, 'canceled', reason, now)
        return [EndWithoutDriver(goal_id, 'canceled', reason), *self._start_ready(now)]

    def tick(self, now: float) -> list[Effect]:
        """Time passes: enforce max_hold_s (a cancel; the lane frees only when the driver ends
        the goal, never by a timeout). Call it a few times a second.
        """
        effects: list[Effect] = []
        for lane in self.lanes.values():
            holder = lane.holder
            if holder is None or holder.state is HolderState.CANCELLING:
                continue
            if (lane.config.max_hold_s is not None
                    and now - holder.since >= lane.config.max_hold_s):
                lane.counters.hold_timeouts += 1
                reason = (f'held lane {lane.name!r} longer than '
                          f'max_hold_s={lane.config.max_hold_s:g}')
                effects.append(self._begin_cancel(holder, reason))
        for lane in self.lanes.values():
            for waiting in [w for w in lane.awaiting if now >= w.deadline]:
                if self._take_awaiting(waiting.goal.goal_id) is None:
                    continue  # a multi-lane goal, ended from another of its lanes
                self._record_decision(waiting.goal, 'timed_out', None, now)
                effects.extend(self._end_awaiting(
                    waiting.goal, 'not approved within approval_timeout_s='
                    f'{waiting.timeout_s:g} s', now))
        return effects

    # ---------------------------------------------------------------- queries
    def lanes_of(self, goal_id: str) -> tuple[str, ...]:
        """Every lane a known (holding or queued) goal asked for; () if unknown."""
        holder = self._holder_of(goal_id)
        if holder is not None:
            return holder.goal.all_lanes
        name = self._lane_of_goal.get(goal_id)
        for goal in self.lanes[name].queue if name else ():
            if goal.goal_id == goal_id:
                return goal.all_lanes
        for waiting in self.lanes[name].awaiting if name else ():
            if waiting.goal.goal_id == goal_id:
                return waiting.goal.all_lanes
        return ()

    def is_holder(self, goal_id: str) -> bool:
        return self._holder_of(goal_id) is not None

    def active_goals(self) -> list[str]:
        """Goals that hold a lane (forwarded to a driver, or about to be); each once."""
        ids = [lane.holder.goal.goal_id for lane in self.lanes.values() if lane.holder]
        return list(dict.fromkeys(ids))

    def snapshot(self, now: float, wall_offset: float = 0.0) -> dict:
        """JSON-ready state of every lane (the lane state topic's `lanes` field).

        `now` is the arbiter's clock (the node uses a monotonic one, immune to clock jumps);
        wall_offset is added to every time stamp so other processes can read them.
        """
        return {name: lane_snapshot(lane, now, wall_offset)
                for name, lane in self.lanes.items()}

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by the tests)."""
        tracked = set()
        for lane in self.lanes.values():
            ids = [g.goal_id for g in lane.queue]
            if lane.holder is not None:
                ids.append(lane.holder.goal.goal_id)
                assert lane.name in lane.holder.goal.all_lanes
                for name in lane.holder.goal.all_lanes:
                    assert self.lanes[name].holder is lane.holder, 'multi-lane hold not whole'
            assert len(ids) == len(set(ids)), f'duplicate goal in lane {lane.name}'
            # A goal awaiting approval holds and queues for nothing: it cannot start.
            waiting = [w.goal.goal_id for w in lane.awaiting]
            assert not set(waiting) & set(ids), f'lane {lane.name}: awaiting goal queued/held'
            assert len(waiting) == len(set(waiting)), f'duplicate awaiting in {lane.name}'
            assert len(waiting) <= lane.config.max_awaiting_approval
            for entry in lane.awaiting:
                for name in entry.goal.all_lanes:
                    assert entry in self.lanes[name].awaiting, 'multi-lane awaiting not whole'
            tracked.update(waiting)
            assert len(lane.queue) <= lane.config.max_queue, f'lane {lane.name} over max_queue'
            if lane.config.policy == 'reject':
                assert not lane.queue, f'reject lane {lane.name} has a queue'
            if lane.holder is None and not lane.occupants and lane.queue:
                assert not self._ready(lane.queue[0]), f'lane {lane.name} idles with a queue'
            for goal in lane.queue:
                for name in goal.all_lanes:
                    assert goal in self.lanes[name].queue, 'multi-lane goal not in every queue'
            priorities = [g.priority for g in lane.queue]
            assert priorities == sorted(priorities, reverse=True), 'queue not in priority order'
            tracked.update(ids)
        assert tracked == set(self._lane_of_goal), 'goal index out of sync'

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _free(lane: Lane) -> bool:
        """Nothing holds, occupies or has reserved the lane (a queue head waits for it)."""
        return lane.holder is None and not lane.occupants and not lane.queue

    def _ready(self, goal: GoalRequest) -> bool:
        """A queued goal may start: it heads the queue of each of its lanes, all free."""
        for name in goal.all_lanes:
            lane = self.lanes[name]
            if (lane.holder is not None or lane.occupants or not lane.queue
                    or lane.queue[0] is not goal or lane.blocked):
                return False
        return True

    def _start(self, goal: GoalRequest, now: float) -> tuple[Effect, ...]:
        holder = Holder(goal, since=now)
        for name in goal.all_lanes:
            lane = self.lanes[name]
            lane.holder = holder
            lane.counters.started += 1
        self._lane_of_goal[goal.goal_id] = goal.lane
        return (StartGoal(goal.goal_id),)

    def _start_ready(self, now: float) -> list[Effect]:
        """Start every queued goal whose lanes are all free and which heads all their queues."""
        effects: list[Effect] = []
        for lane in self.lanes.values():
            if lane.holder is None and not lane.occupants and lane.queue and not lane.blocked:
                goal = lane.queue[0]
                if self._ready(goal):
                    for name in goal.all_lanes:
                        self.lanes[name].queue.pop(0)
                    effects.extend(self._start(goal, now))
        return effects

    def _begin_cancel(self, holder: Holder, reason: str) -> CancelAtDriver:
        holder.state = HolderState.CANCELLING
        holder.cancel_reason = reason
        return CancelAtDriver(holder.goal.goal_id, reason)

    def _refuse(self, lane: Lane, goal: GoalRequest, now: float, reason: str) -> Decision:
        lane.counters.rejected += 1
        retry = lane.config.retry_after_ms
        holder = lane.holder
        lane.refusals.append({
            'goal_id': goal.goal_id, 'skill': goal.skill, 'reason': reason,
            'retry_after_ms': retry, 'at': now,
            'holder': ({'skill': holder.goal.skill, 'goal_id': holder.goal.goal_id}
                       if holder else None),
            'held_because': held_because(lane),
        })
        return Decision(False, reason=reason, retry_after_ms=retry)

    def _remove_queued(self, goal_id: str) -> Optional[GoalRequest]:
        """Take a waiting goal out of every queue (or awaiting list) it waits in."""
        waiting = self._take_awaiting(goal_id)
        if waiting is not None:
            return waiting.goal
        found = None
        for lane in self.lanes.values():
            for index, goal in enumerate(lane.queue):
                if goal.goal_id == goal_id:
                    del lane.queue[index]
                    found = goal
                    break
        if found is not None:
            self._lane_of_goal.pop(goal_id, None)
        return found

    def _take_awaiting(self, goal_id: str) -> Optional[Awaiting]:
        """Take a goal out of every awaiting list it is in (None: it awaits nothing)."""
        found = None
        for lane in self.lanes.values():
            for entry in lane.awaiting:
                if entry.goal.goal_id == goal_id:
                    lane.awaiting.remove(entry)
                    found = entry
                    break
        if found is not None:
            self._lane_of_goal.pop(goal_id, None)
        return found

    def _end_awaiting(self, goal: GoalRequest, reason: str, now: float) -> list[Effect]:
        """End a goal that awaited approval: aborted, never forwarded."""
        for name in goal.all_lanes:
            self._record_end(self.lanes[name], goal, 'aborted', reason, now)
        return [EndWithoutDriver(goal.goal_id, 'aborted', reason)]

    def _record_decision(self, goal: GoalRequest, decision: str, by: Optional[str],
                         now: float) -> None:
        counter = {'approved': 'approved', 'denied': 'denied',
                   'timed_out': 'approval_timeouts'}[decision]
        for name in goal.all_lanes:
            lane = self.lanes[name]
            setattr(lane.counters, counter, getattr(lane.counters, counter) + 1)
            lane.approvals.append({'goal_id': goal.goal_id, 'skill': goal.skill,
                                   'decision': decision, 'by': by, 'at': now})

    def _record_end(self, lane: Lane, goal: GoalRequest, outcome: str,
                    reason: Optional[str], now: float, driver_result: bool = False) -> None:
        self._lane_of_goal.pop(goal.goal_id, None)
        if outcome in ('succeeded', 'aborted', 'canceled'):
            setattr(lane.counters, outcome, getattr(lane.counters, outcome) + 1)
        lane.endings.append({'goal_id': goal.goal_id, 'skill': goal.skill,
                             'outcome': outcome, 'reason': reason,
                             'driver_result': driver_result, 'at': now})

    def _holder_of(self, goal_id: str) -> Optional[Holder]:
        lane_name = self._lane_of_goal.get(goal_id)
        if lane_name is None:
            return None
        holder = self.lanes[lane_name].holder
        return holder if holder is not None and holder.goal.goal_id == goal_id else None

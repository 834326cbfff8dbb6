"""JSON-ready view of one arbiter lane (the lane state topic's per-lane record).

Kept apart from lane_manager/arbiter.py so the arbitration rules stay readable; pure Python.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from lane_manager.lane_model import Lane


def held_because(lane: 'Lane') -> Optional[str]:
    """Why the lane is held besides its holder (None: only by its holder, or free)."""
    if not lane.occupants:
        return None
    return '; '.join(o.why for o in lane.occupants.values())


def held_text(lane: 'Lane') -> str:
    """Who holds the lane, for a refusal or a queued answer."""
    holder = lane.holder
    because = held_because(lane)
    if holder is not None:
        text = (f'lane {lane.name!r} is held by skill {holder.goal.skill!r} '
                f'goal {holder.goal.goal_id}')
        return f'{text} (and: {because})' if because else text
    if because:
        return f'lane {lane.name!r} is held: {because}'
    if lane.queue:
        head = lane.queue[0]
        others = ', '.join(repr(n) for n in head.all_lanes if n != lane.name)
        return (f'lane {lane.name!r} is reserved for skill {head.skill!r} goal '
                f'{head.goal_id} (it waits for lane {others} to start on all its lanes at once)')
    return f'lane {lane.name!r} is free'


def lane_snapshot(lane: 'Lane', now: float, wall_offset: float) -> dict:
    holder = lane.holder

    def stamped(record: dict) -> dict:
        return {**record, 'at': round(record['at'] + wall_offset, 3)}

    return {
        'policy': lane.config.policy,
        'holder': {
            'goal_id': holder.goal.goal_id, 'skill': holder.goal.skill,
            'priority': holder.goal.priority, 'state': holder.state.value,
            'since': round(holder.since + wall_offset, 3),
            'held_s': round(now - holder.since, 3),
            'cancel_reason': holder.cancel_reason, 'origin': 'lane_manager',
            'driver': holder.driver, 'driver_goal_id': holder.driver_goal_id,
            'lanes': list(holder.goal.all_lanes),
        } if holder is not None else _occupant_as_holder(lane, now, wall_offset),
        'held_because': held_because(lane),
        'blocked_by': sorted(lane.blocked),
        'blocked_because': '; '.join(lane.blocked.values()) or None,
        'occupants': [{'origin': o.origin, 'why': o.why, 'driver': o.driver,
                       'driver_goal_id': o.driver_goal_id, 'skill': o.skill,
                       'since': round(o.since + wall_offset, 3)}
                      for o in lane.occupants.values()],
        'queue': [{'goal_id': g.goal_id, 'skill': g.skill, 'priority': g.priority,
                   'since': round(g.submitted_at + wall_offset, 3),
                   'lanes': list(g.all_lanes)} for g in lane.queue],
        # Goals of approval skills waiting for an operator: they hold and queue for nothing.
        'awaiting_approval': [{'goal_id': w.goal.goal_id, 'skill': w.goal.skill,
                               'priority': w.goal.priority, 'state': 'awaiting_approval',
                               'since': round(w.goal.submitted_at + wall_offset, 3),
                               'deadline': round(w.deadline + wall_offset, 3),
                               'left_s': round(max(0.0, w.deadline - now), 3),
                               'approval_timeout_s': w.timeout_s,
                               'lanes': list(w.goal.all_lanes)} for w in lane.awaiting],
        'approvals': [stamped(r) for r in lane.approvals],
        'last_refusals': [stamped(r) for r in lane.refusals],
        'last_endings': [stamped(e) for e in lane.endings],
        'counters': vars(lane.counters).copy(),
        'retry_after_ms': lane.config.retry_after_ms,
        'max_queue': lane.config.max_queue,
        'max_hold_s': lane.config.max_hold_s,
        'max_awaiting_approval': lane.config.max_awaiting_approval,
    }


def _occupant_as_holder(lane: 'Lane', now: float, wall_offset: float) -> Optional[dict]:
    """Show a goal the drivers report (adopted/external) as the holder of its lane.

    So a reader of `holder` alone never takes such a lane for free.
    """
    for occupant in lane.occupants.values():
        if occupant.driver_goal_id is None:
            continue
        return {'goal_id': occupant.driver_goal_id, 'skill': occupant.skill,
                'priority': None, 'state': 'active' if occupant.origin != 'lane_manager'
                else 'ended_unconfirmed',
                'since': round(occupant.since + wall_offset, 3),
                'held_s': round(now - occupant.since, 3), 'cancel_reason': None,
                'origin': occupant.origin, 'driver': occupant.driver,
                'driver_goal_id': occupant.driver_goal_id, 'lanes': [lane.name]}
    return None

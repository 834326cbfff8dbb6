"""What an operator reads in /diagnostics: one status per lane, built from the lane state.

Plain Python (no ROS import) so the wording is tested without a graph. Levels:
- ERROR: the lane is blocked (emergency stop, operator), a driver is unavailable, or a goal
  may still run that its driver has not confirmed ended (a cancel it does not honour, a
  driver that stopped answering, a goal request it never answered): the lane stays held
  until the driver confirms or an operator releases it.
- WARN: the lane is busy, or held by a goal sent around the lane manager (external) or found
  running at start (adopted), or a driver's status is not known yet, or (idle) goals await
  an operator's approval: someone has to decide.
- OK: idle.
Plus one status for the emergency stop sources (`skill_lanes: emergency stop`): ERROR while
any source holds the stop, naming each and why; one value per source.
"""
from __future__ import annotations

OK, WARN, ERROR = 0, 1, 2


def lane_diagnostics(state: dict) -> list[tuple[str, int, str, dict]]:
    """(name, level, message, values) per lane of a lane state message body."""
    out = []
    for name, lane in state['lanes'].items():
        holder = lane['holder']
        missing = [state['skills'][s]['driver'] for s in lane.get('skills', [])
                   if not state['skills'][s]['driver_available']]
        unconfirmed = [o['why'] for o in lane.get('occupants', [])
                       if o['origin'] == 'lane_manager']
        unconfirmed += lane.get('unhonoured', [])
        foreign = [o['why'] for o in lane.get('occupants', [])
                   if o['origin'] in ('adopted', 'external', 'unknown')]
        waiting = lane.get('awaiting_approval') or []
        if lane.get('blocked_because'):
            level, message = ERROR, lane['blocked_because']
            if unconfirmed:
                message += '; ' + '; '.join(unconfirmed)
        elif unconfirmed:
            level, message = ERROR, '; '.join(unconfirmed)
        elif missing:
            level, message = ERROR, 'driver unavailable: ' + ', '.join(missing)
        elif foreign:
            level, message = WARN, '; '.join(foreign)
        elif holder is not None:
            level = WARN
            message = (f"busy: {holder['skill']} goal {holder['goal_id']} "
                       f"({len(lane['queue'])} queued)")
        elif waiting:
            level = WARN
            message = (f"idle; {len(waiting)} goal(s) awaiting approval (oldest: "
                       f"{waiting[0]['skill']} goal {waiting[0]['goal_id']})")
        else:
            level, message = OK, 'idle'
        values = {'policy': lane['policy'], 'queue_length': len(lane['queue']),
                  'awaiting_approval': len(waiting),
                  'holder_skill': (holder or {}).get('skill') or '',
                  'holder_goal': (holder or {}).get('goal_id') or '',
                  'holder_origin': (holder or {}).get('origin') or '',
                  'holder_driver': (holder or {}).get('driver') or '',
                  'held_because': lane.get('held_because') or '',
                  'blocked_by': ','.join(lane.get('blocked_by') or []),
                  **{f'count_{k}': v for k, v in lane['counters'].items()}}
        out.append((f'skill_lanes: lane {name}', level, message, values))
    return out + emergency_stop_diagnostics(state)


def emergency_stop_diagnostics(state: dict) -> list[tuple[str, int, str, dict]]:
    """The emergency stop sources' status (none configured: no status)."""
    sources = (state.get('emergency_stop') or {}).get('sources') or []
    if not sources:
        return []
    holding = [f"{s['topic']}: {s['why']}" for s in sources if s['active']]
    message = ('on: ' + '; '.join(holding)) if holding else 'off (every source clear)'
    values = {}
    for source in sources:
        heard = ('never heard' if source['last_value'] is None else
                 f"last {str(source['last_value']).lower()} {source['age_s']} s ago from "
                 f"{source['publisher']}")
        values[source['topic']] = (f"{'STOP: ' + source['why'] if source['active'] else 'clear'}"
                                   f'; {heard}')
    return [('skill_lanes: emergency stop', ERROR if holding else OK, message, values)]

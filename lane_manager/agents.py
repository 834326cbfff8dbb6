"""Who asked for each goal: the gateways' goal id -> agent map joined into lane state.

Pure Python. Goals sent by a plain ROS client have no entry and show as such. A refusal's
reason gains who holds the lane, so a busy answer says e.g. "lane 'arm' is held by agent
claude-code (session 3f2c…) running grasp".
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

AGENT_LIMIT = 4096
PLAIN_ROS = 'a plain ROS client'


def describe(agent: Optional[dict]) -> str:
    if not agent:
        return PLAIN_ROS
    name = agent.get('client') or 'unknown client'
    session = str(agent.get('session') or '')
    if agent.get('authenticated'):  # named by its token: "agent alice (claude-code 1.2, …)"
        software = ' '.join(str(agent[key]) for key in ('software', 'software_version')
                            if agent.get(key))
        details = [part for part in (software, f'session {session[:4]}…' if session else '')
                   if part]
        return f"agent {name} ({', '.join(details)})" if details else f'agent {name}'
    version = f" {agent['version']}" if agent.get('version') else ''
    short = f' (session {session[:4]}…)' if session else ''
    return f'agent {name}{version}{short}'


class AgentBook:
    """goal id -> agent, from every gateway's latest message (bounded)."""

    def __init__(self) -> None:
        self._agents: OrderedDict[str, dict] = OrderedDict()

    def update(self, body: dict) -> None:
        for goal_id, agent in (body.get('agents') or {}).items():
            if isinstance(agent, dict):
                self._agents[str(goal_id)] = {**agent, 'gateway': body.get('gateway')}
                self._agents.move_to_end(str(goal_id))
        while len(self._agents) > AGENT_LIMIT:
            self._agents.popitem(last=False)

    def get(self, goal_id: Optional[str]) -> Optional[dict]:
        return self._agents.get(goal_id) if goal_id else None

    def join(self, lanes: dict) -> dict:
        """Add `agent` and `asked_by` to holders, queued and awaiting goals, endings, refusals."""
        for lane in lanes.values():
            records = ([lane.get('holder')] + list(lane.get('queue') or [])
                       + list(lane.get('awaiting_approval') or []))
            records += list(lane.get('last_endings') or [])
            for record in records:
                if record:
                    self._mark(record)
            for refusal in lane.get('last_refusals') or []:
                self._mark(refusal)
                holder = refusal.get('holder')
                if holder:  # the holder record itself keeps its keys (skill, goal_id)
                    agent = self.get(holder.get('goal_id'))
                    refusal['holder_agent'] = agent
                    refusal['holder_asked_by'] = describe(agent)
                    refusal['reason'] = (f"{refusal.get('reason', '')} (held by "
                                         f'{describe(agent)} running {holder.get("skill")})')
        return lanes

    def _mark(self, record: dict) -> None:
        agent = self.get(record.get('goal_id'))
        record['agent'] = agent
        record['asked_by'] = describe(agent)

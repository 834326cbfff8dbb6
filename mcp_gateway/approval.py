"""Approval on the gateway side: the goal_approve / goal_deny tools and what a waiting call
says in its progress.

A goal of an `approval: operator` skill is accepted by the lane manager and waits there,
listed in the lane state (`awaiting_approval`), until an operator decides. The gateway sends
a decision on the lane manager's decision topic and confirms it from the lane state's
`approvals` record (lane_manager/approvals.py says why a topic: no request/response
interface with a string argument is available). The tools are operator tools: offered with
gateway.operator_tools and guarded like lane_take (server.operator_refusal).
"""
from __future__ import annotations

import time
from typing import Any, Optional

import mcp_types as types

from skill_lanes.interfaces import APPROVAL_BY_LIMIT
from mcp_gateway.agents import CURRENT_AGENT
from mcp_gateway.results import error_result, tool_result

DEFAULT_DECIDER = 'operator (MCP)'


def decider(agent: Optional[dict]) -> str:
    """Who decides, as the lane state and the log will name them: the caller's own `by`
    (the lane view sets one), else the MCP client's name, else 'operator (MCP)'.
    """
    if not agent:
        return DEFAULT_DECIDER
    client = agent.get('client')
    by = str(agent.get('by') or (f'operator {client!r} (MCP)' if client else DEFAULT_DECIDER))
    return by.strip()[:APPROVAL_BY_LIMIT]  # as the lane manager records it


async def decide_tool(ros: Any, goal_id: str, approve: bool) -> types.CallToolResult:
    """The goal_approve / goal_deny tool: the lane state's record of the decision."""
    from mcp_gateway.node import LaneManagerUnavailable
    by = decider(CURRENT_AGENT.get())
    try:
        record = await ros.decide_goal(goal_id, approve, by)
    except KeyError as exc:
        return error_result('not_awaiting_approval', str(exc.args[0]), goal_id=goal_id)
    except LaneManagerUnavailable as exc:
        return error_result('lane_manager_unavailable', str(exc), hint='retry',
                            goal_id=goal_id, retry_after_ms=2000)
    wanted = 'approved' if approve else 'denied'
    if record.decision != wanted or record.by != by:
        return error_result('not_awaiting_approval', f'goal {goal_id} was decided meanwhile: '
                            f'{record.decision}' + (f' by {record.by}' if record.by else ''),
                            goal_id=goal_id)
    detail = (f'goal {goal_id} {wanted} by {by}' + (
        ': it now asks for its lane like a goal arriving now' if approve
        else ': it ends aborted, never sent to the robot'))
    return tool_result({'goal_id': goal_id, 'decision': wanted, 'by': by, 'detail': detail})


def approval_note(skill: Any) -> str:
    """What the acceptance progress adds for a skill needing approval ('' otherwise): said
    at once, before the first keep-alive (progress_interval_s) can read the lane state.
    """
    if getattr(skill, 'approval', 'none') != 'operator':
        return ''
    return (f', awaiting approval by an operator (up to {skill.approval_timeout_s:g} s; '
            "goal_approve, the lane view or the lane's approve service)")


def awaiting_text(ros: Any, goal_id: str) -> Optional[str]:
    """`awaiting approval (goal <id>, N s left)` while the lane state lists the goal as
    awaiting approval, else None.
    """
    found = ros.awaiting_approval(goal_id)
    if found is None:
        return None
    _, entry = found
    left = max(0.0, entry.deadline - time.time())
    return (f'awaiting approval (goal {goal_id}, {left:.0f} s left): an operator must '
            'approve it')

"""Who asked: the MCP client (name + version from `initialize`), session and tool of each call.

With named clients (gateway.clients) `client` is the name the bearer token authenticated
(`authenticated: true`); the self-declared `initialize` name and version move to `software`
and `software_version`.

server.py sets `CURRENT_AGENT` around every tools/call (a context variable: the handler runs
in that task); the gateway node publishes goal id -> agent on GOAL_AGENTS_TOPIC before it
sends the goal (one message a goal, the last GOAL_AGENTS_HISTORY kept for a lane manager
that starts later: skill_lanes/interfaces.py), so the lane manager can name who holds a lane.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Optional

from mcp_gateway.permissions import grant_of

CURRENT_AGENT: ContextVar[Optional[dict]] = ContextVar('skill_lanes_agent', default=None)


def agent_of(ctx: Any, tool: str) -> dict:
    """The caller of one tools/call, from the MCP request context."""
    info = None
    try:
        info = ctx.session.client_params.client_info
    except AttributeError:
        pass
    session = None
    request = getattr(ctx, 'request', None)
    if request is not None:
        session = request.headers.get('mcp-session-id')
    if not session:
        session = f'{id(ctx.session):x}'
    grant = grant_of(request)
    if grant is not None and grant.client:
        # Named by its token (gateway.clients): that name is who asked; what the software
        # says of itself in `initialize` is kept beside it, never in its place.
        return {'client': grant.client, 'authenticated': True,
                'software': getattr(info, 'name', None),
                'software_version': getattr(info, 'version', None),
                'session': session, 'tool': tool}
    return {'client': getattr(info, 'name', None), 'version': getattr(info, 'version', None),
            'session': session, 'tool': tool}

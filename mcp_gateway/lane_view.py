"""The live lane view: a page at `/lanes` on the HTTP gateway, for people rather than agents.

    GET  /lanes                 the page (plain HTML/JS/CSS shipped in lane_view_static/:
                                no CDN, the robot may be offline)
    GET  /lanes/events          server-sent events: `hello` (what this viewer may do), then
                                `state` (the gateway's latest lane state) on every change
    GET  /lanes/state           the same lane state once, as JSON (scripts, curl)
    POST /lanes/<lane>/stop     the stop button: cancel the lane's holder and its queue
    POST /lanes/<lane>/take, .../give_back, .../goals/<goal_id>/approve, .../deny
                                operator buttons (gateway.operator_tools + operator token)

Who may do what is in `lane_view_auth.py` (the bearer-token rules of MCP over HTTP). The
lane view is mounted beside the MCP app by `mount()`, with the same Host/Origin checks.

Why the event stream ends every few seconds: uvicorn waits for open responses before it
shuts down, so an endless stream would keep Ctrl-C from stopping the gateway while a browser
is open. The browser's EventSource reconnects by itself (after `retry` ms) and gets the
current state at once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from functools import partial
from importlib import resources
from typing import Any, Awaitable, Callable, Optional

import anyio
from mcp.server.transport_security import (TransportSecurityMiddleware,
                                           TransportSecuritySettings)
from starlette.requests import Request
from starlette.responses import (HTMLResponse, JSONResponse, RedirectResponse, Response,
                                 StreamingResponse)
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway import lane_view_auth as auth
from mcp_gateway.permissions import SCOPE_KEY, Grant, Permissions, grant_of

log = logging.getLogger('mcp_gateway.lane_view')

StateSource = Callable[[], Optional[dict]]
StopLane = Callable[[str], Awaitable[dict]]

PREFIX = '/lanes'
STREAM_MAX_S = 5.0
RETRY_MS = 500
POLL_S = 0.05
STATIC = {'lane_view.js': 'text/javascript; charset=utf-8',
          'lane_view.css': 'text/css; charset=utf-8'}
SECURITY_HEADERS = {
    'content-security-policy': ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "style-src-attr 'unsafe-inline'; "
                                "connect-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
}
LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')
LANE_VIEW_DECIDER = 'operator (lane view)'  # `by` of a decision made with the view's buttons


def _static(name: str) -> bytes:
    return (resources.files('mcp_gateway') / 'lane_view_static' / name).read_bytes()


def security_settings(host: str) -> TransportSecuritySettings:
    """The Host/Origin rules the gateway's MCP endpoint applies for this bind address."""
    allowed_hosts = ['127.0.0.1:*', 'localhost:*', '[::1]:*']
    allowed_origins = ['http://127.0.0.1:*', 'http://localhost:*', 'http://[::1]:*']
    if host not in LOOPBACK_HOSTS:
        allowed_hosts.append(f'{host}:*')
        allowed_origins.append(f'http://{host}:*')
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=allowed_hosts,
                                     allowed_origins=allowed_origins)


def _error(status: int, error: str, message: str, **data: Any) -> JSONResponse:
    body: dict[str, Any] = {'ok': False, 'error': error, 'message': message}
    body.update(data)
    headers = dict(SECURITY_HEADERS)
    if status == 401:
        headers['www-authenticate'] = 'Bearer realm="skill_lanes"'
    return JSONResponse(body, status_code=status, headers=headers)


UNAUTHORIZED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>skill_lanes: token needed</title>
<link rel="icon" href="data:,"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Lane view: a token is needed</h1>
<p>This gateway asks for its bearer token (the one MCP clients use). Give it once: the
browser then keeps a cookie for this page only and the token leaves the address bar.</p>
<form method="get" action="/lanes"><input type="password" name="token" autofocus
 placeholder="token" autocomplete="off"> <button type="submit">Open</button></form>
<p>Or open <code>/lanes?token=&lt;token&gt;</code>.</p></body></html>
"""


class LaneView:
    """The lane view's routes over a lane state source and a stop action.

    state: returns the latest lane state dict (or None before the first one).
    stop: cancels a lane's holder and queue; returns `{ok, message, ...}`. None = no
    stop buttons (read-only view).
    """

    def __init__(self, state: StateSource, lanes: list[str], stop: Optional[StopLane],
                 token: str, security: TransportSecuritySettings,
                 operator: Optional[Callable[[str, str], Awaitable[dict]]] = None,
                 operator_token_env: Optional[str] = None,
                 permissions: Optional[Permissions] = None) -> None:
        # Named clients (gateway.clients): their tokens open the view, and each may stop
        # the lanes of its skills only (an operator client every lane).
        self._permissions = permissions if permissions is not None and permissions.named \
            else None
        # (verb 'take'|'give_back', lane) or (verb 'approve'|'deny', goal id) -> {ok, message}
        self._operator = operator
        self._operator_token_env = operator_token_env
        self._state = state
        self._lanes = sorted(lanes)
        self._stop = stop
        self._token = token
        self._security = TransportSecurityMiddleware(security)
        self.router = Router(routes=[
            Route(PREFIX, self._page, methods=['GET']),
            Route(f'{PREFIX}/', self._page, methods=['GET']),
            Route(f'{PREFIX}/static/{{name}}', self._asset, methods=['GET']),
            Route(f'{PREFIX}/events', self._events, methods=['GET']),
            Route(f'{PREFIX}/state', self._snapshot, methods=['GET']),
            Route(f'{PREFIX}/{{lane}}/stop', self._stop_lane, methods=['POST']),
            Route(f'{PREFIX}/{{lane}}/take', partial(self._operator_action, 'take'),
                  methods=['POST']),
            Route(f'{PREFIX}/{{lane}}/give_back', partial(self._operator_action, 'give_back'),
                  methods=['POST']),
            Route(f'{PREFIX}/{{lane}}/goals/{{goal_id}}/approve',
                  partial(self._operator_action, 'approve'), methods=['POST']),
            Route(f'{PREFIX}/{{lane}}/goals/{{goal_id}}/deny',
                  partial(self._operator_action, 'deny'), methods=['POST']),
        ])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    # ------------------------------------------------------------- checks
    def _viewer(self, request: Request) -> Optional[Grant]:
        """The named client this request comes from (None: none, or no named clients)."""
        if self._permissions is None:
            return None
        name = auth.client_of(self._permissions.client_tokens(), request.headers)
        return self._permissions.grant(name) if name is not None else None

    def _authorized(self, request: Request) -> bool:
        if self._permissions is None:
            return auth.authorized(self._token, request.headers)
        grant = self._viewer(request)
        request.scope[SCOPE_KEY] = grant  # operator_refusal: an operator client may take
        return grant is not None

    async def _refused(self, request: Request) -> Optional[Response]:
        """A response refusing the request (Host/Origin, token), or None to go on."""
        refused = await self._security.validate_request(request,
                                                        is_post=request.method == 'POST')
        if refused is not None:
            return refused
        if not self._authorized(request):
            if request.url.path.rstrip('/') == PREFIX:
                return HTMLResponse(UNAUTHORIZED_PAGE, status_code=401, headers={
                    **SECURITY_HEADERS, 'www-authenticate': 'Bearer realm="skill_lanes"'})
            return _error(401, 'unauthorized', 'bearer token required (see /lanes)')
        return None

    # ------------------------------------------------------------- routes
    async def _page(self, request: Request) -> Response:
        supplied = request.query_params.get('token')
        tokens = (self._permissions.client_tokens() if self._permissions is not None
                  else {'': self._token} if self._token else {})
        if supplied is not None and tokens:
            token = next((t for t in tokens.values() if auth.token_matches(supplied, t)), None)
            if token is None:
                return HTMLResponse(UNAUTHORIZED_PAGE, status_code=401, headers={
                    **SECURITY_HEADERS, 'www-authenticate': 'Bearer realm="skill_lanes"'})
            refused = await self._security.validate_request(request)
            if refused is not None:
                return refused
            response = RedirectResponse(PREFIX, status_code=303, headers=SECURITY_HEADERS)
            response.headers.append('set-cookie', auth.set_cookie_header(
                token, secure=request.url.scheme == 'https'))
            return response
        refused = await self._refused(request)
        if refused is not None:
            return refused
        return HTMLResponse(_static('index.html'), headers=SECURITY_HEADERS)

    async def _asset(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        name = request.path_params['name']
        if name not in STATIC:
            return _error(404, 'not_found', f'no asset {name!r}')
        return Response(_static(name), media_type=STATIC[name], headers=SECURITY_HEADERS)

    def _hello(self, request: Optional[Request] = None) -> dict:
        """What the page learns first; with named clients, whose token it holds (request)."""
        hello = {'can_stop': self._stop is not None, 'can_take': self._operator is not None,
                 'lanes': self._lanes,
                 'auth': 'token' if self._token or self._permissions else 'none',
                 'stream_max_s': STREAM_MAX_S}
        grant = grant_of(request) if request is not None else None
        if self._permissions is not None and grant is not None:
            hello['client'] = grant.client
            hello['stop_lanes'] = sorted(grant.lanes)
        return hello

    async def _events(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused

        async def stream():
            hello = json.dumps(self._hello(request))
            yield f'retry: {RETRY_MS}\nevent: hello\ndata: {hello}\n\n'
            last: Any = object()
            deadline = time.monotonic() + STREAM_MAX_S
            while time.monotonic() < deadline:
                state = self._state()
                if state is not last:  # every lane state message is a new dict
                    last = state
                    yield f'event: state\ndata: {json.dumps(state, default=str)}\n\n'
                await anyio.sleep(POLL_S)

        return StreamingResponse(stream(), media_type='text/event-stream',
                                 headers={**SECURITY_HEADERS, 'x-accel-buffering': 'no'})

    async def _snapshot(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        return JSONResponse({'view': self._hello(request), 'state': self._state()},
                            headers=SECURITY_HEADERS)

    async def _stop_lane(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        if not auth.action_allowed(request.headers):
            return _error(403, 'forbidden', f'buttons need the header {auth.ACTION_HEADER}: 1')
        lane = request.path_params['lane']
        if self._stop is None:
            return _error(403, 'read_only', 'this lane view has no stop buttons')
        if lane not in self._lanes:
            return _error(404, 'unknown_lane', f'unknown lane {lane!r}', known=self._lanes)
        grant = grant_of(request)
        if self._permissions is not None and grant is not None and lane not in grant.lanes:
            return _error(403, 'forbidden', f'client {grant.client!r} may not stop lane '
                          f'{lane!r}: it has no skill there (its lanes: '
                          f"{', '.join(sorted(grant.lanes)) or 'none'})", lane=lane,
                          client=grant.client)
        try:
            outcome = await self._stop(lane)
        except Exception as exc:  # a bug must reach the operator as text, not a traceback
            log.exception('stopping lane %s failed', lane)
            return _error(502, 'stop_failed', f'{type(exc).__name__}: {exc}', lane=lane)
        status = 200 if outcome.get('ok') else 503
        return JSONResponse({'lane': lane, **outcome}, status_code=status,
                            headers=SECURITY_HEADERS)


    async def _operator_action(self, verb: str, request: Request) -> Response:
        """Take-over and approval buttons: only with gateway.operator_tools, and the
        operator token (header X-Skill-Lanes-Operator) on top of the view's own token.
        """
        refused = await self._refused(request)
        if refused is not None:
            return refused
        if not auth.action_allowed(request.headers):
            return _error(403, 'forbidden', f'buttons need the header {auth.ACTION_HEADER}: 1')
        if self._operator is None:
            return _error(403, 'read_only', 'take-over is off (gateway.operator_tools)')
        from mcp_gateway.server import operator_refusal
        why = operator_refusal(request, self._operator_token_env)
        if why is not None:
            return _error(403, 'operator_token', why)
        lane = request.path_params['lane']
        if lane not in self._lanes:
            return _error(404, 'unknown_lane', f'unknown lane {lane!r}', known=self._lanes)
        goal_id = request.path_params.get('goal_id')  # approve / deny: that goal
        try:
            outcome = await self._operator(verb, goal_id or lane)
        except Exception as exc:  # a bug must reach the operator as text, not a traceback
            log.exception('%s of lane %s failed', verb, lane)
            return _error(502, f'{verb}_failed', f'{type(exc).__name__}: {exc}', lane=lane)
        if goal_id is not None:
            outcome = {'goal_id': goal_id, **outcome}
        return JSONResponse({'lane': lane, **outcome},
                            status_code=200 if outcome.get('ok') else 503,
                            headers=SECURITY_HEADERS)


class LaneStopper:
    """The stop button's action, through what exists.

    Prefers the lane manager's `<namespace>/lanes/<lane>/stop` service (std_srvs/Trigger:
    it cancels the holder and empties the queue, each goal ending "stopped by lane_stop");
    where that service is not served, the gateway's own `lane_stop` tool (cancel-all on
    every skill of the lane).

    The service is called through the gateway node (`GatewayNode.call_lane_service`), whose
    names are resolved under its own namespace (interfaces.StackNames): the view builds no
    name of its own, so its button stops this stack's lane and never a lane of another stack
    on the same ROS domain.
    """

    def __init__(self, node: Any, tools: Any) -> None:
        self._node = node
        self._tools = tools

    async def __call__(self, lane: str) -> dict:
        from mcp_gateway.node import LaneManagerUnavailable, ServiceAbsent
        try:
            # Not yet discovered = not served: the button must answer now, not in a second.
            ok, message = await self._node.call_lane_service(lane, 'stop',
                                                             discovery_wait_s=0.0)
        except ServiceAbsent:
            return await self._lane_stop_tool(lane)
        except LaneManagerUnavailable as exc:
            return {'ok': False, 'via': 'lane_manager', 'message': str(exc)}
        return {'ok': ok, 'via': 'lane_manager', 'message': message}

    async def _lane_stop_tool(self, lane: str) -> dict:
        async def no_progress(progress: float, total: Optional[float],
                              message: Optional[str]) -> None:
            return None

        result = await self._tools.call('lane_stop', {'lane': lane}, no_progress)
        body = result.structured_content or {}
        if result.is_error:
            return {'ok': False, 'via': 'gateway', 'error': body.get('error'),
                    'message': body.get('message') or 'lane_stop failed'}
        count = body.get('cancelled', 0)
        return {'ok': True, 'via': 'gateway', 'cancelled': count,
                'message': f'lane_stop: cancelling {count} goal(s) in lane {lane!r}'}


class _Dispatch:
    """`/lanes...` to the lane view, everything else (and lifespan) to the MCP app."""

    def __init__(self, view: ASGIApp, other: ASGIApp) -> None:
        self.view = view
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get('path', '')
        if scope['type'] == 'http' and (path == PREFIX or path.startswith(PREFIX + '/')):
            await self.view(scope, receive, send)
        else:
            await self.other(scope, receive, send)


def mount(app: ASGIApp, config: Any, host: str, node: Any, tools: Any,
          permissions: Optional[Permissions] = None) -> ASGIApp:
    """The gateway's HTTP app with the lane view at /lanes beside it (one call in main).

    app: the MCP app (already behind the bearer middleware); node: the GatewayNode (lane
    state, service clients); tools: the SkillTools (its `lane_stop`).
    """
    stopper = LaneStopper(node, tools)
    operator = None
    if config.gateway.operator_tools:
        async def operator(verb: str, lane: str) -> dict:
            async def no_progress(*_args: Any) -> None:
                pass
            if verb in ('approve', 'deny'):  # `lane` is the goal id here
                from mcp_gateway.agents import CURRENT_AGENT
                token = CURRENT_AGENT.set({'by': LANE_VIEW_DECIDER})
                try:
                    result = await tools.call(f'goal_{verb}', {'goal_id': lane}, no_progress)
                finally:
                    CURRENT_AGENT.reset(token)
                body = result.structured_content or {}
                return {'ok': not result.is_error, 'decision': body.get('decision'),
                        'message': body.get('detail') or body.get('message') or verb}
            name = 'lane_take' if verb == 'take' else 'lane_give_back'
            result = await tools.call(name, {'lane': lane}, no_progress)
            body = result.structured_content or {}
            return {'ok': not result.is_error, 'message': body.get('detail')
                    or body.get('message') or name}
    view = LaneView(lambda: node.lane_state, list(config.lanes), stopper,
                    os.environ.get(config.gateway.token_env, ''), security_settings(host),
                    operator, config.gateway.operator_token_env, permissions)
    return _Dispatch(view, app)

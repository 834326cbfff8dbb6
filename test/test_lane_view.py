"""The live lane view (`/lanes` on the HTTP gateway), without a browser.

The lane view app served by a real uvicorn on a loopback port, over a lane state and a stop
action the test controls: token rules, cookie, CSRF and Host/Origin guards, the event
stream, errors as text; and the stop button through the lane manager's Trigger service from
a real gateway process. The browser tests are in test_lane_view_browser.py.
"""
from __future__ import annotations

import http.client
import json
import textwrap
import threading
from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from mcp_gateway import lane_view_auth as auth
from mcp_gateway.lane_view import LaneView, _Dispatch, security_settings
from support import wait_until
from test_gateway import free_port, gateway_env, write_config

TOKEN = 'lane-view-test-token'
STATE = {'node': '/lane_manager', 'seq': 1, 'stamp': 1.0, 'lanes': {
    'motion': {'policy': 'queue', 'holder': None, 'queue': [], 'last_refusals': [],
               'last_endings': [], 'counters': {}}}, 'skills': {}}


# ----------------------------------------------------------------- pure rules
@settings(max_examples=200)
@given(token=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_only_the_token_or_its_cookie_opens_the_view(token, other):
    assert auth.authorized(token, {'authorization': f'Bearer {token}'})
    assert auth.authorized(token, {'cookie': f'{auth.COOKIE_NAME}={auth.cookie_value(token)}'})
    assert not auth.authorized(token, {})
    if other != token:
        assert not auth.authorized(token, {'authorization': f'Bearer {other}'})
        assert not auth.authorized(
            token, {'cookie': f'{auth.COOKIE_NAME}={auth.cookie_value(other)}'})
    # The cookie is never the token itself: it cannot be replayed as the MCP bearer token.
    assert auth.cookie_value(token) != token
    assert not auth.authorized(token, {'cookie': f'{auth.COOKIE_NAME}={token}'})


@given(header=st.text(max_size=80))
def test_a_malformed_cookie_header_is_no_cookie(header):
    assert not auth.authorized(TOKEN, {'cookie': header})


def test_without_a_configured_token_no_token_is_asked_for():
    assert auth.authorized('', {})


# ----------------------------------------------------------------- served app
class ServedView:
    """A LaneView on a real uvicorn in a thread, beside a 404 app standing for the MCP app."""

    def __init__(self, view: LaneView) -> None:
        import uvicorn

        async def other(scope, receive, send):  # stands for the MCP app
            if scope['type'] == 'http':
                await send({'type': 'http.response.start', 'status': 404, 'headers': []})
                await send({'type': 'http.response.body', 'body': b'mcp'})

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(
            _Dispatch(view, other), host='127.0.0.1', port=self.port, log_level='warning',
            lifespan='off'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, what='uvicorn to listen')

    def request(self, method: str, path: str, headers: Optional[dict] = None,
                body: Optional[bytes] = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            conn.close()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class Served(ServedView):
    """State and stop under the test's control."""

    def __init__(self, token: str, can_stop: bool = True) -> None:
        self.state: Optional[dict] = STATE
        self.stops: list[str] = []
        self.fail_with: Optional[Exception] = None

        async def stop(lane: str) -> dict:
            if self.fail_with is not None:
                raise self.fail_with
            self.stops.append(lane)
            return {'ok': True, 'via': 'test', 'message': f'stopping {lane}'}

        super().__init__(LaneView(lambda: self.state, ['motion', 'gripper'],
                                  stop if can_stop else None, token,
                                  security_settings('127.0.0.1')))


@pytest.fixture
def served():
    app = Served(TOKEN)
    try:
        yield app
    finally:
        app.close()


BEARER = {'Authorization': f'Bearer {TOKEN}'}
BUTTON = {**BEARER, 'Content-Type': 'application/json', 'X-Skill-Lanes': '1'}


def test_every_lane_view_path_needs_the_token(served):
    for path in ('/lanes', '/lanes/state', '/lanes/events', '/lanes/static/lane_view.js'):
        status, headers, body = served.request('GET', path)
        assert status == 401, (path, body)
        assert headers['www-authenticate'].startswith('Bearer')
        status, _, _ = served.request('GET', path, {'Authorization': 'Bearer wrong'})
        assert status == 401, path
    status, _, body = served.request('GET', '/lanes?token=wrong')
    assert status == 401 and b'token' in body
    status, headers, body = served.request('GET', '/lanes', BEARER)
    assert status == 200 and b'lane_view.js' in body
    assert "script-src 'self'" in headers['content-security-policy']
    # Other paths are the MCP app's (behind its own bearer middleware), not the view's.
    assert served.request('GET', '/lanesfoo')[2] == b'mcp'


def test_a_token_given_once_becomes_a_cookie_for_the_view_only(served):
    status, headers, _ = served.request('GET', f'/lanes?token={TOKEN}')
    assert status == 303 and headers['location'] == '/lanes'  # the token leaves the URL
    cookie = headers['set-cookie']
    for attribute in ('HttpOnly', 'SameSite=Strict', 'Path=/lanes'):
        assert attribute in cookie
    assert TOKEN not in cookie
    pair = cookie.split(';')[0]
    status, _, body = served.request('GET', '/lanes', {'Cookie': pair})
    assert status == 200 and b'<title>' in body
    status, _, body = served.request('GET', '/lanes/state', {'Cookie': pair})
    assert status == 200 and json.loads(body)['state'] == STATE


def test_the_stop_button_is_guarded_and_answers_in_words(served):
    json_body = b'{}'
    # Without the page's header (a cross-site form could not send it): refused, nothing done.
    status, _, body = served.request('POST', '/lanes/motion/stop',
                                     {**BEARER, 'Content-Type': 'application/json'}, json_body)
    assert status == 403 and json.loads(body)['error'] == 'forbidden'
    status, _, _ = served.request('POST', '/lanes/motion/stop',
                                  {**BUTTON, 'Content-Type': 'text/plain'}, json_body)
    assert status == 400
    status, _, _ = served.request('POST', '/lanes/motion/stop',
                                  {**BUTTON, 'Origin': 'http://evil.example'}, json_body)
    assert status == 403
    status, _, _ = served.request('POST', '/lanes/motion/stop',
                                  {**BUTTON, 'Host': 'evil.example:80'}, json_body)
    assert status == 421
    status, _, _ = served.request('POST', '/lanes/motion/stop', {
        k: v for k, v in BUTTON.items() if k != 'Authorization'}, json_body)
    assert status == 401
    assert served.stops == []
    status, _, body = served.request('POST', '/lanes/nolane/stop', BUTTON, json_body)
    answer = json.loads(body)
    assert status == 404 and answer['error'] == 'unknown_lane'
    assert answer['known'] == ['gripper', 'motion']
    status, _, body = served.request('POST', '/lanes/motion/stop', BUTTON, json_body)
    assert status == 200 and json.loads(body) == {
        'lane': 'motion', 'ok': True, 'via': 'test', 'message': 'stopping motion'}
    assert served.stops == ['motion']
    served.fail_with = RuntimeError('the lane manager went away')
    status, _, body = served.request('POST', '/lanes/gripper/stop', BUTTON, json_body)
    answer = json.loads(body)
    assert status == 502 and 'the lane manager went away' in answer['message']
    assert b'Traceback' not in body


def read_events(served: Served, headers: dict, until) -> list[tuple[str, object]]:
    """Server-sent events from /lanes/events until `until(events)` or the stream's end."""
    conn = http.client.HTTPConnection('127.0.0.1', served.port, timeout=30)
    events: list[tuple[str, object]] = []
    try:
        conn.request('GET', '/lanes/events', headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader('content-type').startswith('text/event-stream')
        name = None
        while not until(events):
            line = response.readline()
            if not line:
                break
            line = line.decode().rstrip('\n')
            if line.startswith('event: '):
                name = line[len('event: '):]
            elif line.startswith('data: '):
                events.append((name, json.loads(line[len('data: '):])))
    finally:
        conn.close()
    return events


def test_the_event_stream_sends_each_new_lane_state(served):
    seen: list = []

    def until(events):
        seen[:] = events
        if len(events) == 2:  # hello + the current state: publish a new one
            served.state = {**STATE, 'seq': 2}
        return len(events) >= 3

    events = read_events(served, BEARER, until)
    assert events[0] == ('hello', {'can_stop': True, 'can_take': False,
                                   'lanes': ['gripper', 'motion'],
                                   'auth': 'token', 'stream_max_s': 5.0})
    assert events[1] == ('state', STATE)
    assert events[2] == ('state', {**STATE, 'seq': 2})
    # Before any lane state: an explicit null, which the page shows as "waiting".
    served.state = None
    events = read_events(served, BEARER, lambda e: len(e) >= 2)
    assert events[1] == ('state', None)


def test_a_read_only_view_has_no_buttons_and_no_token_on_loopback():
    app = Served('', can_stop=False)
    try:
        events = read_events(app, {}, lambda e: len(e) >= 2)
        assert events[0][1]['can_stop'] is False and events[0][1]['auth'] == 'none'
        status, _, body = app.request('POST', '/lanes/motion/stop', {
            'Content-Type': 'application/json', 'X-Skill-Lanes': '1'}, b'{}')
        assert status == 403 and json.loads(body)['error'] == 'read_only'
    finally:
        app.close()


# ----------------------------------------------------------------- the lane manager's stop
# The simulated robot of these tests and of test_lane_view_browser.py.
NAMESPACE = '/lane_view_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      motion:  {{policy: queue, max_queue: 8}}
      gripper: {{policy: reject, retry_after_ms: 500}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /lvsim/navigate,
                 description: drive}}
      dock:     {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /lvsim/dock}}
      grasp:    {{lane: gripper, action_type: test_msgs/action/Fibonacci, driver: /lvsim/grasp}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 2.0}}
    gateway: {{lane_manager_wait_s: 15.0}}
    sim:
      default: {{duration_s: 60.0, feedback_hz: 2}}
      skills:
        dock: {{duration_s: 0.5}}
        grasp: {{duration_s: 4.0}}
""")


def test_the_stop_button_uses_the_lane_managers_stop_service(tmp_path, rclpy_context,
                                                             processes):
    """Where `<namespace>/lanes/<lane>/stop` (std_srvs/Trigger) is served, the button calls
    it and shows its answer; before the gateway has discovered it, the gateway's lane_stop
    is used (here it answers that no lane manager serves the skills, in words).
    """
    pytest.importorskip('std_srvs.srv', reason='std_srvs (wheel ros-std-srvs) not installed')
    from rclpy.node import Node
    from std_srvs.srv import Trigger
    from skill_lanes.interfaces import lane_service_name
    from skill_lanes.runtime import BackgroundExecutor
    namespace = '/lane_view_trigger_lm'
    config_file = write_config(tmp_path, CONFIG.replace(NAMESPACE, namespace))
    calls: list[str] = []

    def on_stop(request, response):
        calls.append('motion')
        response.success = True
        response.message = 'stopped by lane_stop: 1 goal cancelled, 0 dequeued'
        return response

    node = Node('lane_view_fake_lane_manager')
    node.create_service(Trigger, lane_service_name(namespace, 'motion', 'stop'), on_stop)
    executor = BackgroundExecutor(node, num_threads=1)
    try:
        port = free_port()
        gateway = processes.python('mcp_gateway', '--config', str(config_file), '--transport',
                                   'http', '--port', str(port),
                                   env=gateway_env(SKILL_LANES_TOKEN=TOKEN),
                                   name='lv_trigger_gateway')
        gateway.wait_for_output('mcp_gateway ready on', timeout=60)
        answers: list[tuple[int, dict]] = []

        def press() -> bool:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
            try:
                conn.request('POST', '/lanes/motion/stop', body=b'{}', headers=BUTTON)
                response = conn.getresponse()
                answers.append((response.status, json.loads(response.read())))
            finally:
                conn.close()
            return answers[-1][1].get('via') == 'lane_manager'

        wait_until(press, 30, interval=0.2, what='the gateway to call the stop service')
        assert answers[-1] == (200, {'lane': 'motion', 'ok': True, 'via': 'lane_manager',
                                     'message': 'stopped by lane_stop: 1 goal cancelled, '
                                                '0 dequeued'})
        # Before the view's own client saw the service, a press went to the gateway's
        # lane_stop tool, which prefers the same service once it sees it: every call that
        # reached the lane manager was a stop of this lane, and the last came from the view.
        assert calls and set(calls) == {'motion'}
        for status, body in answers[:-1]:
            assert body['via'] == 'gateway', body
            if status != 200:
                assert status == 503 and body['ok'] is False, body
                assert 'lane manager' in body['message'], body
    finally:
        executor.shutdown()
        node.destroy_node()

"""The live lane view (`/lanes` on the HTTP gateway).

Two layers:
- the lane view app served by a real uvicorn on a loopback port, over a lane state and a
  stop action the test controls: token rules, cookie, CSRF and Host/Origin guards, the
  event stream, errors as text;
- headless Chromium (Debian's package, driven with Selenium) against the simulated stack
  as real processes (sim driver, lane manager, HTTP gateway with a token): a goal appears
  on the timeline and the stop button cancels it, as the driver's own counters show.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from mcp_gateway import lane_view_auth as auth
from mcp_gateway.lane_view import LaneView, _Dispatch, security_settings
from support import ProcessGroup, wait_until
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
class Served:
    """A LaneView on a real uvicorn in a thread; state and stop under the test's control."""

    def __init__(self, token: str, can_stop: bool = True) -> None:
        import uvicorn
        self.state: Optional[dict] = STATE
        self.stops: list[str] = []
        self.fail_with: Optional[Exception] = None

        async def stop(lane: str) -> dict:
            if self.fail_with is not None:
                raise self.fail_with
            self.stops.append(lane)
            return {'ok': True, 'via': 'test', 'message': f'stopping {lane}'}

        async def other(scope, receive, send):  # stands for the MCP app
            if scope['type'] == 'http':
                await send({'type': 'http.response.start', 'status': 404, 'headers': []})
                await send({'type': 'http.response.body', 'body': b'mcp'})

        view = LaneView(lambda: self.state, ['motion', 'gripper'], stop if can_stop else None,
                        token, security_settings('127.0.0.1'))
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
    assert events[0] == ('hello', {'can_stop': True, 'lanes': ['gripper', 'motion'],
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


# ----------------------------------------------------------------- in a browser
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
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')


def browser(width: int = 1400, height: int = 1000):
    """Headless Chromium (Debian's) under Selenium, with no network of its own."""
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip('headless Chromium not installed (Debian: apt-get install chromium '
                    'chromium-driver; `make test` does it when run as root)')
    webdriver = pytest.importorskip('selenium.webdriver')
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix='skill_lanes_chromium_')
    for arg in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', f'--user-data-dir={profile}',
                f'--window-size={width},{height}'):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.profile_dir = profile
    return driver


@pytest.fixture
def stack(tmp_path, rclpy_context):
    from ros_client import RosTestClient
    config_file = write_config(tmp_path, CONFIG)
    group = ProcessGroup()
    client = None
    try:
        sim = group.python('lane_manager.sim_driver', '--config', str(config_file),
                           name='lv_sim_driver')
        manager = group.python('lane_manager.node', '--config', str(config_file),
                               '--ros-args', '-r', '__node:=lane_view_lane_manager',
                               name='lv_lane_manager')
        port = free_port()
        gateway = group.python('mcp_gateway', '--config', str(config_file), '--transport',
                               'http', '--port', str(port),
                               env=gateway_env(SKILL_LANES_TOKEN=TOKEN), name='lv_gateway')
        sim.wait_for_output('sim_driver ready')
        manager.wait_for_output('lane_manager ready')
        gateway.wait_for_output('mcp_gateway ready on', timeout=60)
        client = RosTestClient(namespace=NAMESPACE)
        client.wait_for_skills('navigate', 'dock', 'grasp')
        client.wait_state(lambda s: all(v['driver_available'] for v in s['skills'].values()),
                          20, what='the lane manager to see every driver')
        client.wait_stats(lambda s: 'motion' in s['lanes'], what='sim driver stats')
        yield f'http://127.0.0.1:{port}', client
    finally:
        if client is not None:
            client.close()
        group.stop_all()


def fibonacci(order: int):
    from test_msgs.action import Fibonacci
    return Fibonacci.Goal(order=order)


def test_a_goal_appears_on_the_timeline_and_the_stop_button_cancels_it(stack):
    from action_msgs.msg import GoalStatus
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from ros_client import GoalCall
    base, ros = stack
    driver = browser()
    try:
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)

        def shown(selector: str):
            return wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, selector),
                              f'the page to show {selector}')[0]

        def text_of(selector: str) -> str:
            # The page re-renders lists twice a second: read the text in the same attempt.
            return visible_text(driver, selector)

        driver.get(f'{base}/lanes?token={TOKEN}')
        assert driver.current_url == f'{base}/lanes', 'the token must leave the address bar'
        shown('#live[data-live="live"]')
        shown('.lane[data-lane="motion"]')
        before = ros.sim_stats['lanes']['motion']

        # Some history: a short goal that succeeds, a busy gripper that refuses a second one.
        short = GoalCall(ros.client('dock'), fibonacci(1))
        assert short.result(30)[0] == GoalStatus.STATUS_SUCCEEDED
        shown(f'.lane[data-lane="motion"] .recent li[data-goal-id="{short.id}"]'
              '[data-outcome="succeeded"]')
        gripping = GoalCall(ros.client('grasp'), fibonacci(1))
        assert gripping.accepted()
        refused = GoalCall(ros.client('grasp'), fibonacci(1))
        assert not refused.accepted()
        item = text_of(f'.lane[data-lane="gripper"] .recent li[data-goal-id="{refused.id}"]')
        assert 'refused' in item.lower() and 'held by' in item

        docks = 1
        if os.environ.get('SKILL_LANES_SCREENSHOT'):
            docks += scenery(ros)
        # The goal under test, and one queued behind it.
        running = GoalCall(ros.client('navigate'), fibonacci(5))
        assert running.accepted()
        queued = GoalCall(ros.client('navigate'), fibonacci(2))
        assert queued.accepted()
        shown(f'.lane[data-lane="motion"] .timeline .bar[data-goal-id="{running.id}"]'
              '[data-outcome="running"]')
        shown(f'.lane[data-lane="motion"] [data-holder-goal-id="{running.id}"]')
        shown(f'.lane[data-lane="motion"] .queue li[data-goal-id="{queued.id}"]')

        button = shown('.lane[data-lane="motion"] button[data-stop-lane="motion"]')
        assert button.is_displayed() and button.is_enabled()
        button.click()
        toast = shown('#toast:not([hidden])')  # the gateway's answer, in words
        assert toast.text.startswith('motion: ') and 'bad' not in toast.get_attribute('class')
        assert running.result(30)[0] == GoalStatus.STATUS_CANCELED
        assert queued.result(30)[0] == GoalStatus.STATUS_CANCELED
        shown(f'.lane[data-lane="motion"] .recent li[data-goal-id="{running.id}"]'
              '[data-outcome="canceled"]')
        shown(f'.lane[data-lane="motion"] .timeline .bar[data-goal-id="{running.id}"]'
              '[data-outcome="canceled"]')
        # The driver's own counters: the running goal was cancelled there; the queued one
        # never reached it.
        stats = ros.wait_stats(
            lambda s: s['lanes']['motion']['active'] == 0
            and s['lanes']['motion']['canceled'] == before['canceled'] + 1, 20,
            what='the simulated driver to count the cancel')
        # The docks and the running goal; not the queued one.
        assert stats['lanes']['motion']['goals'] == before['goals'] + docks + 1
        assert stats['lanes']['motion']['overlaps'] == 0
        shown('.lane[data-lane="motion"] .badge.state-idle')
        severe = [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE']
        assert severe == [], severe
        if os.environ.get('SKILL_LANES_SCREENSHOT'):
            # The picture: the stopped goals, and the lane busy again.
            again = GoalCall(ros.client('navigate'), fibonacci(3))
            assert again.accepted()
            shown(f'.lane[data-lane="motion"] [data-holder-goal-id="{again.id}"]')
            save_screenshot(driver)
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


def scenery(ros) -> int:
    """More to look at for the README's picture: docks queued back to back, refusals."""
    from ros_client import GoalCall
    docks = [GoalCall(ros.client('dock'), fibonacci(1)) for _ in range(3)]
    for call in docks:
        call.result(30)
    for _ in range(2):
        GoalCall(ros.client('grasp'), fibonacci(1)).accepted()
        time.sleep(1.0)
    return len(docks)


def visible_text(driver, selector: str) -> str:
    """The text of the first element matching `selector`, once there is one. The page
    re-renders its lists, so an element found may be replaced before it is read: find and
    read in one attempt, and try again if it went stale."""
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(driver, 30, poll_frequency=0.1, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException))
    return wait.until(lambda d: d.find_element(By.CSS_SELECTOR, selector).text or None,
                      f'the page to show {selector}')


def save_screenshot(driver) -> None:
    """The README's picture: SKILL_LANES_SCREENSHOT=doc/lane_view.png to refresh it."""
    target = os.environ.get('SKILL_LANES_SCREENSHOT')
    if target:
        from selenium.webdriver.common.by import By
        driver.find_element(By.CSS_SELECTOR, 'button.window[data-window="30"]').click()
        time.sleep(3.0)  # let the running bar grow a little: this is for a person's eyes
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(target)


def test_the_stop_button_uses_the_lane_managers_stop_service(tmp_path, rclpy_context,
                                                             processes):
    """Where `<namespace>/lanes/<lane>/stop` (std_srvs/Trigger) is served, the button calls
    it and shows its answer; before the gateway has discovered it, the gateway's lane_stop
    is used (here it answers that no lane manager serves the skills, in words)."""
    pytest.importorskip('std_srvs.srv', reason='std_srvs (wheel ros-std-srvs) not installed')
    from rclpy.node import Node
    from std_srvs.srv import Trigger
    from lane_manager.interfaces import lane_service_name
    from lane_manager.runtime import BackgroundExecutor
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

        wait_until(press, 30, interval=0.2, what="the gateway to call the stop service")
        assert answers[-1] == (200, {'lane': 'motion', 'ok': True, 'via': 'lane_manager',
                                     'message': 'stopped by lane_stop: 1 goal cancelled, '
                                                '0 dequeued'})
        assert calls == ['motion']
        for status, body in answers[:-1]:  # before discovery: the gateway's own lane_stop
            assert status == 503 and body['ok'] is False and body['via'] == 'gateway'
            assert 'lane manager' in body['message'], body
    finally:
        executor.shutdown()
        node.destroy_node()


DRIVER_TRUTH_STATE = {
    'node': '/lane_manager', 'seq': 5, 'stamp': time.time(), 'skills': {}, 'lanes': {
        'motion': {
            'policy': 'queue', 'max_queue': 8, 'counters': {'submitted': 1},
            'holder': {'goal_id': '11111111-2222-3333-4444-555555555555', 'skill': 'navigate',
                       'priority': 0, 'state': 'canceling', 'since': time.time() - 3,
                       'held_s': 3.0, 'cancel_reason': 'stopped by lane_stop',
                       'origin': 'adopted', 'driver': '/navigate_to_pose',
                       'driver_goal_id': '99999999-8888-7777-6666-555555555555',
                       'agent': {'name': 'claude-code', 'version': '2.1',
                                 'session': '3f2c9a0b77'}},
            'held_because': 'the driver never confirmed the cancel of goal '
                            '11111111-2222-3333-4444-555555555555',
            'drivers': {'/navigate_to_pose': {'reachable': False, 'active_goals': ['a', 'b']}},
            'queue': [],
            'last_refusals': [{'goal_id': 'r1', 'skill': 'dock', 'at': time.time() - 1,
                               'reason': 'busy <img src=x id="injected"> "quoted"'}],
            'last_endings': []}}}


def test_the_page_shows_driver_truth_keys_and_never_runs_lane_state_text():
    """Keys added by the driver-truth work (origin, driver, held_because, drivers, agent)
    are shown when present; text from the lane state is text, never markup."""
    from selenium.webdriver.common.by import By
    app = Served('', can_stop=False)
    app.state = DRIVER_TRUTH_STATE
    driver = browser()
    try:
        driver.get(f'http://127.0.0.1:{app.port}/lanes')
        visible_text(driver, '.lane[data-lane="motion"] [data-holder-goal-id]')
        holder = visible_text(driver, '.lane[data-lane="motion"] .col.holder')
        for text in ('adopted', '/navigate_to_pose', '99999999', 'claude-code 2.1',
                     'session 3f2c9a0b', 'stopped by lane_stop', 'held: the driver never '
                     'confirmed the cancel of goal 11111111…'):
            assert text in holder, (text, holder)
        lane = driver.find_element(By.CSS_SELECTOR, '.lane[data-lane="motion"]')
        assert 'held' in lane.get_attribute('class')
        health = lane.find_element(By.CSS_SELECTOR, '.health')
        assert '/navigate_to_pose' in health.text and '2 active' in health.text
        assert health.find_elements(By.CSS_SELECTOR, '.dot.down')
        recent = lane.find_element(By.CSS_SELECTOR, '.recent').text
        assert 'busy <img src=x id="injected"> "quoted"' in recent
        assert driver.find_elements(By.ID, 'injected') == []
        # A read-only view (no stop action) shows no stop button.
        assert not lane.find_element(By.CSS_SELECTOR, 'button.stop').is_displayed()
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)
        app.close()


def test_a_browser_without_the_token_is_asked_for_it_once(served):
    """No token: the 401 page asks for it; given once, the cookie carries the live view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = browser()
    try:
        base = f'http://127.0.0.1:{served.port}'
        driver.get(f'{base}/lanes')
        assert driver.find_elements(By.CSS_SELECTOR, '.lane') == []
        field = driver.find_element(By.NAME, 'token')
        field.send_keys(TOKEN)
        field.submit()
        WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#live[data-live="live"]'),
            'the live lane view after giving the token')
        assert driver.current_url == f'{base}/lanes'
        assert driver.find_elements(By.CSS_SELECTOR, '.lane[data-lane="motion"]')
        assert [c['name'] for c in driver.get_cookies()] == [auth.COOKIE_NAME]
        assert driver.get_cookies()[0]['value'] != TOKEN
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)

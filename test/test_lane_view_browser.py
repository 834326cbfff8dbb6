"""The live lane view in a real browser: headless Chromium (Debian's package, driven with
Selenium) against the simulated stack as real processes (sim driver, lane manager, HTTP
gateway with a token), and against a lane view app serving states the test chooses.

Where Chromium or its driver is absent every test here skips and says why (`make test`
installs both with apt-get when it runs as root).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from mcp_gateway import lane_view_auth as auth
from support import ProcessGroup
from test_gateway import free_port, gateway_env, write_config
from test_lane_view import CONFIG, NAMESPACE, TOKEN, Served

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
        sim = group.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
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
        # A goal the lane manager cancels on its own (not its caller's cancel request) ends
        # ABORTED towards a ROS caller (rclpy lets a server end a goal CANCELED only after the
        # client asked); the lane state's ending says canceled, by lane_stop.
        stopped = (GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
        assert running.result(30)[0] in stopped
        assert queued.result(30)[0] in stopped
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
    read in one attempt, and try again if it went stale.
    """
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
    are shown when present; text from the lane state is text, never markup.
    """
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


@pytest.fixture
def served():
    app = Served(TOKEN)
    try:
        yield app
    finally:
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


def test_the_page_shows_stop_sources_and_goals_awaiting_approval():
    """The safety panels, from a whole lane state (the README's example, which the typed
    model checks): every stop source with why it holds the stop, and each goal awaiting an
    operator's approval in its lane.
    """
    import copy
    import json

    from test_lane_state import _readme_example
    state = copy.deepcopy(json.loads(_readme_example()))
    state['stamp'] = time.time()
    stop = state['emergency_stop']
    stop['active'] = True
    stop['sources'].append({
        'topic': '/pendant/estop', 'lanes': ['motion'], 'heartbeat_s': 0.5, 'required': True,
        'active': True, 'why': 'silent for 3 s (heartbeat_s=0.5)', 'last_value': False,
        'age_s': 3.0, 'publisher': '/pendant', 'latched_by': [], 'publishers': []})
    waiting = state['lanes']['motion']['awaiting_approval'][0]
    waiting['goal_id'] = 'abcdef12-0000-4000-8000-000000000001'
    app = Served('', can_stop=False)
    app.state = state
    driver = browser()
    try:
        driver.get(f'http://127.0.0.1:{app.port}/lanes')
        panel = visible_text(driver, '#estop')
        assert 'Emergency stop: ON' in panel, panel
        for text in ('/pendant/estop', 'silent for 3 s (heartbeat_s=0.5)', 'required',
                     '/emergency_stop', 'from /estop_cli'):
            assert text in panel, (text, panel)
        item = visible_text(driver, '.lane[data-lane="motion"] '
                                    f'[data-awaiting-goal-id="{waiting["goal_id"]}"]')
        assert 'dock' in item and 'abcdef12' in item, item
        severe = [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE']
        assert severe == [], severe
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)
        app.close()

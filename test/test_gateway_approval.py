"""Approval through MCP: a skill call whose goal awaits an operator's approval stays alive
with progress saying so, and ends as the operator decides with goal_approve / goal_deny
(operator tools). A recording driver of the tests' own (test/recording_driver.py, its own
process) is the judge of what reached the robot; the lane manager and the gateway (spawned
by the Python SDK's stdio client, as an MCP host does) are processes too.
"""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from recording_driver import read_records
from ros_client import RosTestClient
from support import ProcessGroup, wait_until
from test_gateway import (assert_error, body, conforming_answers,  # noqa: F401 (autouse)
                          stdio_gateway, write_config)

NAMESPACE = '/gw_approval_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      arm: {{policy: queue}}
    skills:
      grip: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /gwrec/grip,
             approval: operator, approval_timeout_s: 60}}
      move: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /gwrec/move}}
    lane_manager: {{namespace: {NAMESPACE}, driver_lost_s: 3.0}}
    gateway: {{operator_tools: true, progress_interval_s: 0.3, lane_manager_wait_s: 15.0}}
""")
AWAITING = re.compile(r'grip: awaiting approval \(goal ([0-9a-f-]{36}), (\d+) s left\)')


@pytest.fixture(scope='module')
def robot(tmp_path_factory, rclpy_context):
    directory = tmp_path_factory.mktemp('gw_approval')
    config_file = write_config(directory, CONFIG)
    record = directory / 'drivers.jsonl'
    group = ProcessGroup()
    client = None
    try:
        driver = group.start([sys.executable, 'test/recording_driver.py', '--record',
                              str(record), '--driver', '/gwrec/grip:arm:duration=0.3',
                              '--driver', '/gwrec/move:arm:duration=0.3'], name='gwa_rec')
        driver.wait_for_output('recording_driver ready')
        manager = group.python('lane_manager.node', '--config', str(config_file),
                               '--ros-args', '-r', '__node:=gw_approval_lane_manager',
                               name='gwa_lane_manager')
        manager.wait_for_output('lane_manager ready')
        client = RosTestClient(namespace=NAMESPACE)
        client.wait_for_skills('grip', 'move')
        client.wait_state(lambda s: s['lanes']['arm']['holder'] is None and all(
            d['status_known'] for d in s['lanes']['arm']['drivers'].values()), 20,
            what='lane arm free, its drivers known')
        yield config_file, record, client
    finally:
        if client is not None:
            client.close()
        group.stop_all()


def grip_ran(record: Path) -> list[str]:
    return [r['event'] for r in read_records([record]) if r['driver'] == '/gwrec/grip']


async def until_awaiting(progress: list[str]) -> str:
    """The goal id, once progress said the goal awaits approval."""
    with anyio.fail_after(30):
        while True:
            for message in progress:
                found = AWAITING.search(message)
                if found:
                    return found.group(1)
            await anyio.sleep(0.05)


def run_with_operator(config_file: Path, record: Path, decide: str) -> tuple:
    """Call grip and, once progress says it awaits approval, check the driver got nothing
    and decide it with `decide` (goal_approve / goal_deny) from a second session.
    """
    progress: list[str] = []
    outcome: dict = {}

    async def on_progress(value, total, message):
        progress.append(message or '')

    async def scenario():
        async with stdio_gateway(config_file) as agent, stdio_gateway(config_file) as operator:
            tools = {t.name: t for t in (await agent.list_tools()).tools}
            assert 'An operator must approve each goal' in tools['grip'].description
            assert tools['grip'].meta['skill_lanes/approval'] == 'operator'
            assert {'goal_approve', 'goal_deny'} <= set(tools)

            async def call():
                outcome['call'] = await agent.call_tool('grip', {'order': 3},
                                                        progress_callback=on_progress)
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                goal_id = await until_awaiting(progress)
                outcome['goal_id'] = goal_id
                # Several keep-alives while it waits; nothing reached the driver.
                with anyio.fail_after(30):
                    while sum(bool(AWAITING.search(m)) for m in progress) < 3:
                        await anyio.sleep(0.05)
                outcome['ran_while_waiting'] = grip_ran(record)
                status = body(await agent.call_tool('lanes_status', {}))
                outcome['waiting'] = status['lanes']['arm']['awaiting_approval']
                outcome['decision'] = await operator.call_tool(decide, {'goal_id': goal_id})
                outcome['again'] = await operator.call_tool(decide, {'goal_id': goal_id})
    anyio.run(scenario)
    return outcome, progress


def test_a_call_waits_with_progress_and_runs_after_goal_approve(robot):
    config_file, record, _ = robot
    outcome, progress = run_with_operator(config_file, record, 'goal_approve')
    goal_id = outcome['goal_id']
    assert outcome['ran_while_waiting'] == []
    assert [w['goal_id'] for w in outcome['waiting']] == [goal_id]
    assert outcome['waiting'][0]['state'] == 'awaiting_approval'
    decision = body(outcome['decision'])
    assert not outcome['decision'].is_error, decision
    assert decision['goal_id'] == goal_id and decision['decision'] == 'approved'
    assert decision['by'].endswith('(MCP)') and 'approved by' in decision['detail']
    again = assert_error(outcome['again'], 'not_awaiting_approval')
    assert 'already decided: approved' in again['message']
    answer = body(outcome['call'])
    assert not outcome['call'].is_error, answer
    assert answer['status'] == 'succeeded' and answer['goal_id'] == goal_id
    assert grip_ran(record) == ['start', 'end']
    assert any(m.startswith(f'grip: accepted (goal {goal_id}), awaiting approval by an '
                            'operator (up to 60 s') for m in progress), progress
    left = [int(AWAITING.search(m).group(2)) for m in progress if AWAITING.search(m)]
    assert all(0 < s <= 60 for s in left), left


def test_goal_deny_ends_the_call_aborted_and_the_driver_never_gets_it(robot):
    config_file, record, ros = robot
    before = grip_ran(record)
    outcome, _ = run_with_operator(config_file, record, 'goal_deny')
    decision = body(outcome['decision'])
    assert decision['decision'] == 'denied', decision
    failed = assert_error(outcome['call'], 'goal_aborted')
    assert failed['message'].startswith(f"denied by {decision['by']}"), failed
    assert failed['goal_id'] == outcome['goal_id'] and failed['result'] is None
    # Another goal of the lane runs to its end afterwards: nothing of grip was left to send.
    move = ros.send('move')
    assert move.accepted() and move.result(30)[0] == 4
    wait_until(lambda: [r['event'] for r in read_records([record])
                        if r['driver'] == '/gwrec/move'][-1:] == ['end'], 20, what='move ran')
    assert grip_ran(record) == before


def test_skill_start_shows_awaiting_approval_and_unknown_goals_are_refused(robot):
    config_file, record, _ = robot
    before = grip_ran(record)

    async def scenario():
        async with stdio_gateway(config_file) as client:
            started = body(await client.call_tool('skill_start', {
                'skill': 'grip', 'arguments': {'order': 1}}))
            goal_id = started['goal_id']
            with anyio.fail_after(30):
                while True:
                    status = body(await client.call_tool('skill_status', {'goal_id': goal_id}))
                    if status['state'] == 'awaiting_approval':
                        break
                    await anyio.sleep(0.05)
            unknown = await client.call_tool('goal_approve', {
                'goal_id': '00000000-0000-0000-0000-000000000000'})
            bad = await client.call_tool('goal_deny', {})
            denied = body(await client.call_tool('goal_deny', {'goal_id': goal_id}))
            with anyio.fail_after(30):
                while True:
                    status = body(await client.call_tool('skill_status', {'goal_id': goal_id}))
                    if status['state'] not in ('accepted', 'awaiting_approval'):
                        break
                    await anyio.sleep(0.05)
            return unknown, bad, denied, status
    unknown, bad, denied, status = anyio.run(scenario)
    assert 'no goal 00000000' in assert_error(unknown, 'not_awaiting_approval')['message']
    assert assert_error(bad, 'invalid_arguments')
    assert denied['decision'] == 'denied'
    assert status['state'] == 'aborted'
    assert status['result']['message'].startswith('denied by'), status
    assert grip_ran(record) == before


def test_lane_view_buttons_and_http_need_the_operator_token(robot):
    """Over HTTP, goal_approve is an operator tool like lane_take (header
    X-Skill-Lanes-Operator); the lane view's Approve button (POST
    /lanes/<lane>/goals/<goal_id>/approve) needs the same token.
    """
    import httpx2
    from test_gateway import free_port, gateway_env, http_client
    config_file, record, ros = robot
    before = grip_ran(record)
    group = ProcessGroup()
    port = free_port()
    try:
        proc = group.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'http', '--port', str(port),
                            env=gateway_env(SKILL_LANES_OPERATOR_TOKEN='op-secret'),
                            name='gwa_http_gateway')
        proc.wait_for_output('mcp_gateway ready on', timeout=60)
        base = f'http://127.0.0.1:{port}'
        grip = ros.send('grip')                      # a plain ROS client's goal
        assert grip.accepted()
        def listed() -> bool:
            state = httpx2.get(f'{base}/lanes/state', timeout=10).json()['state'] or {}
            waiting = state.get('lanes', {}).get('arm', {}).get('awaiting_approval') or []
            return [w['goal_id'] for w in waiting] == [grip.id]
        wait_until(listed, 20, what='the lane view to list the goal awaiting approval')
        url = f'{base}/lanes/arm/goals/{grip.id}/approve'
        button = {'Content-Type': 'application/json', 'X-Skill-Lanes': '1'}
        refused = httpx2.post(url, headers=button, content=b'{}', timeout=30)
        assert refused.status_code == 403 and refused.json()['error'] == 'operator_token'

        async def over_mcp():
            async with http_client(f'{base}/mcp') as client:
                return await client.call_tool('goal_approve', {'goal_id': grip.id})
        assert_error(anyio.run(over_mcp), 'unauthorized')
        assert grip_ran(record) == before            # still waiting, never sent
        pressed = httpx2.post(url, headers={**button, 'X-Skill-Lanes-Operator': 'op-secret'},
                              content=b'{}', timeout=30)
        assert pressed.status_code == 200, pressed.text
        answer = pressed.json()
        assert answer['ok'] is True and answer['decision'] == 'approved'
        assert answer['goal_id'] == grip.id and 'operator (lane view)' in answer['message']
        assert grip.result(30)[0] == 4
        assert grip_ran(record) == before + ['start', 'end']
        decision = ros.lane_state['lanes']['arm']['approvals'][-1]
        assert decision['goal_id'] == grip.id and decision['by'] == 'operator (lane view)'
    finally:
        group.stop_all()


def test_typescript_client_stays_alive_on_progress_until_approved(robot):
    """The TS SDK client (what Claude Desktop, Cursor... use) with a 0.8 s request timeout
    reset by progress: the call outlives it while awaiting approval, then succeeds after
    goal_approve; goal_deny ends another aborted; every answer passes the SDK's schema check.
    """
    import json
    import subprocess
    from support import PYTHON, ROOT
    from test_gateway import gateway_env
    from test_ts_client import _node_missing
    if _node_missing():
        pytest.skip(_node_missing())
    config_file, record, _ = robot
    before = grip_ran(record)
    options = {'command': PYTHON, 'cwd': str(ROOT), 'skill': 'grip', 'waitMs': 2500,
               'args': ['-m', 'mcp_gateway', '--config', str(config_file), '--transport',
                        'stdio']}
    done = subprocess.run(['node', str(ROOT / 'test' / 'ts_client' / 'approval.mjs'),
                           json.dumps(options)], cwd=str(ROOT), env=gateway_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'node exited {done.returncode}:\n{done.stderr[-4000:]}'
    steps = {r['step']: r for r in json.loads(done.stdout.strip().splitlines()[-1])}
    for name, step in steps.items():
        assert 'thrown' not in step, (name, step)
    tools = {t['name']: t for t in steps['list_tools']['tools']}
    assert tools['goal_approve']['hasOutputSchema'] and tools['goal_deny']['hasOutputSchema']
    assert 'An operator must approve' in tools['grip']['description']

    approved = steps['approved']
    assert approved['waitedMs'] >= 2500  # three times the request timeout, kept alive
    assert sum('awaiting approval' in m for m in approved['messages']) >= 3
    assert approved['decision']['structured']['decision'] == 'approved'
    assert approved['decision']['structured']['by'] == "operator 'skill-lanes-ts-operator' (MCP)"
    assert approved['call']['structured']['status'] == 'succeeded'
    assert approved['call']['structured']['goal_id'] == approved['goalId']

    denied = steps['denied']
    assert denied['decision']['structured']['decision'] == 'denied'
    ended = denied['call']
    assert ended['isError'] and ended['structured']['status'] == 'aborted'
    assert ended['structured']['message'].startswith(
        "denied by operator 'skill-lanes-ts-operator' (MCP)"), ended

    job = steps['job']
    assert job['waiting']['structured']['state'] == 'awaiting_approval', job
    assert job['denied']['structured']['decision'] == 'denied'
    assert job['again']['isError']
    assert job['again']['structured']['error'] == 'not_awaiting_approval'
    assert grip_ran(record) == before + ['start', 'end']  # only the approved one ran

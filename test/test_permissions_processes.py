"""Which agent may do what, on real processes: an HTTP gateway with named tokens
(gateway.clients), a stdio gateway with gateway.skills, a lane manager and simulated drivers.

- Two official TypeScript SDK clients (test/ts_client/permissions.mjs), each with its own
  token, list only their own tools and are refused (`forbidden`, naming client and skill,
  conforming to the outputSchema the SDK checks) a call of the other's skill, skill_start of
  it, lane_stop of its lane and skill_cancel of its job; no token or a wrong one gets 401.
- The goal each sent is attributed to its client's name in the lane manager's lane state.
- An operator client lists and uses lane_take at the real lane manager; others do not see it.
- The lane view: each named token sees the stop buttons of its own lanes only.
- A stdio gateway offers only the skills of its gateway.skills (Python SDK client).
"""
from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest

from support import PYTHON, ROOT, ProcessGroup, sim_robot_client, wait_until
from test_gateway import (assert_error, body, free_port, gateway_env, http_client, run,
                          write_config)
from mcp import Client, StdioServerParameters

NAMESPACE = '/perms_lm'
TOKENS = {'PERMS_ALICE_TOKEN': 'alice-secret-1', 'PERMS_BOB_TOKEN': 'bob-secret-2',
          'PERMS_CAROL_TOKEN': 'carol-secret-3', 'PERMS_OPERATOR_TOKEN': 'operator-secret'}
ROBOT = textwrap.dedent(f"""
    lanes:
      base: {{policy: queue}}
      arm:  {{policy: queue}}
    skills:
      navigate: {{lane: base, action_type: test_msgs/action/Fibonacci, driver: /permsim/navigate}}
      patrol:   {{lane: base, action_type: test_msgs/action/Fibonacci, driver: /permsim/patrol}}
      grasp:    {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /permsim/grasp}}
      arm_move: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /permsim/arm_move}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0}}
    sim:
      default: {{duration_s: 0.3, feedback_hz: 10}}
      skills:
        patrol:   {{duration_s: 60.0, feedback_hz: 2}}
        arm_move: {{duration_s: 60.0, feedback_hz: 2}}
""")
GATEWAY = textwrap.dedent("""
    gateway:
      operator_tools: true
      operator_token_env: PERMS_OPERATOR_TOKEN
      progress_interval_s: 0.5
      clients:
        alice: {token_env: PERMS_ALICE_TOKEN, skills: [navigate, patrol]}
        bob:   {token_env: PERMS_BOB_TOKEN, skills: [grasp, 'arm_*']}
        carol: {token_env: PERMS_CAROL_TOKEN, skills: [], operator: true}
        dave:  {token_env: PERMS_DAVE_TOKEN}
""")
STDIO_GATEWAY = "gateway: {skills: [navigate, 'arm_*']}\n"
GENERIC = ['lane_release', 'lane_stop', 'lanes_status', 'skill_cancel', 'skill_start',
           'skill_status']
SDK = ROOT / 'node_modules' / '@modelcontextprotocol' / 'sdk' / 'package.json'


def _node_missing() -> str:
    if shutil.which('node') is None:
        return 'node is not installed (the TypeScript SDK client needs node >= 18)'
    if not SDK.exists():
        return '@modelcontextprotocol/sdk is not installed: run `npm ci` (make test does)'
    return ''


@pytest.fixture(scope='module')
def robot(tmp_path_factory, rclpy_context):
    directory = tmp_path_factory.mktemp('perms')
    http_config = write_config(directory, ROBOT + GATEWAY, 'http.yaml')
    stdio_config = write_config(directory, ROBOT + STDIO_GATEWAY, 'stdio.yaml')
    group = ProcessGroup()
    with sim_robot_client(http_config, NAMESPACE, 'perms_lane_manager',
                          ('navigate', 'patrol', 'grasp', 'arm_move'), 'arm', group=group,
                          all_lanes_free=True) as ros:
        port = free_port()
        gateway = group.python('mcp_gateway', '--config', str(http_config), '--transport',
                               'http', '--port', str(port),
                               env=gateway_env(**TOKENS, PERMS_DAVE_TOKEN=None),
                               name='perms_http_gateway')
        gateway.wait_for_output('mcp_gateway ready on', timeout=60)
        yield {'ros': ros, 'gateway': gateway, 'url': f'http://127.0.0.1:{port}',
               'stdio_config': stdio_config, 'directory': directory}


def wait_lanes_free(ros) -> None:
    ros.wait_state(lambda s: all(lane['holder'] is None and not lane['queue']
                                 for lane in s['lanes'].values()), 30, what='every lane free')


# ------------------------------------------------------------------------------ TypeScript
@pytest.mark.skipif(bool(_node_missing()), reason=_node_missing() or 'ok')
def test_two_typescript_clients_each_see_and_use_only_their_skills(robot):
    ros, gateway = robot['ros'], robot['gateway']
    options = {'url': robot['url'] + '/mcp', 'clients': {
        # alice's software calls itself "bob" in initialize: identity is the token's.
        'alice': {'token': TOKENS['PERMS_ALICE_TOKEN'], 'software': 'bob', 'own': 'navigate',
                  'other': 'grasp', 'otherLane': 'arm'},
        'bob': {'token': TOKENS['PERMS_BOB_TOKEN'], 'software': 'ts-bob', 'own': 'grasp',
                'other': 'navigate', 'otherLane': 'base'}},
        'jobSkill': {'alice': 'patrol', 'bob': 'arm_move'}}
    before = ros.wait_stats(lambda s: 'drivers' in s)['drivers']
    done = subprocess.run(['node', str(ROOT / 'test' / 'ts_client' / 'permissions.mjs'),
                           json.dumps(options)], cwd=str(ROOT), env=gateway_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'node exited {done.returncode}:\n{done.stderr[-4000:]}'
    out = json.loads(done.stdout.strip().splitlines()[-1])

    expected = {'alice': (['navigate', 'patrol'], ['base'], 'grasp', 'arm'),
                'bob': (['arm_move', 'grasp'], ['arm'], 'navigate', 'base')}
    for name, (skills, lanes, other, other_lane) in expected.items():
        steps = out[name]
        for step, record in steps.items():
            assert 'thrown' not in record, (name, step, record)  # every answer conforms
        listed = steps['list_tools']
        assert listed['tools'] == sorted(skills + GENERIC), (name, listed)
        assert listed['skillEnum'] == skills and listed['laneEnum'] == lanes, listed
        own = steps['own_skill']
        assert not own['isError'] and own['structured']['status'] == 'succeeded', own
        for step in ('other_skill', 'skill_start_other', 'cancel_other_job'):
            refused = steps[step]
            assert refused['isError'] and refused['structured']['error'] == 'forbidden', refused
            assert refused['structured']['data']['client'] == name
        assert steps['other_skill']['structured']['message'].startswith(
            f"client '{name}' may not use skill '{other}'")
        assert steps['skill_start_other']['structured']['data']['skill'] == other
        stop = steps['lane_stop_other']
        assert stop['isError'] and stop['structured']['error'] == 'forbidden', stop
        assert stop['structured']['data']['lane'] == other_lane
        assert not steps['job_started']['isError'], steps['job_started']
        assert steps['cancel_own_job']['structured']['state'] == 'canceled', steps
    for step in ('no_token', 'wrong_token'):
        assert out[''][step]['thrown']['code'] == 401, out['']

    # Each goal is attributed to its client's name in the lane manager's lane state.
    state = ros.wait_state(lambda s: all(
        any((e.get('agent') or {}).get('client') == who for e in s['lanes'][lane]
            ['last_endings']) for lane, who in (('base', 'alice'), ('arm', 'bob'))),
        20, what='the endings attributed to alice and bob')
    for lane, who, software in (('base', 'alice', 'bob'), ('arm', 'bob', 'ts-bob')):
        agents = [e['agent'] for e in state['lanes'][lane]['last_endings'] if e.get('agent')]
        assert {a['client'] for a in agents} == {who}, agents  # never the other one
        assert all(a['authenticated'] and a['software'] == software for a in agents), agents
        ending = next(e for e in state['lanes'][lane]['last_endings'] if e.get('agent'))
        assert ending['asked_by'].startswith(f'agent {who} ({software} 3.1.4, session ')
    # At the drivers: each skill's goals are its own client's (one call, one job each);
    # none of the forbidden calls reached a driver.
    wait_lanes_free(ros)
    stats = ros.wait_stats(lambda s: all(d['active'] == 0 for d in s['drivers'].values()),
                           20, what='the drivers idle')['drivers']
    assert {skill: stats[skill]['goals'] - before[skill]['goals'] for skill in stats} == {
        'navigate': 1, 'grasp': 1, 'patrol': 1, 'arm_move': 1}, stats
    output = gateway.output()
    assert 'gateway.clients.dave: PERMS_DAVE_TOKEN is not set: this client cannot connect' \
        in output, output[-3000:]
    assert "forbidden: client 'alice' called grasp" in output, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]


# ------------------------------------------------------------------------------ Python SDK
def bearer(token_env: str, **extra: str) -> dict:
    return {'Authorization': f'Bearer {TOKENS[token_env]}', **extra}


def test_the_operator_client_takes_a_lane_the_others_do_not_see_the_tool(robot):
    ros, url = robot['ros'], robot['url'] + '/mcp'

    async def scenario():
        async with http_client(url, bearer('PERMS_CAROL_TOKEN')) as carol, \
                http_client(url, bearer('PERMS_ALICE_TOKEN')) as alice, \
                http_client(url, bearer('PERMS_ALICE_TOKEN', **{
                    'X-Skill-Lanes-Operator': TOKENS['PERMS_OPERATOR_TOKEN']})) as alice_op:
            carol_tools = sorted(t.name for t in (await carol.list_tools()).tools)
            alice_tools = sorted(t.name for t in (await alice.list_tools()).tools)
            alice_op_tools = sorted(t.name for t in (await alice_op.list_tools()).tools)
            refused = await alice.call_tool('lane_take', {'lane': 'arm'})
            # A gateway just started may not have discovered the take service yet: the
            # answer then says so (a retryable error); ask until the lane manager answers.
            with anyio.fail_after(30):
                while True:
                    taken = await carol.call_tool('lane_take', {'lane': 'arm'})
                    if not taken.is_error or body(taken)['error'] not in (
                            'unsupported', 'lane_manager_unavailable'):
                        break
                    await anyio.sleep(0.1)
            state = await anyio_to_thread(lambda: ros.wait_state(
                lambda s: 'operator' in s['lanes']['arm']['blocked_by'], 20, what='arm taken'))
            given = await carol.call_tool('lane_give_back', {'lane': 'arm'})
            skill = await carol.call_tool('grasp', {'order': 1})
            unknown = await alice.call_tool('teleport', {})
            return (carol_tools, alice_tools, alice_op_tools, refused, taken, state, given,
                    skill, unknown)
    (carol_tools, alice_tools, alice_op_tools, refused, taken, state, given, skill,
     unknown) = run(scenario)
    # A name that is no tool at all is unknown_tool, listing only what alice may see.
    assert assert_error(unknown, 'unknown_tool')['data']['known'] == sorted(
        ['navigate', 'patrol'] + GENERIC)
    assert carol_tools == ['goal_approve', 'goal_deny', 'lane_give_back', 'lane_release',
                           'lane_stop', 'lane_take', 'lanes_status'], carol_tools
    assert 'goal_approve' not in alice_tools
    assert 'lane_take' not in alice_tools
    assert 'lane_take' in alice_op_tools  # the operator header works as before
    assert 'missing or wrong' in assert_error(refused, 'unauthorized')['message']
    assert not taken.is_error and body(taken)['taken'] is True, body(taken)
    assert not given.is_error, body(given)
    assert "client 'carol' may not use skill 'grasp'" in assert_error(skill, 'forbidden')[
        'message']
    ros.wait_state(lambda s: 'operator' not in s['lanes']['arm']['blocked_by'], 20,
                   what='arm given back')


async def anyio_to_thread(function):
    return await anyio.to_thread.run_sync(function)


# ------------------------------------------------------------------------------ lane view
def view(url: str, path: str, token: str = '', method: str = 'GET') -> tuple[int, dict]:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    if method == 'POST':
        headers.update({'X-Skill-Lanes': '1', 'Content-Type': 'application/json'})
    request = urllib.request.Request(url + path, method=method, headers=headers,
                                     data=b'{}' if method == 'POST' else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b'{}')


def test_the_lane_view_offers_each_client_the_stop_buttons_of_its_lanes(robot):
    url = robot['url']
    alice, carol = TOKENS['PERMS_ALICE_TOKEN'], TOKENS['PERMS_CAROL_TOKEN']
    assert view(url, '/lanes/state')[0] == 401
    assert view(url, '/lanes/state', 'not-a-token')[0] == 401
    status, answer = view(url, '/lanes/state', alice)
    assert status == 200 and answer['view']['client'] == 'alice', answer
    assert answer['view']['stop_lanes'] == ['base']
    assert view(url, '/lanes/state', carol)[1]['view']['stop_lanes'] == ['arm', 'base']
    status, answer = view(url, '/lanes/arm/stop', alice, 'POST')
    assert status == 403 and answer['error'] == 'forbidden', answer
    assert "client 'alice' may not stop lane 'arm'" in answer['message']
    # A browser: the token given once becomes a cookie naming the same client.
    connection = http.client.HTTPConnection(url.removeprefix('http://'), timeout=30)
    connection.request('GET', f'/lanes?token={alice}')
    response = connection.getresponse()
    response.read()
    assert response.status == 303, response.status
    cookie = response.getheader('set-cookie').split(';')[0]
    assert alice not in cookie
    connection.request('GET', '/lanes/state', headers={'Cookie': cookie})
    response = connection.getresponse()
    assert json.loads(response.read())['view']['stop_lanes'] == ['base']
    connection.close()
    # Allowed: a stop of an idle lane (repeated until the gateway has discovered the lane
    # manager's stop service: a just-started gateway may not have yet).
    for token, lane in ((alice, 'base'), (carol, 'arm')):
        wait_until(lambda: view(url, f'/lanes/{lane}/stop', token, 'POST')[0] == 200, 30,
                   what=f'the stop of lane {lane} to be answered')


# ------------------------------------------------------------------------------ stdio, start-up
def test_a_stdio_gateway_offers_only_its_gateway_skills(robot):
    client = Client(StdioServerParameters(
        command=PYTHON, args=['-m', 'mcp_gateway', '--config', str(robot['stdio_config']),
                              '--transport', 'stdio'], env=gateway_env(), cwd=str(ROOT)))

    published = ToolLanesListener()

    async def scenario():
        async with client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            refused = await client.call_tool('grasp', {'order': 1})
            start = await client.call_tool('skill_start', {'skill': 'patrol'})
            allowed = await client.call_tool('navigate', {'order': 1})
            # What it tells ROS it serves (/skill_lanes/tool_lanes): the same skills.
            await anyio_to_thread(lambda: wait_until(
                lambda: published.of('stdio'), 20, what='the stdio gateway on tool_lanes'))
            return tools, refused, start, allowed
    try:
        tools, refused, start, allowed = run(scenario)
    finally:
        published.close()
    assert sorted(t['tool'] for t in published.of('stdio')['tools']) == ['arm_move', 'navigate']
    assert sorted(set(tools) - set(GENERIC)) == ['arm_move', 'navigate'], sorted(tools)
    assert tools['skill_start'].input_schema['properties']['skill']['enum'] == [
        'arm_move', 'navigate']
    answer = assert_error(refused, 'forbidden')
    assert answer['message'] == ("this gateway does not offer skill 'grasp' (gateway.skills: "
                                 'arm_move, navigate)')
    assert assert_error(start, 'forbidden')['data']['skill'] == 'patrol'
    assert not allowed.is_error and body(allowed)['status'] == 'succeeded'


class ToolLanesListener:
    """The gateways' /skill_lanes/tool_lanes messages (transient local), by transport."""

    def __init__(self) -> None:
        from rclpy.node import Node
        from std_msgs.msg import String

        from skill_lanes.interfaces import LANE_STATE_QOS
        from skill_lanes.runtime import BackgroundExecutor
        self.seen: dict[str, dict] = {}
        self.node = Node('perms_tool_lanes_listener')
        self.node.create_subscription(String, '/skill_lanes/tool_lanes', self._on, LANE_STATE_QOS)
        self.executor = BackgroundExecutor(self.node)

    def _on(self, msg) -> None:
        body = json.loads(msg.data)
        self.seen[body['transport']] = body

    def of(self, transport: str):
        return self.seen.get(transport)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def test_named_clients_serve_a_public_bind_without_the_single_token(robot):
    """Beyond loopback a token is required: named clients' tokens are that token."""
    config = write_config(Path(robot['directory']), ROBOT + GATEWAY, 'public.yaml')
    group = ProcessGroup()
    port = free_port()
    try:
        proc = group.python('mcp_gateway', '--config', str(config), '--transport', 'http',
                            '--host', '127.0.0.2', '--port', str(port),
                            env=gateway_env(**TOKENS, PERMS_DAVE_TOKEN=None),
                            name='perms_public_gateway')
        proc.wait_for_output(f'mcp_gateway ready on http://127.0.0.2:{port}/mcp', timeout=60)
        url = f'http://127.0.0.2:{port}/mcp'

        async def scenario():
            async with http_client(url, bearer('PERMS_BOB_TOKEN')) as bob:
                return sorted(t.name for t in (await bob.list_tools()).tools)
        assert run(scenario) == sorted(['arm_move', 'grasp'] + GENERIC)
        assert view(f'http://127.0.0.2:{port}', '/lanes/state')[0] == 401
        assert 'Traceback' not in proc.output()
    finally:
        group.stop_all()


@pytest.mark.parametrize('env, expected', [
    ({}, 'no client of gateway.clients has its token set'),
    ({'PERMS_ALICE_TOKEN': 'same', 'PERMS_BOB_TOKEN': 'same'},
     "clients 'alice' and 'bob' have the same token"),
])
def test_a_gateway_whose_clients_cannot_be_told_apart_refuses_to_start(robot, env, expected):
    config = write_config(Path(robot['directory']), ROBOT + GATEWAY, 'refuse.yaml')
    group = ProcessGroup()
    try:
        unset = {name: None for name in TOKENS} | {'PERMS_DAVE_TOKEN': None}
        proc = group.python('mcp_gateway', '--config', str(config), '--transport', 'http',
                            '--port', str(free_port()), env=gateway_env(**{**unset, **env}),
                            name='perms_refusing_gateway')
        wait_until(lambda: proc.popen.poll() is not None, 60, what='the gateway to exit')
        assert proc.popen.returncode == 2, proc.output()[-2000:]
        assert f'mcp_gateway: {expected}' in proc.output(), proc.output()[-2000:]
        assert 'Traceback' not in proc.output()
    finally:
        group.stop_all()

"""The official TypeScript SDK client (pinned in package.json) against real gateway processes.

Claude Desktop, Claude Code, Cursor and the MCP Inspector are built on this client. Unlike the
Python SDKs it validates every structuredContent against the tool's outputSchema, error results
included, and throws on a mismatch: so every answer shape (success, busy, invalid arguments,
aborted, canceled by lane_stop, job handles, lane_release, unknown tool) is driven through it,
over stdio (the client spawns the gateway) and streamable HTTP, against a real lane manager and
simulated driver. Effects are checked at the driver (`/sim_driver/stats`).

Skips with the reason when node or the installed SDK (`npm ci`) is missing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ros_client import RosTestClient
from support import PYTHON, ROOT, ProcessGroup, sim_robot_client
from test_gateway import free_port, gateway_env, write_config

NAMESPACE = '/ts_test_lm'
SCENARIOS = ROOT / 'test' / 'ts_client' / 'scenarios.mjs'
SDK = ROOT / 'node_modules' / '@modelcontextprotocol' / 'sdk' / 'package.json'
CONFIG = textwrap.dedent(f"""
    lanes:
      motion:       {{policy: queue, max_queue: 4}}
      manipulation: {{policy: reject, retry_after_ms: 700}}
      arm:          {{policy: queue}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /tssim/navigate,
                 description: Drive to a goal}}
      patrol:   {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /tssim/patrol}}
      grasp:    {{lane: manipulation, action_type: test_msgs/action/Fibonacci,
                 driver: /tssim/grasp}}
      arm_move: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /tssim/arm_move}}
      arm_home: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /tssim/arm_home}}
      fail:     {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /tssim/fail}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0, driver_lost_s: 1.5}}
    gateway: {{lane_manager_wait_s: 10.0, progress_interval_s: 0.25, refusal_wait_s: 3.0}}
    sim:
      default: {{duration_s: 0.5, feedback_hz: 10}}
      skills:
        patrol:   {{duration_s: 60.0, feedback_hz: 2}}
        arm_move: {{duration_s: 60.0, feedback_hz: 2}}
        grasp:    {{duration_s: 2.0, feedback_hz: 5}}
        arm_home: {{duration_s: 0.3}}
        fail:     {{duration_s: 0.3, outcome: abort}}
""")


def _node_missing() -> str:
    if shutil.which('node') is None:
        return 'node is not installed (the TypeScript SDK client needs node >= 18)'
    if not SDK.exists():
        return ('@modelcontextprotocol/sdk is not installed: run `npm ci` in the repository '
                '(make test does)')
    return ''


pytestmark = pytest.mark.skipif(bool(_node_missing()), reason=_node_missing() or 'ok')


@pytest.fixture(scope='module')
def config_file(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp('ts_cfg'), CONFIG)


@pytest.fixture(scope='module')
def stack(config_file, rclpy_context):
    with sim_robot_client(config_file, NAMESPACE, 'ts_test_lane_manager',
                          ('navigate', 'grasp', 'arm_move'), 'arm') as client:
        yield client


def run_scenarios(options: dict) -> dict[str, dict]:
    """Run scenarios.mjs; return its records by step name."""
    done = subprocess.run(['node', str(SCENARIOS), json.dumps(options)], cwd=str(ROOT),
                          env=gateway_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'node exited {done.returncode}:\n{done.stderr[-4000:]}'
    records = json.loads(done.stdout.strip().splitlines()[-1])
    return {record['step']: record for record in records}


def check_records(steps: dict[str, dict], stack: RosTestClient) -> None:
    """What every transport must show (nothing thrown for a schema mismatch)."""
    for name, record in steps.items():
        if name in ('resource_unknown', 'abort_controller'):
            continue
        assert 'thrown' not in record, (name, record)

    tools = {t['name']: t for t in steps['list_tools']['tools']}
    assert all(t['hasOutputSchema'] for t in tools.values()), tools

    success = steps['success']
    assert not success['isError'] and success['structured']['status'] == 'succeeded'
    assert success['structured']['result'] == {'sequence': []}
    assert success['progress'] == sorted(success['progress']) and success['progress']

    reset = steps['progress_resets_timeout']
    assert not reset['isError'] and reset['structured']['status'] == 'succeeded', reset
    assert reset['progress'] >= 3

    busy = steps['busy']
    assert busy['first']['structured']['status'] == 'succeeded'
    refused = busy['second']['structured']
    assert busy['second']['isError'] and refused['error'] == 'operation_busy', busy
    assert refused['hint'] == 'retry' and refused['data']['retry_after_ms'] == 700

    for name, field in (('invalid_arguments', 'order'), ('unknown_field', 'bogus')):
        record = steps[name]
        assert record['isError'] and record['structured']['error'] == 'invalid_arguments'
        assert record['structured']['data']['field'] == field

    aborted = steps['aborted']
    assert aborted['isError'] and aborted['structured']['status'] == 'aborted', aborted
    assert aborted['structured']['error'] == 'goal_aborted'

    stop = steps['lane_stop']
    assert not stop['stop']['isError'] and stop['stop']['structured']['stopped'] is True
    stopped = stop['stopped']['structured']
    assert stopped['status'] in ('canceled', 'aborted'), stopped
    assert 'lane_stop' in stopped['message'], stopped

    aborted_call = steps['abort_controller']
    assert aborted_call['acceptedMessage'] and aborted_call['aborted'] is True, aborted_call

    jobs = steps['jobs']
    assert jobs['started']['structured']['state'] in ('sending', 'accepted')
    assert jobs['status']['structured']['state'] == 'succeeded', jobs
    assert jobs['status']['structured']['result']['status'] == 'succeeded'
    assert jobs['unknown']['isError'] and jobs['unknown']['structured']['error'] == 'unknown_goal'

    assert set(steps['lanes_status']['structured']['lanes']) == {'motion', 'manipulation', 'arm'}
    release = steps['lane_release']['structured']
    assert release.get('released') is not None or release['success'] is False, release

    assert steps['unknown_tool']['structured']['error'] == 'unknown_tool'
    assert steps['resource_unknown']['thrown']['code'] == -32002
    assert set(steps['resource_lane_state']['lanes']) == {'motion', 'manipulation', 'arm'}
    schema = steps['resource_lane_state_schema']
    assert [r['uri'] for r in schema['listed']] == ['skill-lanes://lane-state',
                                                    'skill-lanes://lane-state/schema'], schema
    assert schema['pointer'] == 'skill-lanes://lane-state/schema'
    assert schema['schemaMimeType'] == 'application/schema+json'
    assert schema['conforms'] is True, schema['errors']


def test_typescript_client_over_stdio(stack, config_file):
    canceled = stack.wait_stats(lambda s: 'arm' in s['lanes'])['lanes']['arm']['canceled']
    steps = run_scenarios({
        'transport': 'stdio', 'command': PYTHON, 'cwd': str(ROOT),
        'args': ['-m', 'mcp_gateway', '--config', str(config_file), '--transport', 'stdio']})
    check_records(steps, stack)
    # The AbortController's cancel reached the driver: arm_move was cancelled there.
    stack.wait_stats(lambda s: s['lanes']['arm']['canceled'] >= canceled + 1, 20,
                     what='the driver to see the aborted call cancelled')
    stack.wait_stats(lambda s: s['lanes']['arm']['active'] == 0, 20, what='arm lane idle')


def test_typescript_client_over_http(stack, config_file):
    group = ProcessGroup()
    port = free_port()
    try:
        proc = group.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'http', '--port', str(port), env=gateway_env(),
                            name='ts_http_gateway')
        proc.wait_for_output(f'mcp_gateway ready on http://127.0.0.1:{port}/mcp', timeout=60)
        canceled = stack.sim_stats['lanes']['arm']['canceled']
        steps = run_scenarios({'transport': 'http', 'url': f'http://127.0.0.1:{port}/mcp'})
        check_records(steps, stack)
        stack.wait_stats(lambda s: s['lanes']['arm']['canceled'] >= canceled + 1, 20,
                         what='the driver to see the aborted call cancelled')
        assert 'Traceback' not in proc.output(), proc.output()[-3000:]
    finally:
        group.stop_all()

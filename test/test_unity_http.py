"""HTTP mode (the Editor's default) against the REAL official server, `mcpforunityserver`.

The server runs from `.venv-unity` (`make unity-venv`; it pins mcp 1.x, we use 2.x) as its
own process, as it does next to a real Editor. A fake Editor plugin process
(test/fake_unity_plugin.py) dials its WebSocket hub like the Editor's plugin. Several real
gateway processes reach that Editor only through the server's MCP endpoint.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import pytest
import yaml
from mcp import Client, StdioServerParameters

from mcp_gateway.unity.answers import OUTPUT_SCHEMAS
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.tools import UnityTools
from support import PYTHON, ROOT

UNITY_VENV = ROOT / '.venv-unity'
SERVER = UNITY_VENV / 'bin' / 'mcp-for-unity'
UNITY_PYTHON = UNITY_VENV / 'bin' / 'python'

pytestmark = pytest.mark.skipif(
    not SERVER.exists(), reason='the official MCP for Unity server is not installed: make '
    'unity-venv (make test does it)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def start_server(processes, tmp_path: Path) -> str:
    """The official server in HTTP mode; its MCP URL. PYTEST_CURRENT_TEST is removed from
    its environment: the server turns its own readiness checks off when it sees it.
    """
    port = free_port()
    server = processes.start(
        ['env', '-u', 'PYTEST_CURRENT_TEST', str(SERVER), '--transport', 'http',
         '--http-url', f'http://127.0.0.1:{port}'],
        env={'HOME': str(tmp_path), 'UNITY_MCP_DISABLE_TELEMETRY': '1',
             'UNITY_MCP_DISABLE_FOCUS_NUDGE': '1'}, name='unity_server')
    server.wait_for_output('Uvicorn running', timeout=60)
    return f'http://127.0.0.1:{port}/mcp'


def start_plugin(processes, tmp_path: Path, url: str, *options: str) -> tuple[str, Path]:
    record = tmp_path / 'plugin-record.json'
    hub = url.replace('http://', 'ws://').replace('/mcp', '/hub/plugin')
    plugin = processes.start(
        [str(UNITY_PYTHON), str(ROOT / 'test' / 'fake_unity_plugin.py'), '--hub', hub,
         '--project-name', 'Shared', '--record', str(record), *options], name='fake_plugin')
    plugin.wait_for_output('FAKE_UNITY_PLUGIN_READY', timeout=30)
    return re.search(r'instance=(\S+)', plugin.output()).group(1), record


def gateway(tmp_path: Path, url: str) -> Client:
    """A real gateway process (stdio) whose Unity tools use the official server."""
    config_file = tmp_path / 'unity_http_gateway.yaml'
    if not config_file.exists():
        config_file.write_text(yaml.safe_dump({'unity': {
            'enabled': True, 'transport': 'http', 'server_url': url,
            'lease_dir': str(tmp_path / 'leases'), 'lease_ttl_s': 3.0,
            'ready_wait_s': 30.0, 'test_poll_s': 0.1, 'compile_grace_s': 3.0}}))
    env = {key: value for key, value in os.environ.items()
           if key.startswith(('ROS_', 'RMW_', 'FASTDDS_', 'SKILL_LANES_TEST'))}
    env.update({'PYTHONPATH': str(ROOT), 'HOME': str(tmp_path), 'PYTHONUNBUFFERED': '1'})
    return Client(StdioServerParameters(
        command=PYTHON, args=['-m', 'mcp_gateway', '--config', str(config_file),
                              '--transport', 'stdio'], cwd=str(ROOT), env=env), mode='legacy')


def body(result: types.CallToolResult, tool: str) -> dict[str, Any]:
    """The answer, checked against the tool's outputSchema (errors included)."""
    assert result.structured_content is not None, result
    jsonschema.validate(result.structured_content, OUTPUT_SCHEMAS[tool])
    return result.structured_content


def test_gateways_through_the_official_server_never_overlap(processes, tmp_path: Path) -> None:
    url = start_server(processes, tmp_path)
    instance_id, record = start_plugin(processes, tmp_path, url, '--tests', '3', '--failing',
                                       '1', '--test-duration', '0.08', '--reload-duration',
                                       '0.4', '--compile-delay', '0.5')
    outcomes: dict[str, list[Any]] = {'refresh': [], 'tests': [], 'busy': [], 'other': []}

    async def agent(index: int, seconds: float) -> None:
        async with gateway(tmp_path, url) as client:
            end = time.monotonic() + seconds
            turn = index
            # Go on past `seconds` (bounded) until a refresh and a test run have got through.
            while time.monotonic() < end or not (outcomes['refresh'] and outcomes['tests']):
                assert time.monotonic() < end + 60, f'nothing got through: {outcomes}'
                turn += 1
                if turn % 2:
                    name, arguments = 'unity_run_tests', {}
                else:
                    name, arguments = 'unity_refresh', {'compile': 'request'}
                result = await client.call_tool(name, arguments)
                answer = body(result, name)
                if not result.is_error or answer.get('error') == 'tests_failed':
                    outcomes['tests' if name == 'unity_run_tests' else 'refresh'].append(answer)
                elif answer['error'] == 'operation_busy':
                    assert answer['data']['instance_id'] == instance_id
                    outcomes['busy'].append(answer)
                    await anyio.sleep(min(answer['data']['retry_after_ms'], 200) / 1000)
                else:
                    outcomes['other'].append(answer)

    async def scenario() -> None:
        async with gateway(tmp_path, url) as client:
            listed = body(await client.call_tool('unity_instances', {}), 'unity_instances')
            assert [item['instance_id'] for item in listed['instances']] == [instance_id]
            assert listed['instances'][0]['transport'] == 'http'
        async with anyio.create_task_group() as group:
            for index in range(3):
                group.start_soon(agent, index, 8.0)
    anyio.run(scenario)

    counters = json.loads(record.read_text())
    # Compile and reload included: the Editor never ran two operations at once.
    assert counters['overlaps'] == 0 and counters['active'] == 0, counters
    assert outcomes['other'] == [], outcomes['other']
    assert outcomes['refresh'] and outcomes['tests'] and outcomes['busy']
    assert all(answer['reload_observed'] for answer in outcomes['refresh'])
    for run in outcomes['tests']:
        assert run['transport'] == 'http' and run['status'] == 'failed'
        assert run['summary']['failed'] == 1
        assert run['failures'][0]['message'] == 'Expected 1 but was 2'


def test_no_server_and_no_editor_say_exactly_what_to_set(tmp_path: Path) -> None:
    config = UnityConfig(enabled=True, transport='auto',
                         server_url=f'http://127.0.0.1:{free_port()}/mcp',
                         status_dir=str(tmp_path / 'status'), lease_dir=str(tmp_path / 'l'))
    tools = UnityTools(config, 'gw')

    async def call() -> types.CallToolResult:
        return await tools.call('unity_refresh', {}, _ignore)
    result = anyio.run(call)
    answer = body(result, 'unity_refresh')
    assert result.is_error and answer['error'] == 'unity_unavailable'
    for needed in ('MCP for Unity', 'stdio', 'unity.port', 'mcp-for-unity --transport http',
                   'unity.server_url', str(tmp_path / 'status')):
        assert needed in answer['message'], (needed, answer['message'])


async def _ignore(*_: Any) -> None:
    pass

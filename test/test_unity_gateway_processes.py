"""Several real gateway processes, one fake Editor process: one Editor operation at a time.

Each gateway is its own OS process speaking MCP over stdio, as one agent's gateway would: the
real `python -m mcp_gateway --transport stdio`, with a config file that enables the
Unity tools and has no skills. The fake Editor is a separate process too
(test/fake_unity_editor.py) that counts overlapping operations in its record file.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import yaml
from mcp import Client, StdioServerParameters

from mcp_gateway.unity.lease import LeaseManager
from support import PYTHON, ROOT, wait_until


def start_editor(processes, tmp_path: Path, *options: str):
    record = tmp_path / 'editor-record.json'
    editor = processes.start(
        [PYTHON, str(ROOT / 'test' / 'fake_unity_editor.py'), '--status-dir',
         str(tmp_path / 'status'), '--project-name', 'Shared', '--record', str(record),
         '--status-interval', '0.1', *options], name='fake_unity')
    editor.wait_for_output('FAKE_UNITY_READY')
    instance_id = re.search(r'instance=(\S+)', editor.output()).group(1)
    return instance_id, record


def gateway(tmp_path: Path) -> Client:
    """A real gateway process (stdio) with the Unity tools on and no robot skills."""
    unity = {'enabled': True, 'status_dir': str(tmp_path / 'status'),
             'lease_dir': str(tmp_path / 'leases'), 'lease_ttl_s': 3.0,
             'ready_wait_s': 20.0, 'test_poll_s': 0.05}
    config_file = tmp_path / 'unity_gateway.yaml'
    if not config_file.exists():
        config_file.write_text(yaml.safe_dump({'unity': unity}))
    env = {key: value for key, value in os.environ.items()
           if key.startswith(('ROS_', 'RMW_', 'FASTDDS_', 'SKILL_LANES_TEST'))}
    env.update({'PYTHONPATH': str(ROOT), 'HOME': str(tmp_path), 'PYTHONUNBUFFERED': '1'})
    return Client(StdioServerParameters(
        command=PYTHON, args=['-m', 'mcp_gateway', '--config', str(config_file),
                              '--transport', 'stdio'],
        cwd=str(ROOT), env=env), mode='legacy')


def body(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    return result.structured_content


def assert_busy_shape(answer: dict[str, Any], instance_id: str) -> None:
    assert answer['success'] is False and answer['hint'] == 'retry'
    data = answer['data']
    assert data['reason'] == 'operation_busy' and data['instance_id'] == instance_id
    assert data['operation'] in ('refresh_unity', 'run_tests')
    # The real gateway names itself by its ROS node, /mcp_gateway_<pid>, and the call.
    assert isinstance(data['pid'], int)
    assert re.fullmatch(rf"/mcp_gateway_{data['pid']}#\d+", data['owner']), data
    assert 250 <= data['retry_after_ms'] <= 30_000


def test_gateways_hammering_one_editor_never_overlap(processes, tmp_path: Path) -> None:
    instance_id, record = start_editor(processes, tmp_path, '--tests', '3', '--test-duration',
                                       '0.08', '--refresh-duration', '0.1',
                                       '--reload-duration', '0.3', '--failing', '1',
                                       '--compile-delay', '0.5')
    outcomes: dict[str, list[Any]] = {'refresh': [], 'tests': [], 'busy': [], 'other': []}

    def covered() -> bool:
        return bool(outcomes['tests']) and any(
            answer['compile_requested'] for answer in outcomes['refresh'])

    async def agent(index: int, seconds: float) -> None:
        async with gateway(tmp_path) as client:
            end = time.monotonic() + seconds
            turn = index
            # Hammer for `seconds`, then go on (bounded) until a compile-requesting refresh
            # and a test run have got through: on a slow machine the busy answers alone can
            # fill the time.
            while time.monotonic() < end or not covered():
                assert time.monotonic() < end + 60, f'no compile refresh got through: {outcomes}'
                turn += 1
                if turn % 2:
                    name, arguments = 'unity_run_tests', {}
                else:
                    compile_ = 'request' if turn % 3 == 0 else 'none'
                    name, arguments = 'unity_refresh', {'compile': compile_}
                result = await client.call_tool(name, arguments)
                answer = body(result)
                if not result.is_error or answer.get('error') == 'tests_failed':
                    outcomes['tests' if name == 'unity_run_tests' else 'refresh'].append(answer)
                elif answer['error'] == 'operation_busy':
                    assert_busy_shape(answer, instance_id)
                    outcomes['busy'].append(answer)
                    await anyio.sleep(min(answer['data']['retry_after_ms'], 150) / 1000)
                else:
                    outcomes['other'].append(answer)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(agent, index, 6.0)
    anyio.run(scenario)

    counters = json.loads(record.read_text())
    assert counters['overlaps'] == 0, counters
    assert counters['active'] == 0 and counters['zero_length_frames_received'] == 0
    assert outcomes['other'] == []
    assert outcomes['refresh'] and outcomes['tests'] and outcomes['busy']
    # The last test fails: reported with its message although the Editor sends result null.
    for run in outcomes['tests']:
        assert run['status'] == 'failed' and run['summary']['failed'] == 1, run
        assert run['failures'][0]['message'] == 'Expected 1 but was 2'
    # A compile-requesting refresh held the lease through the compile and its reload.
    for answer in outcomes['refresh']:
        assert answer['reload_observed'] is answer['compile_requested'], answer
    tokens = [answer['lease_token'] for answer in outcomes['refresh'] + outcomes['tests']]
    assert len(set(tokens)) == len(tokens)


def test_a_killed_holder_gateway_lets_the_next_one_in_at_once(processes,
                                                              tmp_path: Path) -> None:
    instance_id, record = start_editor(processes, tmp_path, '--refresh-duration', '2.0')
    observer = LeaseManager(tmp_path / 'leases')
    seen: dict[str, Any] = {}

    async def doomed_refresh(client: Client) -> None:
        try:
            await client.call_tool('unity_refresh', {'mode': 'force'})
        except Exception as exc:  # noqa: BLE001 - its server process is killed mid-call
            seen['doomed'] = exc

    async def scenario() -> None:
        async with gateway(tmp_path) as doomed, gateway(tmp_path) as successor:
            async with anyio.create_task_group() as group:
                group.start_soon(doomed_refresh, doomed)
                holder = await anyio.to_thread.run_sync(lambda: wait_until(
                    lambda: observer.who_holds(instance_id), timeout=20,
                    what='the first gateway to take the lease'))
                # Kill it mid-refresh: once the Editor has the command, not before.
                await anyio.to_thread.run_sync(lambda: wait_until(
                    lambda: 'refresh_unity' in json.loads(record.read_text() or '{}').get(
                        'commands', []), timeout=20,
                    what='the Editor to receive the first refresh'))
                os.kill(holder['pid'], signal.SIGKILL)
                killed_at = time.monotonic()
                while observer.who_holds(instance_id) is not None:  # the kernel reaps it
                    assert time.monotonic() - killed_at < 0.5, 'lease not freed by the kill'
                    await anyio.sleep(0.002)

                async def on_progress(value: float, total: float | None,
                                      message: str | None) -> None:
                    seen.setdefault('first_progress_s', time.monotonic() - killed_at)
                    seen.setdefault('messages', []).append(message)
                result = await successor.call_tool('unity_refresh', {'mode': 'force'},
                                                   progress_callback=on_progress)
                seen['successor'] = result
                seen['successor_done_s'] = time.monotonic() - killed_at
    anyio.run(scenario)

    result = seen['successor']
    assert not result.is_error, body(result)
    assert seen['first_progress_s'] < 1.0, 'the successor must get the lease at once'
    # It took the lease at once but let the Editor finish the orphaned refresh first.
    assert any('asset_refresh' in (m or '') for m in seen['messages'])
    counters = json.loads(record.read_text())
    assert counters['overlaps'] == 0 and counters['commands'].count('refresh_unity') == 2
    observer.close()


STALLED_HOLDER = r"""
import asyncio, sys
from mcp_gateway.unity.answers import UnityLeaseLost
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.instances import Finder
from mcp_gateway.unity.lease import LeaseManager
from mcp_gateway.unity.tools import UnityTools

async def main() -> None:
    config = UnityConfig(status_dir=sys.argv[1], transport='stdio')
    (instance,) = await Finder(config).instances()
    lease = LeaseManager(sys.argv[2], ttl_s=0.6).acquire(instance.instance_id, 'stalled',
                                                          'refresh_unity')
    fence = UnityTools._fence(lease)
    bridge = UnityBridge(instance)
    await bridge.command('get_editor_state', before_send=fence)  # acting while it holds
    print('HELD', lease.token, flush=True)
    sys.stdin.readline()  # stalled here (SIGSTOP) between its last check and its command
    try:
        await bridge.refresh({'mode': 'force', 'scope': 'all', 'compile': 'none'}, 1.0,
                             before_send=fence)
        print('ACTED', flush=True)
    except UnityLeaseLost:
        print('LOST', flush=True)

asyncio.run(main())
"""


def test_a_stalled_holder_never_acts_after_losing_the_lease(processes, tmp_path: Path) -> None:
    """The holder is stopped (SIGSTOP: its renewal thread too) past its TTL; another agent
    takes the lease and refreshes; the stalled one resumes and must not send its refresh.
    """
    import subprocess
    from fake_unity_editor import FakeUnityEditor
    status, leases = tmp_path / 'status', tmp_path / 'leases'
    with FakeUnityEditor(status, 'Stall', status_interval_s=0.1) as editor:
        holder = processes.start([PYTHON, '-c', STALLED_HOLDER, str(status), str(leases)],
                                 env={'PYTHONPATH': str(ROOT)}, name='stalled_holder',
                                 stdin=subprocess.PIPE)
        holder.wait_for_output('HELD')
        held_token = int(holder.output().split('HELD', 1)[1].split()[0])
        holder.signal(signal.SIGSTOP)
        try:
            manager = LeaseManager(leases, ttl_s=0.6)
            lease = wait_until(
                lambda: manager.try_acquire(editor.instance_id, 'next', 'refresh_unity'),
                timeout=15, interval=0.05, what='the lease of the stalled holder')
            assert lease.token > held_token
            editor.commands.append('next-holder-refresh')  # marks where the next one acted
        finally:
            holder.signal(signal.SIGCONT)
        holder.popen.stdin.write(b'go\n')
        holder.popen.stdin.flush()
        holder.wait_for_output('LOST')
        assert 'ACTED' not in holder.output()
        assert 'refresh_unity' not in editor.commands  # the stalled one sent nothing
        lease.release()
        manager.close()

"""Process lifecycle of every executable: how it stops, and what it leaves behind.

- Ctrl-C and SIGTERM (systemd, `docker stop`, `timeout`) both stop lane_manager, sim_driver
  and the gateway in order: exit 0, no traceback, and the Fast DDS shared-memory files the
  process had mapped are gone (its node and context were destroyed). These runs use Fast
  DDS's default transports on purpose (shared memory included), or there would be nothing
  to check.
- Under the suite's own environment (config/fastdds_udp.xml) no process maps any Fast DDS
  file in /dev/shm at all.
- The stdio gateway stops by itself when its client closes stdin, and quietly when the
  client is killed in the middle of a call (no BrokenPipe traceback), still cancelling the
  goal that call started.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import IO, Any

import pytest

from ros_client import RosTestClient
from skill_lanes_sim.isolation import is_fastdds_file, shm_in_use, shm_of_process
from skill_lanes_sim.stack import start_sim_robot
from support import PYTHON, ROOT, ProcessGroup, wait_until

NAMESPACE = '/lifecycle_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      motion: {{policy: queue, max_queue: 4}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci,
                 driver: /lifecycle_sim/navigate}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 2.0}}
    gateway: {{lane_manager_wait_s: 15.0, progress_interval_s: 0.5}}
    sim:
      default: {{duration_s: 60.0, feedback_hz: 5}}
""")
# Fast DDS with its default transports (shared memory + UDP), as on a robot by default.
DEFAULT_TRANSPORTS = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                      'FASTDDS_DEFAULT_PROFILES_FILE': None,
                      'FASTRTPS_DEFAULT_PROFILES_FILE': None}
EXECUTABLES = {
    'lane_manager': (['-m', 'lane_manager.node'], 'lane_manager ready'),
    'sim_driver': (['-m', 'skill_lanes_sim.sim_driver'], 'sim_driver ready'),
    'mcp_gateway': (['-m', 'mcp_gateway', '--transport', 'http', '--port', '0'],
                    'mcp_gateway ready on'),
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / 'robot.yaml'
    path.write_text(CONFIG)
    return path


def fastdds_files(pid: int) -> set[str]:
    return {name for name in shm_of_process(pid) if is_fastdds_file(name)}


def left_behind(names: set[str]) -> set[str]:
    """Those of `names` still in /dev/shm that no live process uses."""
    existing = {name for name in names if (Path('/dev/shm') / name).exists()}
    return existing - shm_in_use()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('executable', sorted(EXECUTABLES))
def test_signal_stops_cleanly_and_leaves_no_shared_memory(processes: ProcessGroup,
                                                          config_file: Path,
                                                          executable: str, sig: int) -> None:
    args, ready = EXECUTABLES[executable]
    before = set(os.listdir('/dev/shm'))
    proc = processes.start([PYTHON, *args, '--config', str(config_file)],
                           env=DEFAULT_TRANSPORTS, name=executable)
    proc.wait_for_output(ready, timeout=60)
    mapped = wait_until(lambda: fastdds_files(proc.pid), 20,
                        what=f'{executable} to map its Fast DDS shared memory')
    # Only what this process created: Fast DDS port segments are shared by every process on
    # the host (other test runs too), and one another process left may be reused here.
    created = mapped - before
    assert created, f'{executable} created no Fast DDS file of its own: {sorted(mapped)}'
    proc.signal(sig)
    code = proc.popen.wait(timeout=30)
    output = proc.output()
    assert code == 0, f'{executable} exited {code} on {sig.name}:\n{output[-3000:]}'
    assert 'Traceback' not in output and 'Error' not in output, output[-3000:]
    assert left_behind(created) == set(), \
        f'{executable} left {sorted(left_behind(created))} in /dev/shm (made {sorted(created)})'


def test_suite_processes_use_no_shared_memory(processes: ProcessGroup,
                                              config_file: Path) -> None:
    """The suite's environment (UDP profile) really keeps Fast DDS out of /dev/shm."""
    manager = processes.python('lane_manager.node', '--config', str(config_file))
    manager.wait_for_output('lane_manager ready', timeout=60)
    assert fastdds_files(manager.pid) == set()
    assert fastdds_files(manager.pid) == set(), 'still none after discovery had time to run'


# ---------------------------------------------------------------- the stdio gateway
def _send(stdin: IO[bytes], message: dict) -> None:
    stdin.write((json.dumps(message) + '\n').encode())
    stdin.flush()


def _read_until(stdout: IO[bytes], predicate: Any, what: str) -> dict:
    """Read JSON-RPC lines until one matches (the gateway's stdout carries nothing else)."""
    for _ in range(1000):
        line = stdout.readline()
        assert line, f'the gateway closed stdout before {what}'
        message = json.loads(line)
        if predicate(message):
            return message
    raise AssertionError(f'no {what} in 1000 messages')


def start_stdio_gateway(config_file: Path, stderr_path: Path) -> subprocess.Popen:
    """A stdio gateway with raw pipes, initialized as an MCP client does it."""
    stderr = open(stderr_path, 'wb')
    gateway = subprocess.Popen(
        [PYTHON, '-m', 'mcp_gateway', '--config', str(config_file), '--transport', 'stdio'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=str(ROOT),
        start_new_session=True)
    stderr.close()
    _send(gateway.stdin, {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize', 'params': {
        'protocolVersion': '2025-06-18', 'capabilities': {},
        'clientInfo': {'name': 'lifecycle-test', 'version': '0'}}})
    _read_until(gateway.stdout, lambda m: m.get('id') == 1, 'the initialize answer')
    _send(gateway.stdin, {'jsonrpc': '2.0', 'method': 'notifications/initialized'})
    return gateway


def _stop(gateway: subprocess.Popen) -> None:
    if gateway.poll() is None:
        gateway.kill()
        gateway.wait(timeout=10)


def test_stdio_gateway_exits_quietly_when_stdin_closes(config_file: Path,
                                                       tmp_path: Path) -> None:
    stderr_path = tmp_path / 'gateway.err'
    gateway = start_stdio_gateway(config_file, stderr_path)
    try:
        gateway.stdin.close()
        code = gateway.wait(timeout=30)
        assert gateway.stdout.read() == b''
    finally:
        _stop(gateway)
    errors = stderr_path.read_text()
    assert code == 0, errors
    assert errors.strip() == 'mcp_gateway ready (stdio)', errors


def test_stdio_client_killed_mid_call_cancels_the_goal_quietly(
        processes: ProcessGroup, config_file: Path, tmp_path: Path, rclpy_context) -> None:
    start_sim_robot(processes, config_file)
    ros = RosTestClient(namespace=NAMESPACE)
    stderr_path = tmp_path / 'gateway.err'
    gateway = None
    try:
        ros.wait_for_skills('navigate')
        gateway = start_stdio_gateway(config_file, stderr_path)
        _send(gateway.stdin, {'jsonrpc': '2.0', 'id': 2, 'method': 'tools/call', 'params': {
            'name': 'navigate', 'arguments': {'order': 3}, '_meta': {'progressToken': 'p'}}})
        ros.wait_stats(lambda s: s['drivers']['navigate']['active'] == 1, 30,
                       what='the goal to run at the driver')
        # The client dies: both of its pipe ends close at once.
        gateway.stdout.close()
        gateway.stdin.close()
        code = gateway.wait(timeout=30)
        stats = ros.wait_stats(lambda s: s['drivers']['navigate']['active'] == 0, 30,
                               what='the goal to end at the driver')
    finally:
        if gateway is not None:
            _stop(gateway)
        ros.close()
    errors = stderr_path.read_text()
    assert code == 0, errors
    for word in ('Traceback', 'BrokenPipe', 'ExceptionGroup'):
        assert word not in errors, errors
    assert stats['drivers']['navigate']['canceled'] == 1, stats


def test_one_stop_signal_for_waiting_and_for_an_event_loop():
    """skill_lanes/stop_signal.py, the one class behind both kinds of executables: a signal
    wakes a waiting main thread, and one that came before `arm` (during start-up) stops the
    event loop as soon as it is armed; after `disarm` a signal changes nothing.
    """
    import asyncio

    from skill_lanes.stop_signal import StopSignal
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = StopSignal()
        assert not stop.wait(0.01) and not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10) and stop.requested

        async def serve(signal_stop: StopSignal, early: bool) -> list[str]:
            calls: list[str] = []
            signal_stop.arm(lambda: calls.append('stop'))  # an early request: at once
            if not early:
                os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0)  # one loop turn: a scheduled stop runs now
            signal_stop.disarm()
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0)
            return calls
        assert asyncio.run(serve(stop, early=True)) == ['stop']
        assert asyncio.run(serve(StopSignal(), early=False)) == ['stop']
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)

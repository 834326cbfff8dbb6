"""How fast the executables stop: the timing side of test/test_lifecycle.py.

- stdio gateway: stdin closed -> process gone. Target 1 s (the TypeScript MCP SDK sends
  SIGTERM 2 s after closing stdin; an MCP host should never need to).
- lane_manager, sim_driver, HTTP gateway: SIGTERM -> process gone (all exit 0; the test
  checks the exit codes, this only times them).

Usage: python bench/bench_lifecycle.py [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402
from _stack import PYTHON, ROOT, median, verdict  # noqa: E402

DEFAULT_DOMAIN = 171
STDIN_CLOSE_TARGET_S = 1.0
CONFIG = """
lanes:
  motion: {policy: queue}
skills:
  navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: bench_sim/navigate}
"""


def _send(stdin, message: dict) -> None:
    stdin.write((json.dumps(message) + '\n').encode())
    stdin.flush()


def stdin_close_to_exit(config: Path) -> float:
    """Seconds from closing an initialized stdio gateway's stdin to its exit."""
    gateway = subprocess.Popen(
        [PYTHON, '-m', 'mcp_gateway', '--config', str(config), '--transport', 'stdio'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=str(ROOT), start_new_session=True)
    try:
        _send(gateway.stdin, {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize', 'params': {
            'protocolVersion': '2025-06-18', 'capabilities': {},
            'clientInfo': {'name': 'bench', 'version': '0'}}})
        gateway.stdout.readline()
        _send(gateway.stdin, {'jsonrpc': '2.0', 'method': 'notifications/initialized'})
        time.sleep(0.5)
        closed = time.monotonic()
        gateway.stdin.close()
        gateway.wait(timeout=30)
        return time.monotonic() - closed
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()


def sigterm_to_exit(args: list[str], ready: str, logdir: Path) -> float:
    """Seconds from SIGTERM to the exit of a process that printed `ready`."""
    log = logdir / 'proc.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen([PYTHON, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=str(ROOT), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors='replace'):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'{args} did not start: {log.read_text()[-1000:]}')
            time.sleep(0.05)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        return time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--domain', type=int, default=DEFAULT_DOMAIN)
    args = parser.parse_args()
    args.domain, _, shm = _stack.start_bench(args.domain)
    tmp = Path(tempfile.mkdtemp(prefix='bench_lifecycle_'))
    config = tmp / 'robot.yaml'
    config.write_text(CONFIG)
    cases = {
        'lane_manager': (['-m', 'lane_manager.node', '--config', str(config)],
                         'lane_manager ready'),
        'sim_driver': (['-m', 'skill_lanes_sim.sim_driver', '--config', str(config)],
                       'sim_driver ready'),
        'mcp_gateway (http)': (['-m', 'mcp_gateway', '--config', str(config), '--transport',
                                'http', '--port', '0'], 'mcp_gateway ready on'),
    }
    try:
        closes = [stdin_close_to_exit(config) for _ in range(args.rounds)]
        terms = {name: [sigterm_to_exit(argv, ready, tmp) for _ in range(args.rounds)]
                 for name, (argv, ready) in cases.items()}
    finally:
        shm.clean()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()
    print(f'Process stop times, {args.rounds} rounds each (median / max, seconds)\n')
    print('| what | median | max | target |')
    print('|---|---|---|---|')
    print(f'| stdio gateway: stdin closed -> exit | {median(closes):.2f} | {max(closes):.2f} '
          f'| <= {STDIN_CLOSE_TARGET_S:.1f} s: {verdict(max(closes), STDIN_CLOSE_TARGET_S)} |')
    for name, values in terms.items():
        print(f'| {name}: SIGTERM -> exit | {median(values):.2f} | {max(values):.2f} | - |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Time from an emergency stop to the cancel requests at every driver, two ways.

The lane manager runs as its own OS process; this process hosts N drivers (rclpy action
servers that run until cancelled and stamp the moment each cancel request reaches them) and
sends one goal per lane through the lane manager. The lane manager follows two sources:
- a stop topic: this process publishes `true` and stamps it. Reported: the time until the
  LAST driver got its cancel request. Target: under 20 ms on this machine.
- a heartbeat source (heartbeat_s, default 0.5 s): a watchdog process (test/stop_publisher.py)
  publishes `false` every 50 ms and stamps each message (CLOCK_MONOTONIC, one clock for every
  process on the host); it is killed with SIGKILL. Reported: from its LAST message to the
  cancel at the last driver. Target: under heartbeat_s + 50 ms.

Usage: python bench/bench_emergency_stop.py [--rounds N] [--lanes N] [--heartbeat S]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402
from _stack import median, verdict  # noqa: E402

DEFAULT_DOMAIN = 173
TARGET_S = 0.020
TOPIC = '/bench_emergency_stop'
BEAT = '/bench_emergency_beat'
BEAT_PERIOD_S = 0.05
HEARTBEAT_MARGIN_S = 0.050


def config_text(lanes: int, heartbeat_s: float) -> str:
    lines = ['lanes:'] + [f'  l{i}: {{policy: queue}}' for i in range(lanes)] + ['skills:']
    lines += [f'  s{i}: {{lane: l{i}, action_type: test_msgs/action/Fibonacci, '
              f'driver: /bench_estop/d{i}}}' for i in range(lanes)]
    lines += [f'lane_manager: {{emergency_stop: {{sources: [{{topic: {TOPIC}}}, '
              f'{{topic: {BEAT}, heartbeat_s: {heartbeat_s}}}]}}}}']
    return '\n'.join(lines) + '\n'


def run(rounds: int, lanes: int, heartbeat_s: float, tmp: Path) -> tuple[list[float],
                                                                     list[float]]:
    import rclpy
    from rclpy.action import ActionClient, ActionServer, CancelResponse
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool
    from test_msgs.action import Fibonacci

    from skill_lanes.interfaces import EMERGENCY_STOP_QOS

    config = tmp / 'robot.yaml'
    config.write_text(config_text(lanes, heartbeat_s))
    procs = _stack.Procs('bench_estop_')
    rclpy.init()
    node = Node('bench_emergency_stop')
    group = ReentrantCallbackGroup()
    cancelled_at: dict[int, float] = {}
    lock = threading.Lock()

    def execute(handle):
        while not handle.is_cancel_requested:
            time.sleep(0.005)
        handle.canceled()
        return Fibonacci.Result()

    def on_cancel(index: int, _handle) -> CancelResponse:
        now = time.monotonic()
        with lock:
            cancelled_at.setdefault(index, now)
        return CancelResponse.ACCEPT

    servers = [ActionServer(node, Fibonacci, f'/bench_estop/d{i}', execute_callback=execute,
                            cancel_callback=lambda h, i=i: on_cancel(i, h),
                            callback_group=group) for i in range(lanes)]
    clients = [ActionClient(node, Fibonacci, f'/lane_manager/skills/s{i}',
                            callback_group=group) for i in range(lanes)]
    stop = node.create_publisher(Bool, TOPIC, EMERGENCY_STOP_QOS)
    executor = MultiThreadedExecutor(num_threads=8)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    results, beats = [], []
    stamps = tmp / 'beat_stamps.txt'

    def watchdog(index: int):
        stamps.write_text('')
        proc = procs.python('test/stop_publisher.py', '--topic', BEAT, '--name', 'watchdog',
                            '--heartbeat', str(BEAT_PERIOD_S), '--value', 'false',
                            '--stamps', str(stamps), name=f'watchdog{index}')
        proc.wait_for_output('stop_publisher ready', timeout=_stack.READY_S)
        return proc

    def goals_running() -> None:
        """One goal per lane, accepted (the lane manager may not have heard the watchdog
        yet: a required source never heard refuses), then executing at its driver.
        """
        deadline = time.monotonic() + 30
        pending = list(clients)
        while pending:
            futures = [(c, c.send_goal_async(Fibonacci.Goal(order=1))) for c in pending]
            while not all(f.done() for _, f in futures):
                if time.monotonic() > deadline:
                    raise RuntimeError('goals not answered')
                time.sleep(0.01)
            pending = [c for c, f in futures if not f.result().accepted]
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError('goals not accepted')
                time.sleep(0.1)
        time.sleep(0.5)  # every goal executing at its driver

    def all_cancelled(since: float) -> float:
        while len(cancelled_at) < lanes:
            if time.monotonic() - since > 10:
                raise RuntimeError(f'only {len(cancelled_at)} drivers got a cancel')
            time.sleep(0.001)
        return max(cancelled_at.values())

    try:
        manager = procs.python('-m', 'lane_manager.node', '--config', str(config),
                               name='lane_manager')
        beat = watchdog(0)
        manager.wait_for_output('lane_manager ready', timeout=_stack.READY_S)
        for client in clients:
            if not client.wait_for_server(timeout_sec=30):
                raise RuntimeError('lane manager skills not found')
        time.sleep(2.0)  # the lane manager learns every driver's status
        for _ in range(rounds):
            with lock:
                cancelled_at.clear()
            stop.publish(Bool(data=False))
            time.sleep(0.3)
            goals_running()
            sent = time.monotonic()
            stop.publish(Bool(data=True))
            results.append(all_cancelled(sent) - sent)
            time.sleep(0.5)
        stop.publish(Bool(data=False))
        for index in range(1, rounds + 1):
            with lock:
                cancelled_at.clear()
            goals_running()
            beat.kill()  # SIGKILL: no goodbye of any kind
            last = float(stamps.read_text().split()[-1])
            beats.append(all_cancelled(last) - last)
            beat = watchdog(index)
            time.sleep(0.5)
    finally:
        procs.stop_all()
        executor.shutdown()
        for server in servers:
            server.destroy()
        node.destroy_node()
        rclpy.shutdown()
        procs.cleanup_logs()
    return results, beats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--lanes', type=int, default=4)
    parser.add_argument('--heartbeat', type=float, default=0.5,
                        help='heartbeat_s of the watchdog source')
    parser.add_argument('--domain', type=int, default=DEFAULT_DOMAIN)
    args = parser.parse_args()
    args.domain, _, shm = _stack.start_bench(args.domain)
    tmp = Path(tempfile.mkdtemp(prefix='bench_estop_'))
    try:
        times, beats = run(args.rounds, args.lanes, args.heartbeat, tmp)
    finally:
        shm.clean()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()
    beat_target = args.heartbeat + HEARTBEAT_MARGIN_S
    print(f'Emergency stop -> cancel request at every driver ({args.lanes} lanes, one goal '
          f'each; {args.rounds} rounds each)\n')
    print('| case | median | max | target |')
    print('|---|---|---|---|')
    print(f'| stop topic: `true` -> cancel at the last driver | {median(times) * 1000:.1f} ms '
          f'| {max(times) * 1000:.1f} ms '
          f'| < {TARGET_S * 1000:.0f} ms: {verdict(median(times), TARGET_S)} |')
    print(f'| heartbeat source (heartbeat_s={args.heartbeat:g}) SIGKILLed: its last message '
          f'-> cancel at the last driver | {median(beats) * 1000:.1f} ms '
          f'| {max(beats) * 1000:.1f} ms '
          f'| < {beat_target * 1000:.0f} ms: {verdict(max(beats), beat_target)} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

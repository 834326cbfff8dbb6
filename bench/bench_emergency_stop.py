"""Time from an emergency stop message to the cancel requests at every driver.

The lane manager runs as its own OS process; this process hosts N drivers (rclpy action
servers that run until cancelled and stamp the moment each cancel request reaches them),
sends one goal per lane through the lane manager, then publishes `true` on the emergency
stop topic and stamps it. Reported: the time until the LAST driver got its cancel request
(same process, same monotonic clock). Target: under 20 ms on this machine.

Usage: python bench/bench_emergency_stop.py [--rounds N] [--lanes N]
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


def config_text(lanes: int) -> str:
    lines = ['lanes:'] + [f'  l{i}: {{policy: queue}}' for i in range(lanes)] + ['skills:']
    lines += [f'  s{i}: {{lane: l{i}, action_type: test_msgs/action/Fibonacci, '
              f'driver: /bench_estop/d{i}}}' for i in range(lanes)]
    lines += [f'lane_manager: {{emergency_stop_topic: {TOPIC}}}']
    return '\n'.join(lines) + '\n'


def run(rounds: int, lanes: int, tmp: Path) -> list[float]:
    import rclpy
    from rclpy.action import ActionClient, ActionServer, CancelResponse
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool
    from test_msgs.action import Fibonacci

    from lane_manager.interfaces import EMERGENCY_STOP_QOS

    config = tmp / 'robot.yaml'
    config.write_text(config_text(lanes))
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
    results = []
    try:
        manager = procs.python('-m', 'lane_manager.node', '--config', str(config),
                               name='lane_manager')
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
            futures = [c.send_goal_async(Fibonacci.Goal(order=1)) for c in clients]
            deadline = time.monotonic() + 30
            while not all(f.done() and f.result().accepted for f in futures):
                if time.monotonic() > deadline:
                    raise RuntimeError('goals not accepted')
                time.sleep(0.01)
            time.sleep(0.5)  # every goal executing at its driver
            sent = time.monotonic()
            stop.publish(Bool(data=True))
            while len(cancelled_at) < lanes:
                if time.monotonic() - sent > 10:
                    raise RuntimeError(f'only {len(cancelled_at)} drivers got a cancel')
                time.sleep(0.001)
            results.append(max(cancelled_at.values()) - sent)
            time.sleep(0.5)
        stop.publish(Bool(data=False))
    finally:
        procs.stop_all()
        executor.shutdown()
        for server in servers:
            server.destroy()
        node.destroy_node()
        rclpy.shutdown()
        procs.cleanup_logs()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--lanes', type=int, default=4)
    parser.add_argument('--domain', type=int, default=DEFAULT_DOMAIN)
    args = parser.parse_args()
    args.domain, _, shm = _stack.start_bench(args.domain)
    tmp = Path(tempfile.mkdtemp(prefix='bench_estop_'))
    try:
        times = run(args.rounds, args.lanes, tmp)
    finally:
        shm.clean()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()
    print(f'Emergency stop -> cancel request at every driver ({args.lanes} lanes, one goal '
          f'each; {args.rounds} rounds)\n')
    print('| median | max | target |')
    print('|---|---|---|')
    print(f'| {median(times) * 1000:.1f} ms | {max(times) * 1000:.1f} ms '
          f'| < {TARGET_S * 1000:.0f} ms: {verdict(median(times), TARGET_S)} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Benchmark: how long a big goal argument stops the lane manager's other lanes, 1 thread vs 2.

rclpy converts a goal between its wire form and Python inside the lane manager's executor
(when its action server takes the request, and when the goal is sent on to the driver): a
150k-point trajectory takes over a second, and a single-threaded executor handles nothing
else meanwhile. No action type with a big goal is installable from PyPI (test_msgs has only
Fibonacci and NestedMessage), so the lane manager process built here (the real
lane_manager.node.LaneManager) does the same conversion on its own executor, in the callback
group of its action servers, two ways:

- converted: a small trigger message makes a callback deserialize a 150k-point
  trajectory_msgs/JointTrajectory with rclpy.serialization (C deserialization, then Python
  objects: what a take does);
- received: the big trajectory itself arrives on a subscription (a 20 MB message over
  loopback UDP, so DDS transport is part of this one).

Per setup (1 executor thread, as lane_manager.node runs; 2; 2 with a 0.5 ms GIL switch
interval: both tried and not taken, see README), with real OS processes on loopback
(sim_driver and that lane manager), a client in this process sends zero-length goals through
the lane manager back to back, and the big message is triggered in the middle. Reported: the
quiet median round trip, and the longest round trip while the lane manager converts.

Usage: python bench/bench_big_goal.py [--points 150000] [--joints 6]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402
from _stack import Procs, median, send_timed, wait_servers, warm_up  # noqa: E402

DEFAULT_DOMAIN = 177
CONVERT_TOPIC = '/bench/convert_big_trajectory'
WIRE_TOPIC = '/bench/big_trajectory'
CONFIG = textwrap.dedent("""\
    lanes:
      fast: {policy: queue, max_queue: 8, max_hold_s: 5, cancel_grace_s: 2}
    skills:
      zero: {lane: fast, action_type: test_msgs/action/Fibonacci, driver: /sim/zero}
    lane_manager: {driver_response_s: 5.0}
    sim:
      default: {duration_s: 0, feedback_hz: 0}
    """)


def setups() -> list[tuple[str, int, float]]:
    """(label, executor threads, GIL switch interval): one thread, two, and two with a
    0.5 ms switch interval. The lane manager's own (EXECUTOR_THREADS) is marked.
    """
    from lane_manager.node import EXECUTOR_THREADS
    runs = [('1 thread', 1, 0.005), ('2 threads', 2, 0.005),
            ('2 threads, 0.5 ms GIL switch', 2, 0.0005)]
    return [(f'{label} (lane_manager)' if threads == EXECUTOR_THREADS and switch_s == 0.005
             else label, threads, switch_s) for label, threads, switch_s in runs]


def run_lane_manager(config: str, threads: int, switch_s: float, points: int, joints: int,
                     ros_argv: list[str]) -> int:
    """The real lane manager node, plus the big conversion on its executor (see the top)."""
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Empty
    from trajectory_msgs.msg import JointTrajectory

    from lane_manager.node import LaneManager
    from lane_manager.runtime import run_node

    wire = big_trajectory(points, joints)  # before "ready": not part of what is measured
    sys.setswitchinterval(switch_s)

    def build() -> LaneManager:
        node = LaneManager(config)

        def report(how: str, started: float, msg: JointTrajectory) -> None:
            print(f'TAKEN {time.monotonic():.6f} {how} points={len(msg.points)} '
                  f'convert_s={time.monotonic() - started:.3f}', flush=True)

        def convert(_msg: Empty) -> None:
            # What a take of the big goal does: C deserialization, then Python objects.
            started = time.monotonic()
            report('converted', started, deserialize_message(wire, JointTrajectory))

        node.create_subscription(Empty, CONVERT_TOPIC, convert, 1, callback_group=node._group)
        node.create_subscription(
            JointTrajectory, WIRE_TOPIC, lambda msg: report('received', time.monotonic(), msg),
            1, callback_group=node._group)
        return node

    return run_node(build, 'lane_manager ready', num_threads=threads,
                    before_stop=lambda node: node.cancel_everything(), argv=ros_argv)


def big_trajectory(points: int, joints: int) -> bytes:
    from builtin_interfaces.msg import Duration
    from rclpy.serialization import serialize_message
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    msg = JointTrajectory(joint_names=[f'joint_{j}' for j in range(joints)])
    msg.points = [JointTrajectoryPoint(positions=[0.001 * i] * joints,
                                       velocities=[0.0] * joints,
                                       time_from_start=Duration(sec=i // 100,
                                                                nanosec=(i % 100) * 10_000_000))
                  for i in range(points)]
    return serialize_message(msg)


def measure(client: Any, send_big: Callable[[], None], lm: Any, rounds: int) -> dict:
    """Back-to-back goals; the big message is triggered after `rounds` of them."""
    from test_msgs.action import Fibonacci
    action = client.action('/lane_manager/skills/zero')
    quiet: list[float] = []
    for _ in range(rounds):
        timing = send_timed(action, Fibonacci.Goal(order=0))
        if timing.event.wait(10) and timing.status == 4:
            quiet.append(timing.round_trip)
    seen = lm.output().count('TAKEN ')
    triggered_at = time.monotonic()
    threading.Thread(target=send_big, daemon=True).start()
    during: list[tuple[float, float]] = []  # (sent, round trip)
    line: Optional[str] = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        timing = send_timed(action, Fibonacci.Goal(order=0))
        if not timing.event.wait(30) or timing.status != 4:
            raise RuntimeError('a goal was lost during the big message')
        during.append((timing.sent, timing.round_trip))
        taken = [x for x in lm.output().splitlines() if x.startswith('TAKEN ')][seen:]
        line = taken[0] if taken else None
        if line is not None and timing.sent > float(line.split()[1]):
            break  # one goal after the message was taken
    if line is None:
        raise RuntimeError('the lane manager never took the big message')
    taken_at = float(line.split()[1])
    window = [rt for sent, rt in during if sent <= taken_at]
    return {'quiet_ms': median(quiet) * 1000, 'worst_ms': max(window or [0.0]) * 1000,
            'goals': len(window), 'taken_after_s': taken_at - triggered_at,
            'convert_s': float(line.rsplit('convert_s=', 1)[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--points', type=int, default=150_000)
    parser.add_argument('--joints', type=int, default=6)
    parser.add_argument('--rounds', type=int, default=40, help='quiet round trips before')
    parser.add_argument('--domain', type=int,
                        default=int(os.environ.get('BENCH_ROS_DOMAIN_ID', DEFAULT_DOMAIN)))
    parser.add_argument('--lane-manager', nargs=3, metavar=('CONFIG', 'THREADS', 'SWITCH_S'),
                        help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.lane_manager:
        config, threads, switch_s = args.lane_manager
        return run_lane_manager(config, int(threads), float(switch_s), args.points,
                                args.joints, sys.argv)

    from bench_lane_manager import Client
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Empty
    from test_msgs.action import Fibonacci
    from trajectory_msgs.msg import JointTrajectory

    args.domain, _, shm = _stack.start_bench(args.domain)
    payload = big_trajectory(args.points, args.joints)
    tmp = Path(tempfile.mkdtemp(prefix='bench_big_'))
    cfg = tmp / 'big.yaml'
    cfg.write_text(CONFIG)
    results: dict[tuple[str, str], dict] = {}
    runs = setups()
    procs = Procs('bench_big_goal')
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    try:
        for index, (label, threads, switch_s) in enumerate(runs):
            client = Client()
            try:
                sim = procs.python('-m', 'lane_manager.sim_driver', '--config', str(cfg),
                                   name=f'sim_{index}')
                lm = procs.python(__file__, '--lane-manager', str(cfg), str(threads),
                                  str(switch_s), '--points', str(args.points),
                                  '--joints', str(args.joints),
                                  name=f'lane_manager_{index}')
                sim.wait_for_output('sim_driver ready', timeout=_stack.READY_S)
                lm.wait_for_output('lane_manager ready', timeout=60)
                action = client.action('/lane_manager/skills/zero')
                wait_servers([action])
                warm_up([action], lambda: Fibonacci.Goal(order=0), count=5)
                trigger = client.node.create_publisher(Empty, CONVERT_TOPIC, reliable)
                wire = client.node.create_publisher(JointTrajectory, WIRE_TOPIC, reliable)
                waited = time.monotonic() + 20
                while (min(trigger.get_subscription_count(), wire.get_subscription_count()) < 1
                       and time.monotonic() < waited):
                    time.sleep(0.05)
                time.sleep(0.5)
                results[label, 'converted'] = measure(
                    client, lambda: trigger.publish(Empty()), lm, args.rounds)
                results[label, 'received'] = measure(
                    client, lambda: wire.publish(payload), lm, args.rounds)
            finally:
                client.close()
                procs.stop_all()
    finally:
        procs.stop_all()
        shm.clean()
        procs.cleanup_logs()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()

    print(f'Big message: {args.points} points x {args.joints} joints '
          f'({len(payload) / 1e6:.1f} MB on the wire) on the lane manager, while zero-length '
          'goals of another lane run back to back through it.\n')
    print('| lane manager | big message | its conversion | quiet round trip (median) '
          '| longest round trip meanwhile | ratio | goals meanwhile |')
    print('|---|---|---|---|---|---|---|')
    for (label, how), r in results.items():
        conversion = f"{r['convert_s']:.2f} s" if how == 'converted' else '(in the take)'
        print(f"| {label} | {how} | {conversion} | {r['quiet_ms']:.2f} ms | "
              f"{r['worst_ms']:.0f} ms | {r['worst_ms'] / r['quiet_ms']:.0f} | {r['goals']} |")
    for how in ('converted', 'received'):
        first, last = runs[0][0], runs[1][0]
        print(f'\nLongest stall of the other lane ({how}), {last} / {first}: '
              f"{results[last, how]['worst_ms'] / results[first, how]['worst_ms']:.2f}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

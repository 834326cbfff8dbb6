"""Benchmark: how long a big goal argument stops the lane manager's other lanes.

rclpy converts a goal between its wire form and Python in the executor thread that takes it
(when a skill server takes the request, and when the goal is sent on to the driver): a
150k-point trajectory takes over a second, and that thread handles nothing else meanwhile.
Each lane's goals come in on a thread of the lane's own (lane_manager/goal_intake.py). No
action type with a big goal is installable from PyPI (test_msgs has only Fibonacci and
NestedMessage), so the lane manager process built here (the real
lane_manager.node.LaneManager) does the same conversion in three places:

- another lane's intake: where a big goal of another lane is taken (the case that matters);
- the measured lane's own intake: its next goal waits for the big one anyway;
- the lane manager's main thread: where, with one executor thread, every lane's goals came
  in (the design before goal intakes), and where the drivers' answers are relayed.

Two ways each: converted (a small trigger message makes a callback deserialize a 150k-point
trajectory_msgs/JointTrajectory with rclpy.serialization: C deserialization, then Python
objects, what a take does) and received (the big trajectory itself arrives on a
subscription: a 20 MB message over loopback UDP, so DDS transport is part of this one).

Real OS processes on loopback (sim_driver and that lane manager); a client in this process
sends zero-length goals of lane `fast` through the lane manager back to back and triggers the
big message in the middle. Reported: the quiet median round trip, and the longest round trip
while the lane manager converts.

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
CONFIG = textwrap.dedent("""\
    lanes:
      fast: {policy: queue, max_queue: 8, max_hold_s: 5, cancel_grace_s: 2}
      arm: {policy: queue, max_queue: 8, max_hold_s: 5, cancel_grace_s: 2}
    skills:
      zero: {lane: fast, action_type: test_msgs/action/Fibonacci, driver: /sim/zero}
      reach: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim/reach}
    lane_manager: {driver_response_s: 5.0}
    sim:
      default: {duration_s: 0, feedback_hz: 0}
    """)
# (label, where in the lane manager the big message is handled)
PLACES = [("another lane's intake (lane arm)", 'arm'),
          ("the measured lane's own intake (lane fast)", 'fast'),
          ('the main thread (one thread for all, before intakes)', 'main')]


def convert_topic(place: str) -> str:
    return f'/bench/convert_big_trajectory/{place}'


def wire_topic(place: str) -> str:
    return f'/bench/big_trajectory/{place}'


def run_lane_manager(config: str, points: int, joints: int, ros_argv: list[str]) -> int:
    """The real lane manager node, plus the big conversion in each place (see the top)."""
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Empty
    from trajectory_msgs.msg import JointTrajectory

    from lane_manager.node import EXECUTOR_THREADS, LaneManager
    from skill_lanes.runtime import run_node

    wire = big_trajectory(points, joints)  # before "ready": not part of what is measured

    def build() -> LaneManager:
        lm = LaneManager(config)

        def report(how: str, started: float, msg: JointTrajectory) -> None:
            print(f'TAKEN {time.monotonic():.6f} {how} points={len(msg.points)} '
                  f'convert_s={time.monotonic() - started:.3f}', flush=True)

        def convert(_msg: Empty) -> None:
            # What a take of the big goal does: C deserialization, then Python objects.
            started = time.monotonic()
            report('converted', started, deserialize_message(wire, JointTrajectory))

        for _label, place in PLACES:
            node = lm if place == 'main' else lm.intake_node(place)
            node.create_subscription(Empty, convert_topic(place), convert, 1)
            node.create_subscription(
                JointTrajectory, wire_topic(place),
                lambda msg: report('received', time.monotonic(), msg), 1)
        return lm

    return run_node(build, 'lane_manager ready', num_threads=EXECUTOR_THREADS,
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
    parser.add_argument('--lane-manager', metavar='CONFIG', help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.lane_manager:
        return run_lane_manager(args.lane_manager, args.points, args.joints, sys.argv)

    args.domain, _, shm = _stack.start_bench(args.domain)  # before this process's rclpy
    from bench_lane_manager import Client
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Empty
    from test_msgs.action import Fibonacci
    from trajectory_msgs.msg import JointTrajectory

    payload = big_trajectory(args.points, args.joints)
    tmp = Path(tempfile.mkdtemp(prefix='bench_big_'))
    cfg = tmp / 'big.yaml'
    cfg.write_text(CONFIG)
    results: dict[tuple[str, str], dict] = {}
    procs = Procs('bench_big_goal')
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    client = None
    try:
        client = Client()
        sim = procs.python('-m', 'skill_lanes_sim.sim_driver', '--config', str(cfg), name='sim')
        lm = procs.python(__file__, '--lane-manager', str(cfg), '--points', str(args.points),
                          '--joints', str(args.joints), name='lane_manager')
        sim.wait_for_output('sim_driver ready', timeout=_stack.READY_S)
        lm.wait_for_output('lane_manager ready', timeout=60)
        action = client.action('/lane_manager/skills/zero')
        wait_servers([action])
        warm_up([action], lambda: Fibonacci.Goal(order=0), count=5)
        for label, place in PLACES:
            trigger = client.node.create_publisher(Empty, convert_topic(place), reliable)
            wire = client.node.create_publisher(JointTrajectory, wire_topic(place), reliable)
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
        if client is not None:
            client.close()
        procs.stop_all()
        shm.clean()
        procs.cleanup_logs()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()

    print(f'Big message: {args.points} points x {args.joints} joints '
          f'({len(payload) / 1e6:.1f} MB on the wire) handled in the lane manager while '
          'zero-length goals of lane fast run back to back through it.\n')
    print('| big message handled on | how | its conversion | quiet round trip (median) '
          '| longest round trip meanwhile | ratio | goals meanwhile |')
    print('|---|---|---|---|---|---|---|')
    for (label, how), r in results.items():
        conversion = f"{r['convert_s']:.2f} s" if how == 'converted' else '(in the take)'
        print(f"| {label} | {how} | {conversion} | {r['quiet_ms']:.2f} ms | "
              f"{r['worst_ms']:.0f} ms | {r['worst_ms'] / r['quiet_ms']:.0f} | {r['goals']} |")
    other, before = PLACES[0][0], PLACES[2][0]
    for how in ('converted', 'received'):
        print(f'\nLongest stall of lane fast ({how}), {other} / {before}: '
              f"{results[other, how]['worst_ms'] / results[before, how]['worst_ms']:.2f}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

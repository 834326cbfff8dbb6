"""Benchmark: what checking a skill's `limits` costs on a big goal, beside what taking the
goal in costs anyway.

The lane manager checks every goal against its skill's limits at acceptance, on the lane's
own intake thread (lane_manager/goal_intake.py), before the goal is arbitrated. For a
150k-point JointTrajectory (6 joints, positions + velocities), side by side in one run:

- the check with one limit (`points[].velocities[]`: min/max), and with four (plus
  `points[].positions[]`, `joint_names` max_items, `joint_names[]` one_of);
- rclpy's conversion of the goal from its wire form (deserialize_message: what the intake
  does before any callback of ours runs) and to it (serialize_message: what sending does).

Usage: python bench/bench_goal_limits.py [--points 150000] [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skill_lanes.goal_limits import GoalLimits, Limit  # noqa: E402

JOINTS = ('j1', 'j2', 'j3', 'j4', 'j5', 'j6')


def trajectory(points: int) -> Any:
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    goal = JointTrajectory(joint_names=list(JOINTS))
    goal.points = [JointTrajectoryPoint(positions=[0.001 * (k % 3000)] * 6, velocities=[0.5] * 6)
                   for k in range(points)]
    return goal


def timed(step: Callable[[], Any], reps: int) -> float:
    """Median seconds of `reps` runs."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--points', type=int, default=150_000)
    parser.add_argument('--reps', type=int, default=5)
    args = parser.parse_args()
    from rclpy.serialization import deserialize_message, serialize_message
    from trajectory_msgs.msg import JointTrajectory
    goal = trajectory(args.points)
    wire = serialize_message(goal)
    one = GoalLimits({'points[].velocities[]': Limit(min=-2.0, max=2.0)})
    four = GoalLimits({'points[].velocities[]': Limit(min=-2.0, max=2.0),
                       'points[].positions[]': Limit(min=-3.2, max=3.2),
                       'joint_names': Limit(max_items=12),
                       'joint_names[]': Limit(one_of=JOINTS)})
    assert one.check(goal) is None and four.check(goal) is None
    rows = [
        ('limits check, 1 limit (points[].velocities[])', timed(lambda: one.check(goal),
                                                                 args.reps)),
        ('limits check, 4 limits', timed(lambda: four.check(goal), args.reps)),
        ('from the wire (deserialize_message, intake)',
         timed(lambda: deserialize_message(wire, JointTrajectory), args.reps)),
        ('to the wire (serialize_message, send)', timed(lambda: serialize_message(goal),
                                                         args.reps)),
    ]
    intake = rows[2][1]
    print(f'{args.points} points x {len(JOINTS)} joints, median of {args.reps} runs')
    for name, seconds in rows:
        print(f'  {name:<48} {seconds * 1000:8.1f} ms  ({seconds / intake:4.2f} x intake)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

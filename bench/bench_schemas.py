"""Benchmark: tool schema sizes for real robot types, and what a huge argument costs others.

1. Schema bytes (compact JSON, as a client receives them) of the message and action types
   available here: the inputSchema the gateway publishes (repeated types under `$defs`,
   plain numbers, descriptions from the interface files), the same schema with every
   nested type inlined, and a skill whose config picks its fields. Plus the whole
   tools/list of the test_msgs skills.
2. Event-loop delay while a 10k-point JointTrajectory (7 joints, positions + velocities) is
   validated and converted, then converted to its wire form as sending it does
   (rclpy.serialization: the same C conversion as ActionClient.send_goal_async): a probe on
   the gateway's asyncio loop wakes every millisecond and records how late it woke (what
   another lane's call would wait), idle vs during both steps in worker threads (what the
   gateway does; the send only for a big goal, lane_manager/interfaces.is_big_goal) vs on
   the loop itself (before). Ratios are measured side by side in one run.

Usage: python bench/bench_schemas.py [--points 10000] [--reps 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_gateway.ros_json import Limits  # noqa: E402
from mcp_gateway.ros_schema import message_schema, skill_schema  # noqa: E402
from mcp_gateway.skill_args import SkillArguments  # noqa: E402
from skill_lanes_sim.isolation import ShmGuard  # noqa: E402

TARGET_DELAY_MS = 5.0  # "never delays another lane's call by more than a few ms"


def compact(schema: dict) -> int:
    return len(json.dumps(schema, separators=(',', ':')))


def _type(name: str) -> Any:
    """'pkg/msg/Type' or 'pkg/action/Type/Goal' -> class; None when not installed."""
    import importlib
    package, kind, type_name, *part = name.split('/')
    try:
        cls = getattr(importlib.import_module(f'{package}.{kind}'), type_name)
    except (ImportError, AttributeError):
        return None
    return getattr(cls, part[0]) if part else cls


def schema_table() -> list[str]:
    import geometry_msgs.msg
    limits = Limits(max_items=100_000)
    names = ['test_msgs/action/Fibonacci/Goal', 'test_msgs/action/NestedMessage/Goal',
             'trajectory_msgs/msg/JointTrajectory', 'nav_msgs/msg/Path',
             'geometry_msgs/msg/PoseStamped', 'sensor_msgs/msg/JointState',
             'visualization_msgs/msg/MarkerArray']
    rows = ['| type | tool inputSchema (bytes) | all inlined (bytes) | $defs |',
            '|---|---:|---:|---:|']
    for name in names:
        cls = _type(name)
        if cls is None:
            rows.append(f'| {name} | not installed | | |')
            continue
        tool = skill_schema(cls, limits)
        rows.append(f'| {name} | {compact(tool)} | {compact(message_schema(cls, limits))} '
                    f'| {len(tool.get("$defs", {}))} |')
    picked = skill_schema(geometry_msgs.msg.PoseStamped, limits,
                          fields=['pose.position', 'pose.orientation', 'header.frame_id'],
                          fixed={'header.stamp': {'sec': 0, 'nanosec': 0}},
                          required=['pose.position'])
    rows.append(f'| PoseStamped, skill config picks pose + frame_id | {compact(picked)} | | |')
    planar = skill_schema(geometry_msgs.msg.PoseStamped, limits,
                          fields=['pose.position.x', 'pose.position.y', 'pose.orientation.z',
                                  'pose.orientation.w'], fixed={'header.frame_id': 'map'},
                          required=['pose.position.x', 'pose.position.y'])
    rows.append(f'| PoseStamped, config: planar goal x, y, z/w in frame map | '
                f'{compact(planar)} | | |')
    trajectory = _type('trajectory_msgs/msg/JointTrajectory')
    if trajectory is None:
        return rows
    goal = skill_schema(trajectory, limits,
                        fields=['joint_names', 'points'], required=['joint_names', 'points'])
    rows.append(f'| JointTrajectory, config: joint_names + points | {compact(goal)} | | |')
    return rows


def trajectory_arguments(points: int, joints: int = 7) -> dict:
    return {'joint_names': [f'joint_{j}' for j in range(joints)],
            'points': [{'positions': [0.001 * i + j for j in range(joints)],
                        'velocities': [0.1] * joints,
                        'time_from_start': {'sec': i // 100, 'nanosec': (i % 100) * 10_000_000}}
                       for i in range(points)]}


async def loop_delays(steps: Sequence[Callable[[], Any]], in_thread: bool,
                      period_s: float = 0.001) -> tuple[list[float], float]:
    """(how late a 1 ms probe woke, ms; how long the steps took, s), the steps run one
    after the other, each in a worker thread or on the loop (none: idle for 0.3 s).
    """
    delays: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(period_s)
            delays.append((time.perf_counter() - before - period_s) * 1000)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    delays.clear()
    started = time.perf_counter()
    result = None
    for step in steps:
        if in_thread:
            result = await asyncio.to_thread(step, *([result] if result is not None else []))
        else:
            result = step(*([result] if result is not None else []))
            await asyncio.sleep(0)
    if not steps:
        await asyncio.sleep(0.3)
    took = time.perf_counter() - started
    done.set()
    await task
    return delays, took


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def delay_table(points: int, reps: int) -> tuple[list[str], dict[str, float]]:
    import trajectory_msgs.msg  # the test extra ros-trajectory-msgs
    converter = SkillArguments(trajectory_msgs.msg.JointTrajectory,
                               Limits(max_items=100_000), max_request_bytes=64_000_000)
    arguments = trajectory_arguments(points)
    size = len(json.dumps(arguments, separators=(',', ':')))

    from rclpy.serialization import serialize_message
    from skill_lanes.interfaces import is_big_goal
    steps = (lambda: converter.to_goal(arguments), serialize_message)
    goal = steps[0]()
    wire = serialize_message(goal)  # the first call also loads the type support
    wire_s = time.perf_counter()
    serialize_message(goal)
    wire_s = time.perf_counter() - wire_s

    results: dict[str, dict[str, list[float]]] = {
        name: {'p99': [], 'max': [], 'took': []} for name in ('idle', 'thread', 'loop')}
    for _ in range(reps):  # interleaved: the three cases see the same machine load
        for name, job, in_thread in (('idle', (), False), ('thread', steps, True),
                                     ('loop', steps, False)):
            delays, took = asyncio.run(loop_delays(job, in_thread))
            results[name]['p99'].append(pct(delays, 0.99))
            results[name]['max'].append(max(delays) if delays else 0.0)
            results[name]['took'].append(took)
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    rows = [f'{points}-point JointTrajectory, 7 joints: {size / 1e6:.1f} MB of JSON; '
            f'median of {reps} interleaved runs; the wire form: {len(wire) / 1e6:.1f} MB, '
            f'{wire_s * 1000:.0f} ms (a big goal: {is_big_goal(goal)})',
            '', '| event loop while | probe delay p99 (ms) | max (ms) | conversion (s) |',
            '|---|---:|---:|---:|']
    labels = {'idle': 'idle',
              'thread': 'converting, then the wire form, in worker threads (the gateway)',
              'loop': 'converting, then the wire form, on the event loop (before)'}
    for name in ('idle', 'thread', 'loop'):
        took = '' if name == 'idle' else f'{med[name]["took"]:.2f}'
        rows.append(f'| {labels[name]} | {med[name]["p99"]:.2f} | {med[name]["max"]:.1f} '
                    f'| {took} |')
    return rows, {'thread_p99': med['thread']['p99'], 'thread_max': med['thread']['max'],
                  'loop_max': med['loop']['max'], 'idle_p99': med['idle']['p99']}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--points', type=int, default=10_000)
    parser.add_argument('--reps', type=int, default=5)
    args = parser.parse_args()
    print('### Tool schema sizes (compact JSON)\n')
    print('\n'.join(schema_table()))
    print("\n### Another call's wait while a big argument is converted\n")
    if _type('trajectory_msgs/msg/JointTrajectory') is None:
        print('trajectory_msgs is not installed (the test extra ros-trajectory-msgs): skipped')
        return 0
    shm = ShmGuard()  # rclpy's first import leaves LTTng-UST's wait area in /dev/shm
    try:
        rows, numbers = delay_table(args.points, args.reps)
    finally:
        shm.clean()
    print('\n'.join(rows))
    added = numbers['thread_p99'] - numbers['idle_p99']
    ok = added <= TARGET_DELAY_MS
    print(f'\nprobe delay p99 during conversion in a thread: {numbers["thread_p99"]:.2f} ms, '
          f'{added:.2f} ms over idle (target <= {TARGET_DELAY_MS:g} ms: '
          f'{"met" if ok else "NOT met"}); on the loop '
          f'it would be {numbers["loop_max"]:.0f} ms at worst, '
          f'{numbers["loop_max"] / max(numbers["thread_max"], 0.01):.0f}x the threaded worst')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""A recording driver, the tests' own judge of what really runs (not the lane manager's word).

A separate process serving test_msgs/Fibonacci action servers that behave like real drivers
(they accept every goal; a thread per goal) and append one JSON line per goal start and end to
a record file, stamped with CLOCK_MONOTONIC (one clock for every process on the host). The
test reads every record file and computes, per lane, how many goals ran at once.

    python test/recording_driver.py --record FILE \
        --driver /rec/a:lane:duration=4,cancel=run,answer_delay=2.5,delayed=1 ...

cancel=honour (default): a cancel ends the goal. cancel=run: the cancel is accepted but the
goal runs its full duration (a driver that ignores it). cancel=reject: cancels are refused.
answer_delay: the goal request is answered this late, for the first `delayed` goals.
status=volatile: its goal status is published volatile, so the lane manager's status reader
(transient local, like every action client's) is never matched with it: a driver that
answers, but whose status never reaches the lane manager.
Arguments after `--ros-args` go to rclpy (e.g. `-r __ns:=/robot1`).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import remove_ros_args
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_action_status_default)
from test_msgs.action import Fibonacci


def parse_driver(text: str) -> dict:
    name, lane, *rest = text.split(':')
    spec = {'name': name, 'lane': lane, 'duration': 2.0, 'cancel': 'honour',
            'answer_delay': 0.0, 'delayed': 1, 'status': 'transient_local'}
    for item in (rest[0].split(',') if rest and rest[0] else []):
        key, value = item.split('=')
        spec[key] = value if key in ('cancel', 'status') else float(value)
    return spec


class Recorder:
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._file = open(path, 'a', encoding='utf-8')

    def write(self, **record) -> None:
        record['t'] = time.monotonic()
        with self._lock:
            self._file.write(json.dumps(record) + '\n')
            self._file.flush()


class RecordingServer:
    def __init__(self, node: Node, spec: dict, recorder: Recorder, group) -> None:
        self.spec = spec
        self.recorder = recorder
        self.requests = 0
        status_qos = qos_profile_action_status_default
        if spec['status'] == 'volatile':
            status_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.VOLATILE)
        self.server = ActionServer(node, Fibonacci, spec['name'], execute_callback=self._execute,
                                   goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                   callback_group=group, status_pub_qos_profile=status_qos)

    def _on_goal(self, _goal) -> GoalResponse:
        self.requests += 1
        if self.spec['answer_delay'] and self.requests <= self.spec['delayed']:
            time.sleep(self.spec['answer_delay'])
        return GoalResponse.ACCEPT

    def _on_cancel(self, _handle) -> CancelResponse:
        return CancelResponse.REJECT if self.spec['cancel'] == 'reject' else CancelResponse.ACCEPT

    def _execute(self, handle):
        """The end is recorded when the goal stops running, before the driver reports it
        (terminal status, then the Result): the lane manager may act on that report.
        """
        goal_id = str(__import__('uuid').UUID(bytes=bytes(handle.goal_id.uuid)))
        base = {'driver': self.spec['name'], 'lane': self.spec['lane'], 'goal': goal_id}
        self.recorder.write(event='start', order=handle.request.order, **base)
        how = 'succeeded'
        try:
            end = time.monotonic() + self.spec['duration']
            while time.monotonic() < end:
                if handle.is_cancel_requested and self.spec['cancel'] == 'honour':
                    how = 'canceled'
                    break
                time.sleep(0.01)
        finally:
            self.recorder.write(event='end', how=how, **base)
        if how == 'canceled':
            handle.canceled()
            return Fibonacci.Result()
        handle.succeed()
        return Fibonacci.Result(sequence=[1, 2, 3])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--record', required=True)
    parser.add_argument('--driver', action='append', type=parse_driver, required=True)
    # ROS arguments (`--ros-args -r __ns:=/robot1`) are rclpy's: a relative driver name
    # then lands in that namespace, as a launched driver's does.
    args = parser.parse_args(remove_ros_args(sys.argv)[1:])
    rclpy.init()
    node = Node('recording_driver')
    group = ReentrantCallbackGroup()
    recorder = Recorder(args.record)
    servers = [RecordingServer(node, spec, recorder, group) for spec in args.driver]
    executor = MultiThreadedExecutor(num_threads=8)
    executor.add_node(node)
    print('recording_driver ready', len(servers), flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def read_records(paths) -> list[dict]:
    records = []
    for path in paths:
        if Path(path).exists():
            records += [json.loads(line) for line in Path(path).read_text().splitlines()
                        if line.strip()]
    return sorted(records, key=lambda r: (r['t'], r['event'] == 'start'))


def max_overlap(records: list[dict]) -> dict[str, int]:
    """Per lane, the most goals that ran at once (ends sort before starts at a tie)."""
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    for record in records:
        lane = record['lane']
        active[lane] = active.get(lane, 0) + (1 if record['event'] == 'start' else -1)
        peak[lane] = max(peak.get(lane, 0), active[lane])
    return peak


if __name__ == '__main__':
    sys.exit(main())

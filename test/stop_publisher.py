"""An emergency stop device as its own OS process: a pendant, a fleet supervisor, a watchdog.

    python test/stop_publisher.py --topic /estop --name pendant --namespace /robot \
        [--heartbeat 0.1] [--value false] [--stamps FILE]

Publishes std_msgs/Bool on --topic (reliable, transient local, as the lane manager reads it)
from a node of its own name. Each line on stdin (`true` / `false`) sets the value and
publishes it at once, then prints `published <value>`. With --heartbeat it also publishes
the current value that often (from the start if --value is given). --stamps appends the
CLOCK_MONOTONIC time of every message to FILE (one clock for every process on the host: the
bench measures from the last message of a publisher it kills).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import rclpy
from rclpy.node import Node
from std_msgs.msg import Bool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout first
from skill_lanes.interfaces import EMERGENCY_STOP_QOS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--topic', required=True)
    parser.add_argument('--name', required=True)
    parser.add_argument('--namespace', default='/')
    parser.add_argument('--heartbeat', type=float, default=None)
    parser.add_argument('--value', choices=('true', 'false'), default=None)
    parser.add_argument('--stamps', default=None)
    args = parser.parse_args()
    rclpy.init()
    node = Node(args.name, namespace=args.namespace)
    publisher = node.create_publisher(Bool, args.topic, EMERGENCY_STOP_QOS)
    lock = threading.Lock()
    value: Optional[bool] = None if args.value is None else args.value == 'true'
    stamps = open(args.stamps, 'a', encoding='utf-8') if args.stamps else None

    def publish(data: bool) -> None:
        with lock:
            publisher.publish(Bool(data=data))
            if stamps is not None:
                stamps.write(f'{time.monotonic()}\n')
                stamps.flush()

    def beat() -> None:
        while rclpy.ok():
            if value is not None:
                publish(value)
            time.sleep(args.heartbeat)

    if args.heartbeat:
        threading.Thread(target=beat, daemon=True).start()
    elif value is not None:
        publish(value)
    print('stop_publisher ready', flush=True)
    try:
        for line in sys.stdin:
            word = line.strip().lower()
            if word in ('true', 'false'):
                value = word == 'true'
                publish(value)
                print(f'published {word}', flush=True)
        if args.heartbeat:  # no stdin (or closed): beat on until stopped or killed
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""A client in its own OS process: sends N goals to one skill through the lane manager at
once and prints one JSON line per goal with its final status.
"""
import json
import sys
import time

import rclpy
from rclpy.action import ActionClient
from test_msgs.action import Fibonacci


def main() -> int:
    skill, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('goal_sender')
    client = ActionClient(node, Fibonacci, f'/lane_manager/skills/{skill}')
    try:
        if not client.wait_for_server(timeout_sec=30):
            print('no server', flush=True)
            return 1
        sends = [client.send_goal_async(Fibonacci.Goal()) for _ in range(count)]
        for send in sends:
            rclpy.spin_until_future_complete(node, send, timeout_sec=30)
        for send in sends:
            handle = send.result()
            if not handle.accepted:
                print(json.dumps({'status': 'rejected'}), flush=True)
                continue
            result = handle.get_result_async()
            rclpy.spin_until_future_complete(node, result, timeout_sec=60)
            print(json.dumps({'status': result.result().status, 't': time.time()}), flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == '__main__':
    raise SystemExit(main())

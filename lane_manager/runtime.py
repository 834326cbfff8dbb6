"""Process plumbing shared by every skill_lanes executable.

- `--config FILE` on the command line, or the ROS parameter `config_file` (how launch files
  pass it), names the one configuration file.
- Ctrl-C and SIGTERM end the process cleanly: the node gets to cancel what it forwarded
  before the executor stops (rclpy's own signal handler would shut the context down first).
- The executor spins in a background thread so the main thread can wait for the signal and
  then run the node's orderly shutdown while callbacks still flow.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, SingleThreadedExecutor)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from lane_manager.config import Config, ConfigError, load_config

CONFIG_PARAMETER = 'config_file'


def config_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--config', default=None,
                        help='skill_lanes YAML file (or ROS parameter config_file)')
    return parser


def parse_args(parser: argparse.ArgumentParser,
               argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
    """Split our own flags from the ROS arguments (`--ros-args ...`)."""
    args_without_ros = rclpy.utilities.remove_ros_args(args=list(argv) if argv else None)
    return parser.parse_args(args_without_ros[1:]), list(argv) if argv else []


def resolve_config(node: Node, cli_path: Optional[str]) -> Config:
    """The config file from the command line, else the `config_file` parameter."""
    node.declare_parameter(CONFIG_PARAMETER, cli_path or '')
    path = node.get_parameter(CONFIG_PARAMETER).get_parameter_value().string_value
    if not path:
        raise ConfigError('<none>: <file>: no config file (use --config FILE or '
                          f'--ros-args -p {CONFIG_PARAMETER}:=FILE)')
    return load_config(path)


def claim_ros_domain(first: int = 1, last: int = 100) -> tuple[int, object]:
    """A ROS_DOMAIN_ID no other isolated run on this host holds (tests, soak, demo).

    One flock per domain id in the temp folder; the lock is held as long as the returned
    handle lives and the kernel frees it when the process ends. 1..100 is valid everywhere
    and stays away from the default domain 0 a robot on the same host may use.
    """
    import fcntl
    import random
    import tempfile
    count = last - first + 1
    start = random.randrange(count)
    for offset in range(count):
        domain = first + (start + offset) % count
        handle = open(f'{tempfile.gettempdir()}/skill_lanes_ros_domain_{domain}.lock', 'w')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except OSError:
            handle.close()
    raise RuntimeError(f'every ROS domain {first}..{last} is held by another run on this host')


class ShutdownSignal:
    """SIGINT / SIGTERM set an event instead of raising in a random place."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal API
        self.event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self.event.wait(timeout)


class BackgroundExecutor:
    """An executor spinning in a daemon thread.

    num_threads=1 gives a SingleThreadedExecutor: for nodes whose callbacks never block it
    saves a thread hand-over per callback (measurably faster relaying); nodes with blocking
    callbacks (the simulated driver) need several threads.
    """

    def __init__(self, node: Node, num_threads: Optional[int] = None) -> None:
        self.executor: Executor = (SingleThreadedExecutor() if num_threads == 1
                                   else MultiThreadedExecutor(num_threads=num_threads))
        self.executor.add_node(node)
        self._node = node
        self._stopping = False
        self._thread = threading.Thread(target=self._spin, name='ros-executor', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """Spin until shutdown. A callback that raises is logged, not fatal: a dead executor
        thread would leave the process up but deaf, the worst failure for a robot."""
        while rclpy.ok(context=self.executor.context):
            try:
                self.executor.spin_once(timeout_sec=0.5)
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception as exc:  # noqa: BLE001 - see docstring
                if self._stopping:
                    return
                self._node.get_logger().error(f'callback raised: {exc!r}')

    def shutdown(self) -> None:
        self._stopping = True
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)


def run_node(build: Callable[[], Node], ready_message: str,
             before_stop: Optional[Callable[[Node], None]] = None,
             num_threads: Optional[int] = None, argv: Optional[Sequence[str]] = None) -> int:
    """Init ROS, build the node, spin until Ctrl-C/SIGTERM, stop cleanly. Returns exit code.

    A ConfigError while building prints one line and returns 2 (no traceback).
    """
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = ShutdownSignal()
    node: Optional[Node] = None
    try:
        try:
            node = build()
        except ConfigError as exc:
            print(f'config error: {exc}', file=sys.stderr, flush=True)
            return 2
        background = BackgroundExecutor(node, num_threads)
        node.get_logger().info(ready_message)
        print(ready_message, flush=True)
        stop.wait()
        if before_stop is not None:
            before_stop(node)
        background.shutdown()
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()

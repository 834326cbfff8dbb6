"""Process plumbing shared by every skill_lanes executable (lane_manager, sim_driver, gateway).

- The one configuration file comes from `--config FILE`, else the ROS parameter
  `config_file` (how launch files pass it), else the environment variable SKILL_LANES_CONFIG
  (for MCP hosts such as the Inspector that own the command line); `config_path` says so.
- Ctrl-C and SIGTERM (systemd, `docker stop`, `timeout`) end the process the same way:
  an orderly stop, exit 0, no traceback. The node gets to cancel what it forwarded before the
  executor stops (rclpy's own signal handler would shut the context down first).
- The executor spins in a background thread so the main thread can wait for the signal and
  then run the node's orderly shutdown while callbacks still flow.
- On every exit path the node and the context are destroyed (`close_ros`): that is what
  removes the DDS participant and its Fast DDS files in /dev/shm.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, SingleThreadedExecutor)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from skill_lanes import dds_files
from skill_lanes.config import Config, ConfigError, load_config
from skill_lanes.stop_signal import StopSignal

CONFIG_PARAMETER = 'config_file'
# How often the spin thread checks its stop flag. `Executor.wake()` does not end a
# `spin_once` that has nothing else to do (rclpy waits again until the timeout), so this
# bounds how long a stop waits for the spin thread.
SPIN_PERIOD_S = 0.1
CONFIG_ENV = 'SKILL_LANES_CONFIG'
NO_CONFIG = (f'<none>: <file>: no config file (use --config FILE, --ros-args -p '
             f'{CONFIG_PARAMETER}:=FILE or the environment variable {CONFIG_ENV})')


def config_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the `--config` flag every executable shares."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--config', default=None,
                        help=f'skill_lanes YAML file (or ROS parameter {CONFIG_PARAMETER}, '
                             f'or env {CONFIG_ENV})')
    return parser


def parse_args(parser: argparse.ArgumentParser,
               argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
    """Split our own flags from the ROS arguments (`--ros-args ...`)."""
    args_without_ros = rclpy.utilities.remove_ros_args(args=list(argv) if argv else None)
    return parser.parse_args(args_without_ros[1:]), list(argv) if argv else []


def config_path(cli_path: Optional[str], ros_argv: Sequence[str] = ()) -> str:
    """The config file: `--config`, else `-p config_file:=FILE`, else SKILL_LANES_CONFIG.

    For executables that need the config before their node exists (the gateway picks its
    transport from it). Raises ConfigError naming all three ways when none is given.
    """
    if cli_path:
        return cli_path
    prefix = f'{CONFIG_PARAMETER}:='
    for flag, value in zip(ros_argv, list(ros_argv)[1:]):
        if flag == '-p' and value.startswith(prefix):
            return value[len(prefix):]
    path = os.environ.get(CONFIG_ENV, '')
    if not path:
        raise ConfigError(NO_CONFIG)
    return path


def resolve_config(node: Node, cli_path: Optional[str]) -> Config:
    """The config file from the `config_file` parameter, else `--config`, else the env."""
    node.declare_parameter(CONFIG_PARAMETER, cli_path or os.environ.get(CONFIG_ENV, ''))
    path = node.get_parameter(CONFIG_PARAMETER).get_parameter_value().string_value
    if not path:
        raise ConfigError(NO_CONFIG)
    return load_config(path)


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
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='ros-executor', daemon=True)
        self._thread.start()

    @property
    def thread_id(self) -> Optional[int]:
        """The spinning thread's ident: a single-threaded executor's callbacks run on it."""
        return self._thread.ident

    def _spin(self) -> None:
        """Spin until stopped. A callback that raises is logged, not fatal.

        A dead executor thread would leave the process up but deaf, the worst failure for a
        robot. The loop checks its own stop flag: after `Executor.shutdown` rclpy's
        `spin_once` returns at once, so a loop on `rclpy.ok()` alone would spin hot and never
        let the node and its DDS participant be destroyed.
        """
        while not self._stopping.is_set() and rclpy.ok(context=self.executor.context):
            try:
                self.executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception as exc:  # noqa: BLE001 - see docstring
                if self._stopping.is_set():
                    return
                self._node.get_logger().error(f'callback raised: {exc!r}')

    def shutdown(self, timeout_s: float = 2.0) -> bool:
        """Stop spinning and wait for the running callbacks. True if all of it ended in time.

        The spin thread is woken and joined first, then the executor is shut down (its
        worker threads joined): only then may the node and the context be destroyed.
        """
        self._stopping.set()
        self.executor.wake()
        self._thread.join(timeout=timeout_s)
        finished = self.executor.shutdown(timeout_sec=timeout_s)
        return finished and not self._thread.is_alive()


def close_ros(node: Optional[Node], context: Optional[Context] = None) -> None:
    """Destroy the node and shut down and destroy the context (idempotent).

    Destroying the node and the context is what removes the DDS participant and, with it,
    the Fast DDS shared-memory files in /dev/shm; a process that merely exits leaves them.
    A port segment of ours that outlived its lock file is removed too (see dds_files).
    """
    context = context or rclpy.get_default_context()
    own_files = dds_files.shm_of_process(os.getpid())
    if node is not None:
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - already destroyed or the context is gone
            pass
    # Entities no one destroyed explicitly (e.g. action clients, which destroy_node leaves)
    # keep the context "in use" and defer its destruction to interpreter exit; collecting
    # them first lets the participant go now.
    gc.collect()
    rclpy.try_shutdown(context=context)
    destroy = getattr(context, 'destroy', None)  # rclpy 7.1 and 9.1 both have it
    if destroy is not None:
        destroy()
    dds_files.remove_dead_ports(own_files)


def run_node(build: Callable[[], Node], ready_message: str,
             before_stop: Optional[Callable[[Node], None]] = None,
             num_threads: Optional[int] = None, argv: Optional[Sequence[str]] = None) -> int:
    """Init ROS, build the node, spin until Ctrl-C/SIGTERM, stop cleanly. Returns exit code.

    Ctrl-C and SIGTERM both exit 0 after an orderly stop. A ConfigError while building
    prints one line and returns 2 (no traceback). The node and the context are destroyed on
    every path, so no Fast DDS file is left in /dev/shm.
    """
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignal()
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
        if not background.shutdown():
            node.get_logger().warning('callbacks still running at exit')
        return 0
    finally:
        close_ros(node)

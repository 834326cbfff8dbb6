"""Shared plumbing for the skill_lanes benchmarks (not a benchmark itself).

- `isolate(domain)`: the ROS environment every bench process runs with (own domain id,
  Fast DDS over loopback UDP only, as in the tests). Call it before importing rclpy.
- `Proc`: one OS process started by a bench, output in a log file, always stopped
  (SIGINT, then SIGTERM, then SIGKILL to its process group).
- `RssSampler`: peak resident memory of some processes (psutil samples + the kernel's VmHWM).
- `ShmGuard` (from skill_lanes_sim.isolation): removes the Fast DDS and LTTng-UST files
  a bench left in /dev/shm.
- `RoundTrips`: event-driven goal timing from an in-process rclpy client (no polling: the
  timestamps are taken in the rclpy callbacks themselves, on time.monotonic()).
"""
from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from skill_lanes_sim import isolation  # noqa: E402
from skill_lanes_sim.processes import ManagedProcess  # noqa: E402
from skill_lanes_sim.isolation import ShmGuard  # noqa: E402,F401 - re-exported


def isolate(domain: int) -> dict[str, str]:
    """Set (and return) the environment of an isolated, loopback-only ROS run.

    The same environment as the tests (skill_lanes_sim.isolation), plus this checkout
    on PYTHONPATH for the processes a bench starts.
    """
    env = isolation.isolate(domain)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH'))
                                        if p)
    os.environ['PYTHONPATH'] = env['PYTHONPATH']
    return env


_DOMAIN_LOCKS: list = []


def _graph_is_empty(domain: int, listen_s: float = 1.5) -> bool:
    """No other ROS node seen on `domain` within listen_s (own short-lived context)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = Node('bench_domain_probe', context=context)
        try:
            deadline = time.monotonic() + listen_s
            while time.monotonic() < deadline:
                if [n for n, _ in node.get_node_names_and_namespaces()
                        if n != 'bench_domain_probe']:
                    return False
                time.sleep(0.1)
            return True
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def claim_domains(preferred: int, count: int = 1, first: int = 150, last: int = 232) -> int:
    """`count` consecutive ROS domain ids nobody else uses, starting at the result.

    Same flock files as skill_lanes_sim.isolation.claim_ros_domain (held until this process
    exits), and the graph must be empty: another session's bench on the same domain would
    serve the same action names, and goals would go to both.
    """
    import fcntl
    candidates = [preferred] + [d for d in range(first, last - count + 2) if d != preferred]
    for start in candidates:
        handles = []
        try:
            for domain in range(start, start + count):
                handle = open(f'{tempfile.gettempdir()}/skill_lanes_ros_domain_{domain}.lock',
                              'w')
                handles.append(handle)
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            for handle in handles:
                handle.close()
            continue
        if all(_graph_is_empty(domain) for domain in range(start, start + count)):
            _DOMAIN_LOCKS.extend(handles)
            return start
        for handle in handles:
            handle.close()
    raise RuntimeError(f'no free ROS domain in {first}..{last}')


def exit_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every started process is stopped."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal API
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def start_bench(preferred_domain: int, domains: int = 1) -> tuple[int, dict[str, str], Any]:
    """Every bench's start: isolated ROS on free domains, SIGTERM unwinding, a /dev/shm guard.

    Isolates once before claiming (the graph probe of `claim_domains` must not see the
    host's ROS), then on the claimed domain. Returns (domain, environment, ShmGuard).
    The guard looks at /dev/shm first: the probe is this process's first rclpy import,
    which creates LTTng-UST's wait area, and the guard must count that as this run's.
    """
    shm = ShmGuard()
    isolate(preferred_domain)
    exit_on_sigterm()
    domain = claim_domains(preferred_domain, count=domains)
    env = isolate(domain)
    return domain, env, shm


# ------------------------------------------------------------------ processes
READY_S = 30.0  # a bench process's start on a busy 2-core machine


class Procs:
    """Every process of one bench; `stop_all` in reverse start order."""

    def __init__(self, prefix: str) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix=f'{prefix}_'))
        self.procs: list[ManagedProcess] = []

    def python(self, *args: str, name: str) -> ManagedProcess:
        proc = ManagedProcess([PYTHON, *args], name=name, log_dir=self.logdir)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def cleanup_logs(self) -> None:
        for path in self.logdir.glob('*'):
            path.unlink(missing_ok=True)
        try:
            self.logdir.rmdir()
        except OSError:
            pass


# ------------------------------------------------------------------ memory
def vm_hwm_bytes(pid: int) -> Optional[int]:
    """The kernel's peak RSS of a process (VmHWM), in bytes."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Samples the RSS of processes every `period_s` in a thread; keeps the peak per pid."""

    def __init__(self, pids: Callable[[], Iterable[int]], period_s: float = 0.02) -> None:
        import psutil
        self._psutil = psutil
        self._pids = pids
        self._period = period_s
        self.peak: dict[int, int] = {}
        self.hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='rss-sampler', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._period)

    def sample(self) -> None:
        for pid in list(self._pids()):
            try:
                rss = self._psutil.Process(pid).memory_info().rss
            except (self._psutil.Error, OSError):
                continue
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            hwm = vm_hwm_bytes(pid)
            if hwm:
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sample()

    def peak_mb(self) -> float:
        """max(sampled RSS, VmHWM) over all pids, in MB (10^6 bytes)."""
        values = list(self.peak.values()) + list(self.hwm.values())
        return max(values) / 1e6 if values else float('nan')




# ------------------------------------------------------------------ statistics
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float('nan')


def pct(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float('nan')
    return statistics.quantiles(values, n=100)[q - 1]


def verdict(value: float, target: float) -> str:
    return 'met' if value <= target else 'MISSED'


# ------------------------------------------------------------------ goal timing
class GoalTiming:
    """Timestamps of one goal, taken in the rclpy callbacks (time.monotonic)."""

    __slots__ = ('sent', 'accepted_at', 'result_at', 'accepted', 'status', 'event')

    def __init__(self) -> None:
        self.sent = 0.0
        self.accepted_at: Optional[float] = None
        self.result_at: Optional[float] = None
        self.accepted: Optional[bool] = None
        self.status: Optional[int] = None
        self.event = threading.Event()

    @property
    def accept_latency(self) -> float:
        return (self.accepted_at or float('nan')) - self.sent

    @property
    def round_trip(self) -> float:
        return (self.result_at or float('nan')) - self.sent

    def wait(self, timeout: float) -> 'GoalTiming':
        if not self.event.wait(timeout):
            raise TimeoutError(f'goal not finished within {timeout:g} s')
        return self


def send_timed(client: Any, goal: Any, executor: Any = None,
               then: Optional[Callable[[], None]] = None) -> GoalTiming:
    """Send a goal; the result is requested in the acceptance callback, as soon as possible.

    With `executor` (a SingleThreadedExecutor spinning in another thread) the goal is sent
    from inside that executor: rclpy 9.1.2's `ActionClient.send_goal_async` registers the
    future it returns outside its lock (a leftover of the ros2/rclpy#1123 fix), so a goal
    response processed meanwhile by the spinning thread is lost and the future never
    completes. Sending on the executor's own thread closes that window.
    `then`, if given, runs in the result callback (the executor's thread) before the
    timing is marked done: a client's next step after a goal ends.
    """
    timing = GoalTiming()

    def on_result(future: Any) -> None:
        timing.result_at = time.monotonic()
        try:
            timing.status = future.result().status
        except Exception:  # noqa: BLE001 - recorded as no status
            timing.status = None
        if then is not None:
            then()
        timing.event.set()

    def on_goal(future: Any) -> None:
        timing.accepted_at = time.monotonic()
        try:
            handle = future.result()
        except Exception:  # noqa: BLE001
            handle = None
        timing.accepted = bool(handle is not None and handle.accepted)
        if not timing.accepted:
            timing.event.set()
            return
        handle.get_result_async().add_done_callback(on_result)

    def send() -> None:
        timing.sent = time.monotonic()
        client.send_goal_async(goal).add_done_callback(on_goal)

    executor = executor or getattr(client, 'bench_executor', None)
    if executor is None:
        send()
    else:
        executor.create_task(send)
    return timing


def spin_forever(executor: Any) -> None:
    """Spin until shutdown; an exception raised by a callback is printed, not fatal.

    A dead spin thread would turn every later goal into a timeout.
    """
    import traceback

    from rclpy.executors import ExternalShutdownException, ShutdownException
    while executor.context.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except (ShutdownException, ExternalShutdownException):
            return
        except Exception:  # noqa: BLE001
            if not executor.context.ok():
                return
            print('bench client: callback raised:', file=sys.stderr)
            traceback.print_exc()


def wait_servers(clients: Iterable[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for client in clients:
        while not client.server_is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f'action server {client._action_name} not discovered '
                                   f'within {timeout:g} s')
            time.sleep(0.02)


def warm_up(clients: Iterable[Any], make_goal: Callable[[], Any], count: int = 5,
            attempt_s: float = 3.0, deadline_s: float = 45.0) -> int:
    """Send goals to each client until `count` in a row succeed; returns the goals lost.

    The first requests after discovery can lose their response (Fast DDS has matched the
    request reader but not yet the response writer): a timing must never include that.
    """
    lost = 0
    deadline = time.monotonic() + deadline_s
    for client in clients:
        in_a_row = 0
        while in_a_row < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f'{client._action_name}: no {count} goals in a row '
                                   f'succeeded within {deadline_s:g} s ({lost} lost)')
            timing = send_timed(client, make_goal())
            if timing.event.wait(attempt_s) and timing.status == 4:
                in_a_row += 1
            else:
                lost += 1
                in_a_row = 0
    return lost

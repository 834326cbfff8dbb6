"""Benchmark: what the lane manager costs on top of talking to a driver directly.

One run, real OS processes on loopback (sim_driver, lane_manager, a timestamping driver), an
rclpy client in this process; every pair below is measured in the same run, interleaved:

a. goal -> result round trip of a zero-length goal (sim `duration_s: 0, feedback_hz: 0`):
   client -> lane manager -> sim driver vs client -> sim driver; medians (target ratio <= 1.6).
b. lane hand-off: end of goal A at the driver to the start of the queued goal B at the
   driver (timestamps taken inside a driver process of this script, CLOCK_MONOTONIC is
   shared by all processes of the host) vs a direct goal's send -> accepted (target <= 1.5).
   And the baseline a user would compare with, a client that serializes by itself: it sends
   A straight to the driver, and B straight to the driver from A's result callback; A's end
   -> B accepted at the driver, both ways (target <= 1.3).
c. K lanes, one 1 s goal each, sent together: wall time / 1 s (target <= 1.1).
d. peak RSS of the lane manager process with 50 skills configured (target <= 150 MB).

Usage: python bench/bench_lane_manager.py [--rounds 200] [--handoffs 60] [--lanes 4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402
from _stack import (GoalTiming, Procs, RssSampler, median, pct,  # noqa: E402
                    send_timed, verdict, vm_hwm_bytes, wait_servers, warm_up)

DEFAULT_DOMAIN = 171
TARGETS = {'a': 1.6, 'b': 1.5, 'b_serial': 1.3, 'c': 1.1, 'd': 150.0}


def phase1_config(lanes: int) -> str:
    long_lanes = '\n'.join(f'  l{k}: {{policy: queue, max_hold_s: 10, cancel_grace_s: 2}}'
                           for k in range(lanes))
    long_skills = '\n'.join(
        f'  long{k}: {{lane: l{k}, action_type: test_msgs/action/Fibonacci, '
        f'driver: /sim/long{k}}}' for k in range(lanes))
    return textwrap.dedent("""\
        lanes:
          fast: {policy: queue, max_queue: 8, max_hold_s: 5, cancel_grace_s: 2}
          handoff: {policy: queue, max_queue: 8, max_hold_s: 5, cancel_grace_s: 2}
        """) + long_lanes + '\n' + textwrap.dedent("""\
        skills:
          zero: {lane: fast, action_type: test_msgs/action/Fibonacci, driver: /sim/zero}
          handoff: {lane: handoff, action_type: test_msgs/action/Fibonacci,
                    driver: /bench/handoff}
        """) + long_skills + '\n' + textwrap.dedent("""\
        lane_manager: {driver_response_s: 3.0}
        sim:
          default: {duration_s: 1.0, feedback_hz: 5}
          skills:
            zero: {duration_s: 0, feedback_hz: 0}
            handoff: {outcome: absent}
        """)


def phase2_config(skills: int = 50, lanes: int = 10) -> str:
    lines = ['lanes:']
    lines += [f'  g{k}: {{policy: queue, max_queue: 16, max_hold_s: 5, cancel_grace_s: 2}}'
              for k in range(lanes)]
    lines.append('skills:')
    lines += [f'  s{i:02d}: {{lane: g{i % lanes}, action_type: test_msgs/action/Fibonacci, '
              f'driver: /sim50/s{i:02d}}}' for i in range(skills)]
    lines += ['lane_manager: {namespace: /lm50, driver_response_s: 3.0}',
              'sim:', '  default: {duration_s: 0, feedback_hz: 0}']
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------ timestamping driver
def run_driver(out_path: str, ros_argv: list[str]) -> int:
    """Driver process for (b): /bench/handoff, /bench/direct and /bench/serial (the client
    that serializes by itself), `order` = duration in ms.

    Per goal it appends one JSON line: server, order, accepted (handle_accepted callback),
    start (execute callback entered), end (goal succeeded, just before returning).
    """
    from rclpy.action import ActionServer, CancelResponse, GoalResponse
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.node import Node
    from test_msgs.action import Fibonacci

    from skill_lanes.runtime import run_node

    out = open(out_path, 'a', buffering=1)
    lock = threading.Lock()

    def build() -> Node:
        node = Node('bench_driver')
        group = ReentrantCallbackGroup()
        accepted_at: dict[bytes, float] = {}

        def make(server_name: str) -> ActionServer:
            def on_accepted(goal_handle: Any) -> None:
                accepted_at[bytes(goal_handle.goal_id.uuid)] = time.monotonic()
                goal_handle.execute()

            def execute(goal_handle: Any) -> Any:
                start = time.monotonic()
                order = goal_handle.request.order
                if order > 0:
                    time.sleep(order / 1000.0)
                goal_handle.succeed()
                end = time.monotonic()
                record = {'server': server_name, 'order': order,
                          'accepted': accepted_at.pop(bytes(goal_handle.goal_id.uuid), None),
                          'start': start, 'end': end}
                with lock:
                    out.write(json.dumps(record) + '\n')
                return Fibonacci.Result()

            return ActionServer(node, Fibonacci, server_name, execute_callback=execute,
                                goal_callback=lambda goal: GoalResponse.ACCEPT,
                                handle_accepted_callback=on_accepted,
                                cancel_callback=lambda handle: CancelResponse.ACCEPT,
                                callback_group=group)

        node._bench_servers = [make('/bench/handoff'), make('/bench/direct'),
                               make('/bench/serial')]
        return node

    return run_node(build, 'bench driver ready', num_threads=4, argv=ros_argv)


# ------------------------------------------------------------------ the bench client
class Client:
    """An rclpy node in this process, its SingleThreadedExecutor spinning in a thread."""

    def __init__(self, domain_id: Optional[int] = None) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        self.rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('bench_client', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name='bench-spin')
        self._thread.start()
        self._clients: dict[str, Any] = {}

    def _spin(self) -> None:
        """spin(), but a callback's exception is reported and spinning goes on."""
        _stack.spin_forever(self.executor)

    def action(self, name: str) -> Any:
        from test_msgs.action import Fibonacci

        from skill_lanes.action_link import RaceFreeActionClient
        if name not in self._clients:  # made while the executor spins: see RaceFreeActionClient
            client = RaceFreeActionClient(self.node, Fibonacci, name)
            client.bench_executor = self.executor  # see _stack.send_timed
            self._clients[name] = client
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            client.destroy()
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=3.0)
        self.node.destroy_node()
        if self.context.ok():
            self.rclpy.shutdown(context=self.context)


def goal(order: int = 0) -> Any:
    from test_msgs.action import Fibonacci
    return Fibonacci.Goal(order=order)


MAX_LOST = 20
LOST: dict[str, int] = {}  # goals that never ended, or did not succeed, per measurement


def timed(client: Any, order: int = 0, timeout: float = 5.0,
          what: str = '?') -> Optional[GoalTiming]:
    """One goal, waited for; None (and counted in LOST[what]) unless it succeeded in time."""
    timing = send_timed(client, goal(order))
    if timing.event.wait(timeout) and timing.accepted and timing.status == 4:
        return timing
    LOST[what] = LOST.get(what, 0) + 1
    if sum(LOST.values()) > MAX_LOST:
        raise RuntimeError(f'more than {MAX_LOST} goals lost ({LOST}): the ROS graph of this '
                           'run is unhealthy (see the process logs with --keep-logs)')
    return None


def send_serialized(client: Any, first: Any, second: Any) -> tuple[GoalTiming, dict]:
    """A client that serializes by itself: B is sent the moment A's result arrives.

    B goes out from A's result callback, on the client's executor thread (no thread hop, no
    extra executor turn): the best a client can do without a lane manager. Returns A's
    timing and a dict whose 'b' is B's timing, set before A's timing is marked done.
    """
    then: dict[str, GoalTiming] = {}

    def send_second() -> None:
        then['b'] = send_timed(client, second, executor=_Immediate())

    return send_timed(client, first, then=send_second), then


class _Immediate:
    """An `executor` for send_timed that sends at once (the caller is on the executor)."""

    def create_task(self, fn: Any) -> None:
        fn()


def lenient_warm_up(clients: list, count: int, what: str) -> None:
    try:
        warm_up(clients, goal, count=count, deadline_s=30)
    except RuntimeError as exc:
        LOST[f'{what} warm-up'] = LOST.get(f'{what} warm-up', 0) + 1
        print(f'warning: {exc}', file=sys.stderr)


# ------------------------------------------------------------------ measurements
def measure_round_trips(c: Client, rounds: int, warmup: int) -> dict[str, list[GoalTiming]]:
    via_lm, direct = c.action('/lane_manager/skills/zero'), c.action('/sim/zero')
    lenient_warm_up([direct, via_lm], warmup, 'a')
    samples: dict[str, list[GoalTiming]] = {'lm': [], 'direct': []}
    for i in range(rounds):
        order = (('lm', via_lm), ('direct', direct))
        for key, client in (order if i % 2 == 0 else order[::-1]):
            timing = timed(client, what=f'a {key}')
            if timing is not None:
                samples[key].append(timing)
    return samples


def handoff_pairs(records: list[dict], server: str, begin: float,
                  hold_ms: int) -> tuple[list[float], list[float], int]:
    """A's end -> B's start and A's end -> B accepted, for each (A, B) pair of `server`."""
    ordered = sorted((r for r in records if r['server'] == server and r['start'] >= begin),
                     key=lambda r: r['start'])
    to_start, to_accept, bad = [], [], 0
    for a, b in zip(ordered, ordered[1:]):
        if a['order'] != hold_ms:
            continue
        if b['order'] != 0 or b['accepted'] is None:
            bad += 1
            continue
        to_start.append(b['start'] - a['end'])
        to_accept.append(b['accepted'] - a['end'])
    return to_start, to_accept, bad


def measure_handoffs(c: Client, driver_log: Path, handoffs: int,
                     hold_ms: int = 100) -> dict[str, list[float]]:
    """Ours (B queued in the lane manager) and a self-serializing client, interleaved."""
    via_lm, direct = c.action('/lane_manager/skills/handoff'), c.action('/bench/direct')
    serial = c.action('/bench/serial')
    lenient_warm_up([direct, via_lm, serial], 10, 'b')
    direct_accept: list[float] = []
    begin = time.monotonic()

    def ours() -> None:
        first = send_timed(via_lm, goal(hold_ms))
        # B only once A is accepted (it then waits in the lane's queue while A runs): rclpy 7
        # (Jazzy) may run two tasks created back to back in reverse order, and B would then
        # reach the lane manager first and "hand off" to the next round's goal.
        deadline = time.monotonic() + 5
        while first.accepted_at is None and not first.event.is_set() and \
                time.monotonic() < deadline:
            time.sleep(0.001)
        second = send_timed(via_lm, goal(0))
        for timing in (first, second):
            if not timing.event.wait(5) or timing.status != 4:
                LOST['b lane manager'] = LOST.get('b lane manager', 0) + 1

    def serialized() -> None:
        first, then = send_serialized(serial, goal(hold_ms), goal(0))
        if not first.event.wait(5) or first.status != 4 or \
                not then['b'].event.wait(5) or then['b'].status != 4:
            LOST['b serial'] = LOST.get('b serial', 0) + 1

    for i in range(handoffs):
        for run in ((ours, serialized) if i % 2 == 0 else (serialized, ours)):
            run()
        for _ in range(3):
            timing = timed(direct, what='b direct')
            if timing is not None:
                direct_accept.append(timing.accept_latency)
    time.sleep(0.3)
    records = [json.loads(line) for line in driver_log.read_text().splitlines() if line]
    to_start, to_accept, bad = handoff_pairs(records, '/bench/handoff', begin, hold_ms)
    _, serial_accept, bad_serial = handoff_pairs(records, '/bench/serial', begin, hold_ms)
    if bad or bad_serial:
        print(f'warning: {bad} + {bad_serial} (serial) hand-off pairs were incomplete and '
              'skipped', file=sys.stderr)
    return {'start': to_start, 'accepted': to_accept, 'direct_accept': direct_accept,
            'serial_accepted': serial_accept}


def measure_lanes(c: Client, lanes: int, reps: int) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {'lm': [], 'direct': []}
    paths = {'lm': [c.action(f'/lane_manager/skills/long{k}') for k in range(lanes)],
             'direct': [c.action(f'/sim/long{k}') for k in range(lanes)]}
    # one warm-up goal per path and lane, all at once (they last 1 s each)
    warm = [send_timed(client, goal()) for client in paths['direct'] + paths['lm']]
    for timing in warm:
        timing.event.wait(12)
    for rep in range(reps):
        for key in (('lm', 'direct') if rep % 2 == 0 else ('direct', 'lm')):
            timings = [send_timed(client, goal()) for client in paths[key]]
            ok = [t.event.wait(6) and t.status == 4 for t in timings]
            if not all(ok):
                LOST[f'c {key}'] = LOST.get(f'c {key}', 0) + ok.count(False)
                continue
            walls[key].append(max(t.result_at for t in timings) - min(t.sent for t in timings))
    return walls


def measure_memory(c: Client, procs: Procs, tmp: Path, rounds: int) -> dict[str, Any]:
    """In a domain of its own (os.environ and the client's context say which)."""
    cfg = tmp / 'lm50.yaml'
    cfg.write_text(phase2_config())
    sim = procs.python('-m', 'skill_lanes_sim.sim_driver', '--config', str(cfg), name='sim50')
    lm = procs.python('-m', 'lane_manager.node', '--config', str(cfg), name='lm50')
    sim.wait_for_output('sim_driver ready', timeout=_stack.READY_S)
    lm.wait_for_output('lane_manager ready', timeout=_stack.READY_S)
    sampler = RssSampler(lambda: [lm.pid])
    time.sleep(0.5)
    idle_rss = sampler.peak.get(lm.pid, 0) / 1e6
    clients = [c.action(f'/lm50/skills/s{i:02d}') for i in range(50)]
    problem = None
    burst_walls: list[float] = []
    round_trips: list[float] = []
    try:
        wait_servers(clients)
        lenient_warm_up(clients, 1, 'd')  # every forwarding client used once
        for _ in range(rounds):  # all 50 skills at once: queues of 5 on each of 10 lanes
            timings = [send_timed(client, goal()) for client in clients]
            ok = [t.event.wait(10) and t.status == 4 for t in timings]
            if not all(ok):
                LOST['d burst'] = LOST.get('d burst', 0) + ok.count(False)
                continue
            burst_walls.append(max(t.result_at for t in timings) - min(t.sent for t in timings))
        round_trips = [t.round_trip for t in (timed(clients[0], what='d round trip')
                                              for _ in range(100)) if t is not None]
    except (RuntimeError, TimeoutError) as exc:
        problem = str(exc)
        print(f'warning: 50-skill traffic incomplete: {problem}', file=sys.stderr)
    sampler.stop()
    return {'idle_mb': idle_rss, 'peak_mb': sampler.peak_mb(),
            'hwm_mb': (vm_hwm_bytes(lm.pid) or 0) / 1e6,
            'burst_s': median(burst_walls), 'rt50': round_trips, 'problem': problem}


def ms(value: float) -> str:
    return f'{value * 1000:.2f}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=200, help='(a) samples per path')
    parser.add_argument('--warmup', type=int, default=20)
    parser.add_argument('--handoffs', type=int, default=60, help='(b) hand-offs')
    parser.add_argument('--lanes', type=int, default=4, help='(c) K')
    parser.add_argument('--reps', type=int, default=5, help='(c) repetitions')
    parser.add_argument('--bursts', type=int, default=4, help='(d) 50-goal bursts')
    parser.add_argument('--domain', type=int,
                        default=int(os.environ.get('BENCH_ROS_DOMAIN_ID', DEFAULT_DOMAIN)),
                        help='ROS domain id (the 50-skill stack uses the next one)')
    parser.add_argument('--only', default='abcd', help='which measurements (default abcd)')
    parser.add_argument('--keep-logs', action='store_true')
    parser.add_argument('--driver', metavar='OUT', help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.driver:
        return run_driver(args.driver, sys.argv)

    args.domain, _, shm = _stack.start_bench(args.domain, domains=2)
    procs = Procs('bench_lane_manager')
    tmp = Path(tempfile.mkdtemp(prefix='bench_lm_cfg_'))
    client: Optional[Client] = None
    started = time.monotonic()
    try:
        cfg = tmp / 'lm.yaml'
        cfg.write_text(phase1_config(args.lanes))
        driver_log = tmp / 'driver.jsonl'
        sim = procs.python('-m', 'skill_lanes_sim.sim_driver', '--config', str(cfg), name='sim')
        drv = procs.python(__file__, '--driver', str(driver_log), name='bench_driver')
        lm = procs.python('-m', 'lane_manager.node', '--config', str(cfg), name='lane_manager')
        for proc, text in ((sim, 'sim_driver ready'), (drv, 'bench driver ready'),
                           (lm, 'lane_manager ready')):
            proc.wait_for_output(text, timeout=_stack.READY_S)
        client = Client()
        wait_servers([client.action(n) for n in (
            '/lane_manager/skills/zero', '/sim/zero', '/lane_manager/skills/handoff',
            '/bench/direct', '/bench/serial',
            *(f'/lane_manager/skills/long{k}' for k in range(args.lanes)),
            *(f'/sim/long{k}' for k in range(args.lanes)))])
        time.sleep(0.5)  # let the lane manager's own discovery of the drivers settle

        rt = (measure_round_trips(client, args.rounds, args.warmup) if 'a' in args.only
              else {'lm': [], 'direct': []})
        handoff = (measure_handoffs(client, driver_log, args.handoffs) if 'b' in args.only
                   else {'start': [], 'accepted': [], 'direct_accept': [],
                         'serial_accepted': []})
        walls = (measure_lanes(client, args.lanes, args.reps) if 'c' in args.only
                 else {'lm': [float('nan')], 'direct': [float('nan')]})
        lm_small_hwm = (vm_hwm_bytes(lm.pid) or 0) / 1e6
        procs.stop_all()
        client.close()
        client = None
        # (d) in a fresh domain: nothing of the first stack's discovery state carries over
        _stack.isolate(args.domain + 1)
        client = Client(domain_id=args.domain + 1)
        mem = (measure_memory(client, procs, tmp, args.bursts) if 'd' in args.only else
               {'idle_mb': float('nan'), 'peak_mb': float('nan'), 'hwm_mb': float('nan'),
                'burst_s': float('nan'), 'rt50': [], 'problem': 'not run'})
    finally:
        if client is not None:
            client.close()
        procs.stop_all()
        removed = shm.clean()
        if not args.keep_logs:
            procs.cleanup_logs()
        if args.keep_logs:
            print(f'logs kept in {procs.logdir} and {tmp}', file=sys.stderr)
        else:
            for path in tmp.glob('*'):
                path.unlink(missing_ok=True)
            tmp.rmdir()

    lm_rt = [t.round_trip for t in rt['lm']]
    direct_rt = [t.round_trip for t in rt['direct']]
    ratio_a = median(lm_rt) / median(direct_rt)
    ratio_b = median(handoff['start']) / median(handoff['direct_accept'])
    ratio_c = median(walls['lm']) / 1.0
    peak = mem['peak_mb']

    print(f'Lane manager benchmark ({os.cpu_count()} CPUs, loopback UDP, '
          f'domain {args.domain}, {time.monotonic() - started:.0f} s)\n')
    print('| measurement | via lane manager | direct to driver | ratio | target | verdict |')
    print('|---|---:|---:|---:|---:|---|')
    if 'a' in args.only:
        print(f'| a. zero-length goal -> result, median ms (n={len(lm_rt)}) | {ms(median(lm_rt))} '
              f'| {ms(median(direct_rt))} | {ratio_a:.2f} | <= {TARGETS["a"]} '
              f'| {verdict(ratio_a, TARGETS["a"])} |')
    if 'a' in args.only:
        print(f'| a. same, p90 ms | {ms(pct(lm_rt, 90))} | {ms(pct(direct_rt, 90))} '
              f'| {pct(lm_rt, 90) / pct(direct_rt, 90):.2f} | | |')
    if 'a' in args.only:
        print(f'| a. goal sent -> accepted, median ms | '
              f'{ms(median([t.accept_latency for t in rt["lm"]]))} '
              f'| {ms(median([t.accept_latency for t in rt["direct"]]))} | | | |')
    if 'b' in args.only:
        print(f'| b. hand-off: A ends -> B starts at driver vs direct send -> accepted, median ms '
              f'(n={len(handoff["start"])}) | {ms(median(handoff["start"]))} '
              f'| {ms(median(handoff["direct_accept"]))} | {ratio_b:.2f} | <= {TARGETS["b"]} '
              f'| {verdict(ratio_b, TARGETS["b"])} |')
    if 'b' in args.only:
        print(f'| b. hand-off: A ends -> B accepted at driver, median ms '
              f'| {ms(median(handoff["accepted"]))} | {ms(median(handoff["direct_accept"]))} '
              f'| {median(handoff["accepted"]) / median(handoff["direct_accept"]):.2f} | | |')
    if 'b' in args.only:
        ratio_serial = median(handoff['accepted']) / median(handoff['serial_accepted'])
        print(f"| b. same vs a client that serializes by itself (A's result, then B straight "
              f'to the driver): A ends -> B accepted at driver, median ms '
              f'(n={len(handoff["serial_accepted"])}) | {ms(median(handoff["accepted"]))} '
              f'| {ms(median(handoff["serial_accepted"]))} | {ratio_serial:.2f} '
              f'| <= {TARGETS["b_serial"]} | {verdict(ratio_serial, TARGETS["b_serial"])} |')
    if 'c' in args.only:
        print(f'| c. {args.lanes} lanes x one 1 s goal together: wall / 1 s, median of '
              f'{len(walls["lm"])} (max) | {ratio_c:.3f} ({max(walls["lm"]):.3f}) '
              f'| {median(walls["direct"]):.3f} ({max(walls["direct"]):.3f}) '
              f'| {median(walls["lm"]) / median(walls["direct"]):.2f} | <= {TARGETS["c"]} '
              f'| {verdict(ratio_c, TARGETS["c"])} |')
    if 'd' in args.only:
        print(f'| d. lane manager peak RSS, 50 skills / 10 lanes, MB | {peak:.1f} | | '
              f'| <= {TARGETS["d"]:.0f} | {verdict(peak, TARGETS["d"])} |')
        print(f'\nAlso: lane manager RSS with 50 skills idle after start '
              f'{mem["idle_mb"]:.1f} MB, VmHWM {mem["hwm_mb"]:.1f} MB; with {args.lanes + 2} '
              f'skills VmHWM {lm_small_hwm:.1f} MB. 50 goals on 50 skills at once: '
              f'{mem["burst_s"] * 1000:.0f} ms (median of {args.bursts}). Zero-length round '
              f'trip via the 50-skill lane manager: median {ms(median(mem["rt50"]))} ms.')
    if LOST:
        print('\nGoals lost (no result within the timeout, or not succeeded): '
              + ', '.join(f'{k}: {v}' for k, v in sorted(LOST.items())))
    if 'd' in args.only and mem['problem']:
        print(f'\nWARNING (d): the 50-skill traffic did not complete, peak RSS is for the '
              f'traffic that ran: {mem["problem"]}')
    if removed:
        print(f'(removed {len(removed)} Fast DDS and LTTng files this run left in /dev/shm)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Benchmark: an MCP `tools/call` through the gateway vs a direct rclpy action round trip.

One run, real OS processes on loopback: sim_driver, lane_manager, and `mcp_gateway` over
stdio spawned by the MCP SDK's client (`from mcp import Client, StdioServerParameters`), as
an agent spawns it. Measured, interleaved in the same run:

1. round trip of a zero-length skill: MCP tools/call (client -> gateway -> lane manager ->
   sim driver and back) vs an rclpy action goal -> result sent straight to the sim driver
   from this process; medians and their ratio (target <= 2.0);
2. throughput: 8 concurrent MCP sessions (8 stdio gateway processes) calling zero-length
   skills on 4 lanes (2 sessions per lane, lanes queue): calls/s and latency under load;
3. peak RSS of a gateway process (target <= 150 MB).

Usage: python bench/bench_gateway.py [--rounds 200] [--sessions 8] [--seconds 8]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402
from _stack import (PYTHON, ROOT, Procs, RssSampler, median, pct,  # noqa: E402
                    send_timed, verdict, wait_servers, warm_up)

DEFAULT_DOMAIN = 173
LANES = 4
TARGETS = {'ratio': 2.0, 'rss': 150.0}


def config_text() -> str:
    lines = ['lanes:']
    lines += [f'  l{k}: {{policy: queue, max_queue: 16, max_hold_s: 10, cancel_grace_s: 2}}'
              for k in range(LANES)]
    lines.append('skills:')
    lines += [f'  z{k}: {{lane: l{k}, action_type: test_msgs/action/Fibonacci, '
              f'driver: /sim/z{k}, description: zero-length bench skill}}'
              for k in range(LANES)]
    lines += ['lane_manager: {driver_response_s: 3.0}',
              'sim:', '  default: {duration_s: 0, feedback_hz: 0}']
    return '\n'.join(lines) + '\n'


class DirectClient:
    """rclpy action clients to the sim drivers, SingleThreadedExecutor in a thread."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from test_msgs.action import Fibonacci
        self.rclpy = rclpy
        self.goal_type = Fibonacci.Goal
        rclpy.init()
        self.node = Node('bench_gateway_direct')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.clients = [ActionClient(self.node, Fibonacci, f'/sim/z{k}') for k in range(LANES)]
        for client in self.clients:
            client.bench_executor = self.executor  # see _stack.send_timed
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """spin(), but a callback's exception is reported and spinning goes on."""
        _stack.spin_forever(self.executor)

    def round_trip(self, timeout: float = 5.0) -> Optional[float]:
        timing = send_timed(self.clients[0], self.goal_type())
        if timing.event.wait(timeout) and timing.status == 4:
            return timing.round_trip
        return None

    def close(self) -> None:
        for client in self.clients:
            client.destroy()
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=3.0)
        self.node.destroy_node()
        if self.rclpy.ok():
            self.rclpy.shutdown()


def gateway_params(cfg: Path, env: dict[str, str], log: Path):
    from mcp import StdioServerParameters
    # exec: the process the SDK spawns IS the gateway (its pid is the gateway's pid);
    # stderr to a log so the tables stay readable.
    command = f'exec "{PYTHON}" -m mcp_gateway --config "{cfg}" 2>>"{log}"'
    return StdioServerParameters(command='/bin/sh', args=['-c', command], env=env,
                                 cwd=str(ROOT))


def gateway_pids() -> list[int]:
    import psutil
    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if 'mcp_gateway' in ' '.join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def succeeded(result: Any) -> bool:
    body = result.structured_content or {}
    return not result.is_error and body.get('status') == 'succeeded'


async def mcp_call(client: Any, tool: str) -> tuple[float, bool]:
    started = time.monotonic()
    result = await client.call_tool(tool, {})
    return time.monotonic() - started, succeeded(result)


async def warm(client: Any, tool: str, count: int, deadline_s: float = 40.0) -> int:
    """Calls until `count` succeed in a row (the first ones may wait for discovery)."""
    import anyio
    failures, in_a_row = 0, 0
    deadline = time.monotonic() + deadline_s
    while in_a_row < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f'{tool}: no {count} successful calls in a row within '
                               f'{deadline_s:g} s ({failures} failed)')
        with anyio.move_on_after(8):
            _, ok = await mcp_call(client, tool)
            in_a_row = in_a_row + 1 if ok else 0
            failures += 0 if ok else 1
            continue
        failures += 1
        in_a_row = 0
    return failures


async def run(args: argparse.Namespace, cfg: Path, env: dict[str, str], logdir: Path,
              direct: DirectClient) -> dict[str, Any]:
    import anyio
    from mcp import Client
    out: dict[str, Any] = {'lost': {}}
    sampler = RssSampler(gateway_pids, period_s=0.05)
    try:
        # ---- 1. one session: MCP round trip vs direct rclpy round trip, interleaved
        async with Client(gateway_params(cfg, env, logdir / 'gateway-0.log'),
                          mode='legacy') as client:
            await warm(client, 'z0', args.warmup)
            await anyio.to_thread.run_sync(
                lambda: warm_up(direct.clients[:1], direct.goal_type, count=args.warmup))
            mcp_rt: list[float] = []
            direct_rt: list[float] = []
            for i in range(args.rounds):
                for which in (('mcp', 'direct') if i % 2 == 0 else ('direct', 'mcp')):
                    if which == 'mcp':
                        with anyio.move_on_after(8):
                            elapsed, ok = await mcp_call(client, 'z0')
                            if ok:
                                mcp_rt.append(elapsed)
                                continue
                        out['lost']['mcp'] = out['lost'].get('mcp', 0) + 1
                    else:
                        value = await anyio.to_thread.run_sync(direct.round_trip)
                        if value is None:
                            out['lost']['direct'] = out['lost'].get('direct', 0) + 1
                        else:
                            direct_rt.append(value)
            out['mcp_rt'], out['direct_rt'] = mcp_rt, direct_rt
            out['single_rss_mb'] = sampler.peak_mb()

        # ---- 2. N sessions on 4 lanes
        async with AsyncExitStack() as stack:
            sessions = []
            for index in range(args.sessions):
                params = gateway_params(cfg, env, logdir / f'gateway-{index + 1}.log')
                sessions.append(await stack.enter_async_context(
                    Client(params, mode='legacy')))
            async with anyio.create_task_group() as group:
                for index, client in enumerate(sessions):
                    group.start_soon(warm, client, f'z{index % LANES}', 3)
            latencies: list[float] = []
            counts = {'ok': 0, 'failed': 0}
            per_lane = [0] * LANES

            async def agent(index: int, client: Any, until: float) -> None:
                tool = f'z{index % LANES}'
                while time.monotonic() < until:
                    elapsed, ok = await mcp_call(client, tool)
                    if ok:
                        counts['ok'] += 1
                        per_lane[index % LANES] += 1
                        latencies.append(elapsed)
                    else:
                        counts['failed'] += 1

            started = time.monotonic()
            until = started + args.seconds
            with anyio.move_on_after(args.seconds + 30):
                async with anyio.create_task_group() as group:
                    for index, client in enumerate(sessions):
                        group.start_soon(agent, index, client, until)
            wall = time.monotonic() - started
            out.update(calls_per_s=counts['ok'] / wall, failed=counts['failed'],
                       load_latency=latencies, per_lane=[n / wall for n in per_lane],
                       gateways=len(gateway_pids()))
    finally:
        sampler.stop()
    out['peak_rss_mb'] = sampler.peak_mb()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=20)
    parser.add_argument('--sessions', type=int, default=8)
    parser.add_argument('--seconds', type=float, default=8.0)
    parser.add_argument('--domain', type=int,
                        default=int(os.environ.get('BENCH_GATEWAY_ROS_DOMAIN_ID',
                                                   DEFAULT_DOMAIN)))
    parser.add_argument('--keep-logs', action='store_true')
    args = parser.parse_args()

    import anyio
    args.domain, env, shm = _stack.start_bench(args.domain)
    procs = Procs('bench_gateway')
    tmp = Path(tempfile.mkdtemp(prefix='bench_gw_cfg_'))
    direct: Optional[DirectClient] = None
    began = time.monotonic()
    try:
        cfg = tmp / 'gw.yaml'
        cfg.write_text(config_text())
        sim = procs.python('-m', 'skill_lanes_sim.sim_driver', '--config', str(cfg), name='sim')
        lm = procs.python('-m', 'lane_manager.node', '--config', str(cfg), name='lane_manager')
        sim.wait_for_output('sim_driver ready', timeout=_stack.READY_S)
        lm.wait_for_output('lane_manager ready', timeout=_stack.READY_S)
        direct = DirectClient()
        wait_servers(direct.clients)
        out = anyio.run(run, args, cfg, env, procs.logdir, direct)
    finally:
        if direct is not None:
            direct.close()
        procs.stop_all()
        removed = shm.clean()
        if args.keep_logs:
            print(f'logs kept in {procs.logdir}', file=sys.stderr)
        else:
            procs.cleanup_logs()
        for path in tmp.glob('*'):
            path.unlink(missing_ok=True)
        tmp.rmdir()

    mcp_rt, direct_rt = out['mcp_rt'], out['direct_rt']
    ratio = median(mcp_rt) / median(direct_rt)
    peak = out['peak_rss_mb']
    ms = lambda v: f'{v * 1000:.2f}'  # noqa: E731
    print(f'Gateway benchmark ({os.cpu_count()} CPUs, MCP over stdio, loopback UDP, '
          f'domain {args.domain}, {time.monotonic() - began:.0f} s)\n')
    print('| measurement | MCP via gateway | direct rclpy to driver | ratio | target | verdict |')
    print('|---|---:|---:|---:|---:|---|')
    print(f'| zero-length skill round trip, median ms (n={len(mcp_rt)}/{len(direct_rt)}) '
          f'| {ms(median(mcp_rt))} | {ms(median(direct_rt))} | {ratio:.2f} '
          f'| <= {TARGETS["ratio"]} | {verdict(ratio, TARGETS["ratio"])} |')
    print(f'| same, p90 ms | {ms(pct(mcp_rt, 90))} | {ms(pct(direct_rt, 90))} '
          f'| {pct(mcp_rt, 90) / pct(direct_rt, 90):.2f} | | |')
    print(f'| {args.sessions} sessions x {LANES} lanes, {args.seconds:g} s: calls/s '
          f'(failed calls) | {out["calls_per_s"]:.1f} ({out["failed"]}) '
          f'| {1 / median(direct_rt):.1f} (one client, sequential) | | | |')
    print(f'| same, per lane calls/s | {" / ".join(f"{v:.1f}" for v in out["per_lane"])} '
          f'| | | | |')
    print(f'| same, call latency under load median / p90 ms | '
          f'{ms(median(out["load_latency"]))} / {ms(pct(out["load_latency"], 90))} | | | | |')
    print(f'| gateway peak RSS, MB (max over {args.sessions + 1} gateway processes) '
          f'| {peak:.1f} | | | <= {TARGETS["rss"]:.0f} | {verdict(peak, TARGETS["rss"])} |')
    print(f'\nAlso: one idle-to-busy gateway (single session) peaked at '
          f'{out["single_rss_mb"]:.1f} MB.')
    if out['lost']:
        print('Calls lost (no success within 8 s): '
              + ', '.join(f'{k}: {v}' for k, v in out['lost'].items()))
    if removed:
        print(f'(removed {len(removed)} Fast DDS and LTTng files this run left in /dev/shm)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

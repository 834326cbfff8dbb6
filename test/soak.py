"""Soak: the full stack under many agents and faults, with invariants checked throughout.

    python test/soak.py --seconds 600 --agents 8        # the long run (README)

Starts sim_driver, lane_manager and a gateway per group of agents (stdio and HTTP), runs
agents that call random skills on random lanes and cancel some calls, while it kills and
restarts the sim driver, a gateway and the lane manager at random moments. Bounded in time
and count, loopback only, stops by itself. Invariants, reported as counts at the end:

- overlaps: two goals of one lane active at a driver at once (must be 0);
- lost calls: a call that ended with neither a result, a structured error nor a
  cancellation, or took longer than its bound (must be 0);
- stuck lanes: a lane still held with nothing running at the driver at the end;
- RSS of the lane manager at start and end (of its last life, if it was restarted).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
CONFIG = textwrap.dedent("""
    lanes:
      motion:       {policy: queue, max_queue: 4, max_hold_s: 20}
      manipulation: {policy: reject, retry_after_ms: 200}
      arm:          {policy: preempt, max_hold_s: 20}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /soak/navigate}
      dock:     {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /soak/dock}
      grasp:    {lane: manipulation, action_type: test_msgs/action/Fibonacci, driver: /soak/grasp}
      arm_home: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /soak/arm_home}
      arm_stop: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /soak/arm_stop,
                 priority: 5}
    lane_manager: {driver_wait_s: 1.0, driver_lost_s: 1.5}
    gateway: {lane_manager_wait_s: 5.0, refusal_wait_s: 1.0, progress_interval_s: 1.0}
    sim:
      default: {duration_s: 0.4, feedback_hz: 10}
""")
SKILLS = ['navigate', 'dock', 'grasp', 'arm_home', 'arm_stop']
CALL_BOUND_S = 60.0
STRUCTURED_ERRORS = {'operation_busy', 'lane_manager_unavailable', 'goal_aborted',
                     'goal_canceled', 'goal_rejected'}


class Proc:
    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = log_dir / f'{name}.log'
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, *self.args], env=self.env,
                                      stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT,
                                      cwd=str(ROOT))  # same process group as the soak

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.kill()


class Soak:
    def __init__(self, seconds: float, agents: int, seed: int, http_port: int) -> None:
        self.seconds, self.agents, self.rng = seconds, agents, random.Random(seed)
        self.dir = Path(tempfile.mkdtemp(prefix='skill_lanes_soak_'))
        self.config = self.dir / 'soak.yaml'
        self.config.write_text(CONFIG)
        self.env = dict(os.environ)
        self.env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
        self.env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        self.env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
        self.env['PYTHONUNBUFFERED'] = '1'
        cfg = ['--config', str(self.config)]
        self.sim = Proc('sim_driver', ['-m', 'lane_manager.sim_driver', *cfg], self.env, self.dir)
        self.manager = Proc('lane_manager', ['-m', 'lane_manager.node', *cfg], self.env, self.dir)
        self.http_port = http_port
        self.http = Proc('gateway_http', ['-m', 'mcp_gateway.node', *cfg, '--transport', 'http',
                                          '--port', str(http_port)], self.env, self.dir)
        self.counts = {'calls': 0, 'succeeded': 0, 'busy': 0, 'errors': 0, 'cancelled': 0,
                       'lost': 0, 'faults_injected': 0}
        self.lost_examples: list[str] = []
        self.banked_overlaps = 0

    # -------------------------------------------------------------- agents
    async def agent(self, index: int, deadline: float) -> None:
        from mcp import Client, StdioServerParameters
        rng = random.Random(self.rng.random())
        if index % 2:
            target = f'http://127.0.0.1:{self.http_port}/mcp'
        else:
            target = StdioServerParameters(
                command=sys.executable, args=['-m', 'mcp_gateway.node', '--config',
                                              str(self.config)], env=self.env, cwd=str(ROOT))
        while time.monotonic() < deadline:
            try:
                async with Client(target) as client:
                    while time.monotonic() < deadline:
                        await self.one_call(client, rng)
            except Exception as exc:  # a killed gateway: the session ends, reconnect
                if time.monotonic() < deadline:
                    await anyio.sleep(0.5)
                    _ = exc

    async def one_call(self, client, rng: random.Random) -> None:
        skill = rng.choice(SKILLS)
        self.counts['calls'] += 1
        cancel_after = rng.random() * 0.6 if rng.random() < 0.2 else None
        started = time.monotonic()
        result = None
        with anyio.move_on_after(CALL_BOUND_S) as bound:
            if cancel_after is None:
                result = await client.call_tool(skill, {})
            else:
                with anyio.move_on_after(cancel_after):
                    result = await client.call_tool(skill, {})
                if result is None:
                    self.counts['cancelled'] += 1
                    return
        if bound.cancelled_caught:
            self.counts['lost'] += 1
            self.lost_examples.append(f'{skill}: no answer in {CALL_BOUND_S:.0f} s')
            return
        body = result.structured_content or {}
        if not result.is_error and body.get('status') == 'succeeded':
            self.counts['succeeded'] += 1
        elif body.get('error') == 'operation_busy':
            self.counts['busy'] += 1
            await anyio.sleep(body.get('data', {}).get('retry_after_ms', 200) / 1000)
        elif body.get('error') in STRUCTURED_ERRORS:
            self.counts['errors'] += 1
        else:
            self.counts['lost'] += 1
            self.lost_examples.append(f'{skill}: unstructured answer {body!r:.200}'
                                      f' after {time.monotonic() - started:.1f} s')

    # -------------------------------------------------------------- faults
    async def chaos(self, deadline: float) -> None:
        victims = [self.sim, self.http, self.manager]
        while time.monotonic() < deadline - 10:
            await anyio.sleep(self.rng.uniform(8, 15))
            if time.monotonic() >= deadline - 10:
                break
            victim = self.rng.choice(victims)
            if victim is self.sim:  # its counters die with it: bank them first
                stats, _ = await anyio.to_thread.run_sync(self.final_state)
                self.banked_overlaps += sum(lane.get('overlaps', 0)
                                            for lane in stats.get('lanes', {}).values())
            victim.kill()
            self.counts['faults_injected'] += 1
            await anyio.sleep(self.rng.uniform(0.5, 2.0))
            victim.start()

    # -------------------------------------------------------------- invariants
    def final_state(self) -> tuple[dict, dict]:
        """Sim stats and lane state, read with a fresh rclpy node."""
        code = textwrap.dedent("""
            import json, sys, time, rclpy
            from std_msgs.msg import String
            from lane_manager.node import LANE_STATE_QOS
            rclpy.init(); node = rclpy.create_node('soak_reader'); got = {}
            node.create_subscription(String, '/sim_driver/stats',
                lambda m: got.__setitem__('stats', json.loads(m.data)), LANE_STATE_QOS)
            node.create_subscription(String, '/lane_manager/lane_state',
                lambda m: got.__setitem__('state', json.loads(m.data)), LANE_STATE_QOS)
            end = time.monotonic() + 15
            while time.monotonic() < end and len(got) < 2:
                rclpy.spin_once(node, timeout_sec=0.1)
            print(json.dumps(got)); node.destroy_node(); rclpy.shutdown()
        """)
        out = subprocess.run([sys.executable, '-c', code], env=self.env, cwd=str(ROOT),
                             capture_output=True, text=True, timeout=60).stdout
        got = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        return got.get('stats', {}), got.get('state', {})

    def rss_mb(self) -> float:
        import psutil
        try:
            return psutil.Process(self.manager.popen.pid).memory_info().rss / 2**20
        except Exception:
            return float('nan')

    async def run(self) -> dict:
        for proc in (self.sim, self.manager, self.http):
            proc.start()
        await anyio.sleep(3.0)
        rss_start = self.rss_mb()
        deadline = time.monotonic() + self.seconds
        async with anyio.create_task_group() as group:
            group.start_soon(self.chaos, deadline)
            for index in range(self.agents):
                group.start_soon(self.agent, index, deadline)
        # Let every lane drain: restart anything the chaos left dead, then check.
        for proc in (self.sim, self.manager, self.http):
            if proc.popen.poll() is not None:
                proc.start()
        await anyio.sleep(5.0)
        stats, state = {}, {}
        for _ in range(3):  # a freshly restarted process may take a while to be discovered
            stats, state = await anyio.to_thread.run_sync(self.final_state)
            if stats and state:
                break
        rss_end = self.rss_mb()
        for proc in (self.http, self.manager, self.sim):
            proc.stop()
        overlaps = self.banked_overlaps + sum(lane.get('overlaps', 0)
                                              for lane in stats.get('lanes', {}).values())
        stuck = [name for name, lane in state.get('lanes', {}).items()
                 if lane.get('holder') is not None]
        return {**self.counts, 'overlaps': overlaps, 'stuck_lanes': len(stuck),
                'stuck_lane_names': stuck, 'lane_state_seen': bool(state),
                'sim_stats_seen': bool(stats), 'lane_manager_rss_mb_start': round(rss_start, 1),
                'lane_manager_rss_mb_end': round(rss_end, 1),
                'lost_examples': self.lost_examples[:5], 'logs': str(self.dir)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=60)
    parser.add_argument('--agents', type=int, default=6)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--http-port', type=int, default=18790)
    args = parser.parse_args(argv)
    report = anyio.run(Soak(args.seconds, args.agents, args.seed, args.http_port).run)
    print(json.dumps(report, indent=2))
    ok = (report['overlaps'] == 0 and report['lost'] == 0 and report['stuck_lanes'] == 0
          and report['lane_state_seen'] and report['sim_stats_seen'])
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())

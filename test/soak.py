"""Soak: the full stack under many agents and faults, with invariants checked throughout.

    python test/soak.py --seconds 600 --agents 8        # the long run (README)

Starts sim_driver, lane_manager and a gateway per group of agents (stdio and HTTP), runs
agents that call random skills on random lanes and cancel some calls, while it kills
(SIGKILL) and restarts the sim driver, a gateway and the lane manager (mid long goal: a fresh
lane manager adopts what the drivers run) and stalls the sim driver (SIGSTOP, SIGCONT after
2-4 s: longer than driver_lost_s) at random moments. Goals of `navigate` run 5-30 s; the
`arm_home` driver accepts cancels but runs on (so every preemption by `arm_stop` meets an
ignored cancel); the monitor also sends goals straight to the `survey` driver around the
lane manager (a bypass client) whenever that lane is free. Bounded in time and count,
loopback only, stops by itself. A monitor process (`--monitor`) watches the lane state and
the simulated drivers' counters the whole time. Invariants, reported as counts:

- overlaps: two goals of one lane active at a driver at once, counted by the drivers
  themselves (must be 0). Apart: `bypass_races`, overlaps of a bypass goal with a goal of
  the lane manager that the bypass client could not have known of: one that started at the
  driver within BYPASS_RACE_S of it, or before the lane state the client acted on was
  published (a stale, latched state of a killed lane manager). No arbiter can stop a goal
  sent around it before it has seen it (once seen, it holds the lane: a later overlap
  counts);
- lost calls: a call that ended with neither a result, a structured error nor a
  cancellation, or took longer than its bound (must be 0);
- stuck holds: a lane held longer than its max_hold_s + cancel grace + slack (must be 0);
- orphan goals: a driver still running a goal of a lane the lane manager calls free (no
  holder, nothing else holding it), for longer than ORPHAN_BOUND_S (must be 0);
- stuck lanes at the end, after the drain (must be 0);
- operator releases: the monitor plays an operator who frees (the release service) a lane
  held OPERATOR_AFTER_S only by a goal request a killed driver never answered (its drivers
  answer again): nobody can confirm such a goal ended, so by design only an operator frees
  its lane (counted);
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
import uuid
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
CONFIG = textwrap.dedent("""
    lanes:
      motion:       {policy: queue, max_queue: 2, max_hold_s: 40}
      manipulation: {policy: reject, retry_after_ms: 200, max_hold_s: 20}
      arm:          {policy: preempt, max_hold_s: 20, cancel_grace_s: 2}
      survey:       {policy: queue, max_queue: 2, max_hold_s: 20}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /soak/navigate}
      dock:     {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /soak/dock}
      grasp:    {lane: manipulation, action_type: test_msgs/action/Fibonacci, driver: /soak/grasp}
      arm_home: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /soak/arm_home}
      arm_stop: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /soak/arm_stop,
                 priority: 5}
      survey:   {lane: survey, action_type: test_msgs/action/Fibonacci, driver: /soak/survey}
    lane_manager: {driver_wait_s: 1.0, driver_lost_s: 1.5}
    gateway: {lane_manager_wait_s: 5.0, refusal_wait_s: 1.0, progress_interval_s: 1.0}
    sim:
      default: {duration_s: 0.4, feedback_hz: 10}
      skills:
        navigate: {duration_s: 5, duration_max_s: 30, feedback_hz: 2}
        arm_home: {duration_s: 1.5, outcome: accept_cancel_but_run}
        survey: {duration_s: 2}
""")
SKILLS = ['navigate', 'dock', 'grasp', 'arm_home', 'arm_stop', 'survey']
CALL_BOUND_S = 150.0   # two 30 s goals ahead in the queue, a restart, a stall
ORPHAN_BOUND_S = 10.0  # status settle + driver_lost_s + slack
HOLD_SLACK_S = 40.0    # a 30 s goal whose cancel is ignored, a stall, a restart
BYPASS_EVERY_S = 6.0
# A bypass goal and a lane manager goal that start this close at the driver met because the
# monitor sent on a stale lane state (the lane manager learns of a bypass goal from the
# driver's status, a few ms after it starts; seconds of slack for a loaded 2-core machine
# would hide a real miss, 0.5 s does not: a bypass goal runs 2 s).
BYPASS_RACE_S = 0.5
OPERATOR_AFTER_S = 15.0  # the monitor plays an operator who releases a lane held this long
#                          only by a goal whose driver never confirmed it (all its drivers
#                          answer again, so nothing will ever confirm it)
DRAIN_S = 45.0         # a 30 s goal adopted at the end, its cancel, status settle
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
    def __init__(self, seconds: float, agents: int, seed: int, http_port: int,
                 victims: tuple[str, ...] = ('sim_driver', 'gateway_http',
                                             'lane_manager')) -> None:
        self.seconds, self.agents, self.rng = seconds, agents, random.Random(seed)
        self.victims = victims
        self.dir = Path(tempfile.mkdtemp(prefix='skill_lanes_soak_'))
        self.config = self.dir / 'soak.yaml'
        self.config.write_text(CONFIG)
        self.env = dict(os.environ)
        if 'ROS_DOMAIN_ID' not in self.env:  # standalone: a domain no other run holds
            from skill_lanes_sim.isolation import claim_ros_domain, ros_environment
            domain, self._domain_lock = claim_ros_domain()
            self.env.update(ros_environment(domain))  # loopback UDP only, as the tests
        self.env['PYTHONUNBUFFERED'] = '1'
        cfg = ['--config', str(self.config)]
        self.sim = Proc('sim_driver', ['-m', 'skill_lanes_sim.sim_driver', *cfg], self.env,
                        self.dir)
        self.manager = Proc('lane_manager', ['-m', 'lane_manager.node', *cfg], self.env, self.dir)
        self.monitor_out = self.dir / 'monitor.json'
        self.monitor = Proc('monitor', [str(Path(__file__).resolve()), '--monitor',
                                        str(self.monitor_out), '--seconds',
                                        str(seconds + 3.0), *cfg], self.env, self.dir)
        self.http_port = http_port
        self.http = Proc('gateway_http', ['-m', 'mcp_gateway', *cfg, '--transport', 'http',
                                          '--port', str(http_port)], self.env, self.dir)
        self.counts = {'calls': 0, 'succeeded': 0, 'busy': 0, 'errors': 0, 'cancelled': 0,
                       'lost': 0, 'faults_injected': 0, 'stalls': 0}
        self.lost_examples: list[str] = []

    # -------------------------------------------------------------- agents
    async def agent(self, index: int, deadline: float) -> None:
        from mcp import Client, StdioServerParameters
        rng = random.Random(self.rng.random())
        if index % 2:
            target = f'http://127.0.0.1:{self.http_port}/mcp'
        else:
            target = StdioServerParameters(
                command=sys.executable, args=['-m', 'mcp_gateway', '--config',
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
        victims = [p for p in (self.sim, self.http, self.manager) if p.name in self.victims]
        while victims and time.monotonic() < deadline - 10:
            await anyio.sleep(self.rng.uniform(8, 15))
            if time.monotonic() >= deadline - 10:
                break
            victim = self.rng.choice(victims)
            self.counts['faults_injected'] += 1
            if victim is self.sim and self.rng.random() < 0.5:
                # A stalled driver (hung executor, saturated host), longer than driver_lost_s.
                self.counts['stalls'] += 1
                victim.popen.send_signal(signal.SIGSTOP)
                await anyio.sleep(self.rng.uniform(2.0, 4.0))
                victim.popen.send_signal(signal.SIGCONT)
                continue
            victim.kill()
            await anyio.sleep(self.rng.uniform(0.5, 2.0))
            victim.start()

    # -------------------------------------------------------------- invariants
    def final_state(self) -> dict:
        """Stop the monitor and read what it saw."""
        self.monitor.stop()
        try:
            return json.loads(self.monitor_out.read_text())
        except (OSError, ValueError):
            return {}

    def rss_mb(self) -> float:
        import psutil
        try:
            return psutil.Process(self.manager.popen.pid).memory_info().rss / 2**20
        except Exception:
            return float('nan')

    async def run(self) -> dict:
        for proc in (self.monitor, self.sim, self.manager, self.http):
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
        await anyio.sleep(DRAIN_S)
        rss_end = self.rss_mb()
        seen = await anyio.to_thread.run_sync(self.final_state)
        for proc in (self.http, self.manager, self.sim):
            proc.stop()
        return {**self.counts, **{k: v for k, v in seen.items()},
                'lane_manager_rss_mb_start': round(rss_start, 1),
                'lane_manager_rss_mb_end': round(rss_end, 1),
                'lost_examples': self.lost_examples[:5], 'logs': str(self.dir)}


def is_bypass_race(event: dict, acted_on: dict[str, float]) -> bool:
    """An overlap of a bypass goal with a goal the bypass client could not have known of:
    started within BYPASS_RACE_S of it, or before it but after the lane state the client
    acted on (`acted_on`: bypass goal id -> stamp of that lane state). A lane manager goal
    started later than BYPASS_RACE_S after a bypass goal is a real overlap.
    """
    starts = {event['goal']: event['started'], **event['running']}
    bypass = [goal for goal in starts if goal in acted_on]
    if len(starts) != 2 or len(bypass) != 1:
        return False
    (other,) = set(starts) - set(bypass)
    if abs(starts[bypass[0]] - starts[other]) <= BYPASS_RACE_S:
        return True
    # The bypass goal came second: was the other goal in the state the client acted on?
    return starts[bypass[0]] > starts[other] >= acted_on[bypass[0]]


def monitor(out_path: str, config_path: str, bypass_for_s: float) -> int:
    """Watch lane state and sim stats until SIGINT; write the invariant counts as JSON."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import String

    from skill_lanes.config import load_config
    from skill_lanes.interfaces import LANE_STATE_QOS

    config = load_config(config_path)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('soak_monitor')
    seen = {'state': None, 'state_at': 0.0, 'stats': None, 'stats_at': 0.0}
    last_lane_stats: dict[str, dict] = {}
    banked_by_lane: dict[str, int] = {}  # overlaps counted by sim driver lives before this one
    overlap_events: dict[tuple, dict] = {}  # every overlap the drivers named, all lives
    bypass_acted_on: dict[str, float] = {}  # bypass goal id -> stamp of the state it saw
    found = {'overlaps': 0, 'stuck_holds': 0, 'orphan_goals': 0, 'bypass_goals_sent': 0,
             'operator_releases': 0}
    from std_srvs.srv import Trigger

    from skill_lanes.interfaces import lane_service_name
    release = {lane: node.create_client(Trigger, lane_service_name('/lane_manager', lane,
                                                                   'release'))
               for lane in config.lanes}
    unanswered_since: dict[str, float] = {}
    from test_msgs.action import Fibonacci

    from skill_lanes.action_link import RaceFreeActionClient
    from skill_lanes.goal_ids import goal_id_msg
    bypass = RaceFreeActionClient(node, Fibonacci, '/soak/survey')  # made while spinning
    next_bypass = time.monotonic() + BYPASS_EVERY_S
    bypass_until = time.monotonic() + bypass_for_s - 10.0  # none during the drain
    orphan_since: dict[str, float] = {}
    flagged: set = set()

    def on_stats(msg) -> None:
        stats = json.loads(msg.data)
        for lane, counters in stats.get('lanes', {}).items():
            previous = last_lane_stats.get(lane)
            if previous and counters['goals'] < previous['goals']:  # a restarted sim driver
                banked_by_lane[lane] = banked_by_lane.get(lane, 0) + previous['overlaps']
            last_lane_stats[lane] = counters
        for event in stats.get('overlap_events', []):
            overlap_events[(event['lane'], event['goal'], event['started'])] = event
        seen['stats'], seen['stats_at'] = stats, time.monotonic()

    def on_state(msg) -> None:
        seen['state'], seen['state_at'] = json.loads(msg.data), time.monotonic()

    node.create_subscription(String, '/sim_driver/stats', on_stats, LANE_STATE_QOS)
    node.create_subscription(String, '/lane_manager/lane_state', on_state, LANE_STATE_QOS)
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.2)
        now = time.monotonic()
        state = seen['state']
        if state is None or now - seen['state_at'] > 2.5 or now - seen['stats_at'] > 2.5:
            orphan_since.clear()  # a process is down: nothing fresh to compare
            continue
        survey = state['lanes'].get('survey', {})
        lane_idle = (survey.get('holder') is None and not survey.get('queue')
                     and not survey.get('occupants'))
        if bypass_until > now >= next_bypass and lane_idle and bypass.server_is_ready():
            # A client that sends straight to a driver, around the lane manager.
            goal_id = str(uuid.uuid4())
            bypass_acted_on[goal_id] = state['stamp']
            bypass.send_goal_async(Fibonacci.Goal(), goal_uuid=goal_id_msg(goal_id))
            found['bypass_goals_sent'] += 1
            next_bypass = now + BYPASS_EVERY_S
        for lane, info in state['lanes'].items():
            # The operator: a goal request lost with a killed driver is never confirmed by
            # anyone; only an operator may free its lane (never automatic).
            because = info.get('held_because') or ''
            reachable = all(d.get('reachable') for d in (info.get('drivers') or {}).values())
            if reachable and ('did not answer the request' in because
                              or 'stopped answering' in because):
                if now - unanswered_since.setdefault(lane, now) > OPERATOR_AFTER_S:
                    release[lane].call_async(Trigger.Request())
                    found['operator_releases'] += 1
                    unanswered_since.pop(lane, None)
            else:
                unanswered_since.pop(lane, None)
            holder = info.get('holder')
            active = last_lane_stats.get(lane, {}).get('active', 0)
            if holder is None and not info.get('occupants') and active > 0:
                since = orphan_since.setdefault(lane, now)
                if now - since > ORPHAN_BOUND_S and ('orphan', lane, since) not in flagged:
                    flagged.add(('orphan', lane, since))
                    found['orphan_goals'] += 1
            else:
                orphan_since.pop(lane, None)
            lane_cfg = config.lanes[lane]
            limit = (lane_cfg.max_hold_s or float('inf')) + lane_cfg.cancel_grace_s + HOLD_SLACK_S
            if holder and holder['held_s'] > limit and holder['goal_id'] not in flagged:
                flagged.add(holder['goal_id'])
                found['stuck_holds'] += 1
    state = seen['state'] or {}
    by_lane = {lane: banked_by_lane.get(lane, 0) + counters['overlaps']
               for lane, counters in last_lane_stats.items()}
    races = [event for event in overlap_events.values() if is_bypass_race(event, bypass_acted_on)]
    found['bypass_races'] = len(races)
    found['overlaps'] = sum(by_lane.values()) - len(races)
    found['overlap_events'] = list(overlap_events.values())
    found['overlaps_by_lane'] = {lane: count for lane, count in by_lane.items() if count}
    found['stuck_lanes'] = sorted(name for name, lane in state.get('lanes', {}).items()
                                  if lane.get('holder') is not None)
    found['stuck_lane_details'] = {
        name: {'holder': lane.get('holder'), 'held_because': lane.get('held_because'),
               'drivers': lane.get('drivers')}
        for name, lane in state.get('lanes', {}).items() if name in found['stuck_lanes']}
    found['external_goals_seen'] = sum(
        lane.get('counters', {}).get('external', 0) for lane in state.get('lanes', {}).values())
    found['adopted_goals_seen'] = sum(
        lane.get('counters', {}).get('adopted', 0) for lane in state.get('lanes', {}).values())
    found['lane_state_seen'] = seen['state'] is not None
    found['sim_stats_seen'] = seen['stats'] is not None
    Path(out_path).write_text(json.dumps(found))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=60)
    parser.add_argument('--agents', type=int, default=6)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--http-port', type=int, default=18790)
    parser.add_argument('--kill', default='sim_driver,gateway_http,lane_manager',
                        help='processes the chaos may kill (comma-separated; empty: none, '
                             "e.g. to watch the lane manager's memory over one life)")
    parser.add_argument('--monitor', metavar='OUT', help=argparse.SUPPRESS)
    parser.add_argument('--config', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.monitor:
        return monitor(args.monitor, args.config, args.seconds)
    victims = tuple(name for name in args.kill.split(',') if name)
    from skill_lanes_sim.isolation import ShmGuard
    shm = ShmGuard()
    try:
        report = anyio.run(Soak(args.seconds, args.agents, args.seed, args.http_port,
                                victims).run)
    finally:
        shm.clean()  # processes killed with SIGKILL leave their Fast DDS segments behind
    print(json.dumps(report, indent=2))
    ok = (report.get('overlaps') == 0 and report['lost'] == 0
          and report.get('stuck_lanes') == [] and report.get('stuck_holds') == 0
          and report.get('orphan_goals') == 0
          and report.get('lane_state_seen') and report.get('sim_stats_seen'))
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())

"""The first five minutes: the whole stack on a simulated robot, driven by a scripted agent.

    python -m mcp_gateway.demo --config config/sim_robot.yaml           # narrated session
    python -m mcp_gateway.demo --config config/sim_robot.yaml --serve   # MCP for real clients

Starts the simulated drivers and the lane manager as processes, then talks MCP to a gateway
over stdio exactly as an agent would: lists the tools with their lanes, runs two same-lane
calls and a third lane at once (printed as a timeline), provokes a busy refusal, cancels a
running call and shows the driver saw it, and prints the lane state at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import anyio

START = time.monotonic()


def stamp() -> str:
    return f'{time.monotonic() - START:6.2f}s'


def say(text: str = '') -> None:
    print(text, flush=True)


_DOMAIN_LOCK = None


def demo_environment() -> dict[str, str]:
    """Own ROS domain (unless one is set), this machine only, loopback UDP transport."""
    global _DOMAIN_LOCK
    env = dict(os.environ)
    if 'ROS_DOMAIN_ID' not in env:
        from lane_manager.runtime import claim_ros_domain
        domain, _DOMAIN_LOCK = claim_ros_domain()
        env['ROS_DOMAIN_ID'] = str(domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = env.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


class Stack:
    """sim_driver + lane_manager (+ an HTTP gateway when serving) as child processes."""

    def __init__(self, config: str, env: dict[str, str], log_dir: Path) -> None:
        self.config = config
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, module: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f'{name}.log', 'wb')
        proc = subprocess.Popen([sys.executable, '-m', module, '--config', self.config, *args],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def wait_ready(self, name: str, text: str, timeout: float = 30.0) -> None:
        path = self.log_dir / f'{name}.log'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in path.read_text(errors='replace'):
                return
            proc = dict(self.procs)[name]
            if proc.poll() is not None:
                raise SystemExit(f'{name} exited:\n{path.read_text(errors="replace")[-2000:]}')
            time.sleep(0.05)
        raise SystemExit(f'{name} did not start within {timeout:.0f} s (log: {path})')

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def body(result: Any) -> dict:
    return result.structured_content or {}


async def narrated_session(config: str, env: dict[str, str]) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable,
                                   args=['-m', 'mcp_gateway', '--config', config],
                                   env=env, cwd=os.getcwd())
    async with Client(params) as client:
        say('\n== 1. tools/list: every skill is a tool; _meta says its lane ==')
        tools = (await client.list_tools()).tools
        for tool in tools:
            meta = tool.meta or {}
            lane = meta.get('lane', '-')
            policy = meta.get('skill_lanes/policy', '')
            say(f'  {tool.name:24} lane={lane:13} {policy}')
        await wait_for_lane_manager(client)

        say('\n== 2. two same-lane calls (navigate, dock: lane motion) and grasp '
            '(lane manipulation) at once ==')
        timeline: list[tuple[str, str, str]] = []

        async def call(name: str, args: dict) -> None:
            timeline.append((stamp(), name, 'called'))
            result = await client.call_tool(name, args)
            timeline.append((stamp(), name, 'error' if result.is_error
                             else body(result).get('status', '?')))

        async with anyio.create_task_group() as group:
            group.start_soon(call, 'navigate', {'order': 3})
            await anyio.sleep(0.2)
            group.start_soon(call, 'dock', {})
            group.start_soon(call, 'grasp', {})
        for when, name, what in timeline:
            say(f'  {when}  {name:10} {what}')
        say('  -> dock waited for navigate (same lane); grasp ran alongside (other lane).')

        say('\n== 3. a busy lane answers with a structured, retryable refusal ==')
        async with anyio.create_task_group() as group:
            first: dict = {}

            async def hold() -> None:
                first['r'] = await client.call_tool('grasp', {})
            group.start_soon(hold)
            await anyio.sleep(0.5)
            refused = await client.call_tool('grasp', {})
            say('  second grasp -> ' + json.dumps(body(refused), indent=None)[:400])
            retry = body(refused).get('data', {}).get('retry_after_ms')
            say(f'  (isError={refused.is_error}; retry after {retry} ms)')

        say('\n== 4. cancelling a call cancels the goal at the driver ==')
        async with anyio.create_task_group() as group:
            async def long_call() -> None:
                await client.call_tool('arm_home', {})
            group.start_soon(long_call)
            await anyio.sleep(1.0)
            group.cancel_scope.cancel()
        await anyio.sleep(1.0)
        status = body(await client.call_tool('lanes_status', {}))
        for record in status.get('lanes', {}).get('arm_safety', {}).get('last_endings', [])[-1:]:
            say(f"  arm_home goal {record['goal_id'][:8]}: {record['outcome']} "
                f"({record['reason']})")

        say('\n== 5. lane state at the end (tool lanes_status) ==')
        for lane, info in status.get('lanes', {}).items():
            holder = info['holder']['skill'] if info['holder'] else 'free'
            counters = info['counters']
            say(f"  {lane:13} {info['policy']:8} holder={holder:10} "
                f"succeeded={counters['succeeded']} rejected={counters['rejected']} "
                f"canceled={counters['canceled']} aborted={counters['aborted']}")


async def wait_for_lane_manager(client: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await client.call_tool('lanes_status', {})
        if not result.is_error:
            return
        await anyio.sleep(0.2)
    raise SystemExit('the gateway never heard from the lane manager')


def print_client_configs(config: str, host: str, port: int) -> None:
    python = sys.executable
    cwd = os.getcwd()
    stdio = {'mcpServers': {'skill_lanes': {
        'command': python, 'args': ['-m', 'mcp_gateway', '--config', str(Path(config)
                                                                               .resolve())],
        'cwd': cwd, 'env': {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}}}}
    say('\nMCP over HTTP: http://%s:%d/mcp' % (host, port))
    say('Claude Code:     claude mcp add --transport http skill_lanes http://%s:%d/mcp'
        % (host, port))
    say('MCP Inspector:   npx @modelcontextprotocol/inspector  (transport: Streamable HTTP, '
        'URL http://%s:%d/mcp)' % (host, port))
    say('Claude Desktop (stdio; it starts its own gateway):')
    say(json.dumps(stdio, indent=2))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='skill_lanes_demo', description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='config/sim_robot.yaml')
    parser.add_argument('--serve', action='store_true',
                        help='serve MCP over HTTP for real clients until Ctrl-C')
    parser.add_argument('--port', type=int, default=8765)
    args = parser.parse_args(argv)
    env = demo_environment()
    log_dir = Path(os.environ.get('SKILL_LANES_LOG_DIR', '/tmp')) / f'skill_lanes_{os.getpid()}'
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(args.config, env, log_dir)
    from lane_manager.shm_guard import ShmGuard
    shm = ShmGuard()
    say(f'skill_lanes demo: ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}, logs in {log_dir}')
    try:
        stack.start('sim_driver', 'lane_manager.sim_driver')
        stack.start('lane_manager', 'lane_manager.node')
        stack.wait_ready('sim_driver', 'sim_driver ready')
        stack.wait_ready('lane_manager', 'lane_manager ready')
        say(f'{stamp()}  simulated drivers and lane manager are up')
        if args.serve:
            stack.start('mcp_gateway', 'mcp_gateway', '--transport', 'http',
                        '--port', str(args.port))
            stack.wait_ready('mcp_gateway', 'mcp_gateway ready')
            print_client_configs(args.config, '127.0.0.1', args.port)
            say('\nServing; Ctrl-C to stop.')
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        else:
            anyio.run(narrated_session, args.config, env)
            say('\nDone. `make serve` serves the same stack to real MCP clients.')
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        shm.clean()


if __name__ == '__main__':
    raise SystemExit(main())

"""The first five minutes: the whole stack on a simulated robot, driven by a scripted agent.

    python -m skill_lanes_sim.demo --config config/sim_robot.yaml           # narrated session
    python -m skill_lanes_sim.demo --config config/sim_robot.yaml --serve   # MCP for real clients

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
    """Own ROS domain (unless ROS_DOMAIN_ID is set) and the tests' transport settings.

    Fast DDS over loopback UDP only (config/fastdds_udp.xml): nothing beyond this host.
    """
    global _DOMAIN_LOCK
    from skill_lanes_sim.isolation import claim_ros_domain, isolate
    domain = os.environ.get('ROS_DOMAIN_ID')
    if not domain:
        number, _DOMAIN_LOCK = claim_ros_domain()
        domain = str(number)
    isolate(int(domain))
    return dict(os.environ)


class Problems:
    """What went wrong in the session: the demo fails loudly (exit 1) if anything did."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.found.append(what)
            say(f'  !! {what}')


def body(result: Any) -> dict:
    return result.structured_content or {}


async def narrated_session(config: str, env: dict[str, str], problems: Problems) -> None:
    """The scripted agent: every step checks what it shows and records what went wrong."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable,
                                   args=['-m', 'mcp_gateway', '--config', config],
                                   env=env, cwd=os.getcwd())
    async with Client(params) as client:
        say('\n== 1. tools/list: every skill is a tool; _meta says its lane ==')
        tools = (await client.list_tools()).tools
        for tool in tools:
            meta = tool.meta or {}
            lane = meta.get('skill-lanes/lane', '-')
            policy = meta.get('skill-lanes/policy', '')
            say(f'  {tool.name:24} lane={lane:13} {policy}')
        await wait_for_lane_manager(client)

        say('\n== 2. two same-lane calls (navigate, dock: lane motion) and grasp '
            '(lane manipulation) at once ==')
        timeline: list[tuple[str, str, str]] = []

        async def call(name: str, args: dict) -> None:
            timeline.append((stamp(), name, 'called'))
            result = await client.call_tool(name, args)
            outcome = 'error' if result.is_error else body(result).get('status', '?')
            timeline.append((stamp(), name, outcome))
            problems.check(outcome == 'succeeded', f'{name} ended {outcome}: {body(result)}')

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
            problems.check(refused.is_error and body(refused).get('error') == 'operation_busy',
                           f'the second grasp was not refused as busy: {body(refused)}')
        held = first.get('r')
        problems.check(held is not None and not held.is_error,
                       f'the first grasp failed: {held and body(held)}')

        say('\n== 4. cancelling a call cancels the goal at the driver ==')
        async with anyio.create_task_group() as group:
            async def long_call() -> None:
                await client.call_tool('arm_home', {})
            group.start_soon(long_call)
            await anyio.sleep(1.0)
            group.cancel_scope.cancel()
        await anyio.sleep(1.0)
        answer = await client.call_tool('lanes_status', {})
        problems.check(not answer.is_error, f'lanes_status failed: {body(answer)}')
        status = body(answer)
        endings = status.get('lanes', {}).get('arm_safety', {}).get('last_endings', [])[-1:]
        for record in endings:
            say(f"  arm_home goal {record['goal_id'][:8]}: {record['outcome']} "
                f"({record['reason']})")
        problems.check(bool(endings) and endings[-1].get('outcome') == 'canceled',
                       f'the cancelled arm_home did not end canceled: {endings}')

        say('\n== 5. lane state at the end (tool lanes_status) ==')
        for lane, info in status.get('lanes', {}).items():
            holder = info['holder']['skill'] if info['holder'] else 'free'
            counters = info['counters']
            say(f"  {lane:13} {info['policy']:8} holder={holder:10} "
                f"succeeded={counters['succeeded']} rejected={counters['rejected']} "
                f"canceled={counters['canceled']} aborted={counters['aborted']}")


async def wait_for_lane_manager(client: Any, timeout: float = 30.0) -> None:
    """Until the lane manager has reached every driver and knows what each runs: before
    that, its lanes are held ("the goal status of driver ... is not known yet"), rightly,
    and the demo's first calls would be refused as busy.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await client.call_tool('lanes_status', {})
        state = result.structured_content or {}
        if not result.is_error and all(
                skill.get('driver_available') for skill in state.get('skills', {}).values()
        ) and all(lane.get('holder') is None and not lane.get('occupants')
                  for lane in state.get('lanes', {}).values()):
            return
        await anyio.sleep(0.2)
    raise SystemExit('the lane manager did not reach every simulated driver in '
                     f'{timeout:g} s')


def print_client_configs(config: str, host: str, port: int, env: dict[str, str]) -> None:
    """Client set-ups that work as pasted while this `make serve` runs.

    A stdio client starts a gateway of its own: it needs this stack's ROS domain and
    transport settings, and the config file by absolute path; the Inspector owns the
    command line's flags, so it gets the config through SKILL_LANES_CONFIG.
    """
    from skill_lanes_sim.isolation import ros_environment
    config_path = str(Path(config).resolve())
    ros_env = ros_environment(int(env['ROS_DOMAIN_ID']))
    ros_env.pop('PYTHONUNBUFFERED', None)
    stdio_env = {**ros_env, 'SKILL_LANES_CONFIG': config_path}
    python = sys.executable
    url = f'http://{host}:{port}/mcp'
    flags = ' '.join(f'-e {key}={value}' for key, value in stdio_env.items())
    say(f'\nMCP over HTTP (this stack, while it runs): {url}')
    say(f'Lane view (open in a browser): http://{host}:{port}/lanes')
    say(f'Claude Code (HTTP):   claude mcp add --transport http skill_lanes {url}')
    say(f'Claude Code (stdio):  claude mcp add skill_lanes {flags} -- {python} -m mcp_gateway')
    say(f'MCP Inspector (stdio): npx @modelcontextprotocol/inspector {flags} '
        f'{python} -m mcp_gateway')
    say(f'MCP Inspector (HTTP):  npx @modelcontextprotocol/inspector  '
        f'(transport Streamable HTTP, URL {url})')
    say('Claude Desktop / Cursor (stdio; each starts its own gateway on this robot):')
    say(json.dumps({'mcpServers': {'skill_lanes': {
        'command': python, 'args': ['-m', 'mcp_gateway'], 'env': stdio_env}}}, indent=2))


def _interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal API
    """SIGTERM stops the demo like Ctrl-C: its processes are stopped, not orphaned."""
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    """Run the narrated session (exit 1 if any step went wrong) or serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog='skill_lanes_demo', description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='config/sim_robot.yaml')
    parser.add_argument('--serve', action='store_true',
                        help='serve MCP over HTTP for real clients until Ctrl-C')
    parser.add_argument('--port', type=int, default=8765)
    args = parser.parse_args(argv)
    env = demo_environment()
    from skill_lanes_sim.isolation import ShmGuard
    from skill_lanes_sim.processes import ProcessGroup
    from skill_lanes_sim.stack import start_sim_robot
    log_dir = Path(os.environ.get('SKILL_LANES_LOG_DIR', '/tmp')) / f'skill_lanes_{os.getpid()}'
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = ProcessGroup()
    shm = ShmGuard()
    problems = Problems()
    say(f'skill_lanes demo: ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}, logs in {log_dir}')
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        start_sim_robot(stack, args.config, log_dir=log_dir)
        say(f'{stamp()}  simulated drivers and lane manager are up')
        if args.serve:
            gateway = stack.python('mcp_gateway', '--config', args.config, '--transport',
                                   'http', '--port', str(args.port), name='mcp_gateway',
                                   log_dir=log_dir)
            gateway.wait_for_output('mcp_gateway ready', timeout=60)
            print_client_configs(args.config, '127.0.0.1', args.port, env)
            say('\nServing; Ctrl-C to stop.')
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        anyio.run(narrated_session, args.config, env, problems)
    except KeyboardInterrupt:
        return 0
    except AssertionError as exc:  # a process did not start: its log says why
        print(f'demo failed: {exc}', file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the demo reports, never hides, a failure
        problems.found.append(f'{type(exc).__name__}: {exc}')
    finally:
        stack.stop_all(remove_logs=False)
        shm.clean()
    if problems.found:
        print(f'\ndemo FAILED ({len(problems.found)} problem(s), logs in {log_dir}):',
              file=sys.stderr)
        for problem in problems.found:
            print(f'  - {problem}', file=sys.stderr)
        return 1
    say('\nDone. `make serve` serves the same stack to real MCP clients.')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

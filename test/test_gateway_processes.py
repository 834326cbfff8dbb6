"""Several agents, each with a gateway process of its own, sharing one robot.

Three stdio gateway processes (spawned by the SDK's stdio client, as an MCP host does) and one
long-running HTTP gateway with two sessions call same-lane skills at once. The lane manager
must serialise each lane across every gateway: the simulated driver never sees two goals of
one lane overlap, every goal is counted, and goals of different lanes still run in parallel.
"""
from __future__ import annotations

import textwrap
import time

import anyio
import pytest

from ros_client import RosTestClient
from support import ProcessGroup
from test_gateway import (assert_succeeded, body, free_port, gateway_env, run, stdio_gateway,
                          write_config)
from mcp import Client

NAMESPACE = '/gw_proc_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      motion:  {{policy: queue, max_queue: 32}}
      gripper: {{policy: reject, retry_after_ms: 150}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwpsim/navigate}}
      dock:     {{lane: motion, action_type: test_msgs/action/Fibonacci, driver: /gwpsim/dock}}
      grasp:    {{lane: gripper, action_type: test_msgs/action/Fibonacci, driver: /gwpsim/grasp}}
      release:  {{lane: gripper, action_type: test_msgs/action/Fibonacci,
                 driver: /gwpsim/release}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0}}
    gateway: {{lane_manager_wait_s: 15.0, progress_interval_s: 1.0}}
    sim:
      default: {{duration_s: 0.25, feedback_hz: 10}}
""")
LANES = {'navigate': 'motion', 'dock': 'motion', 'grasp': 'gripper', 'release': 'gripper'}
MOTION_CALLS = 3     # per agent, all at once
GRIPPER_CALLS = 2    # per agent, all at once, retried while busy


@pytest.fixture(scope='module')
def robot(tmp_path_factory, rclpy_context):
    config_file = write_config(tmp_path_factory.mktemp('gw_proc'), CONFIG)
    group = ProcessGroup()
    client = None
    try:
        sim = group.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
                           name='gwp_sim_driver')
        manager = group.python('lane_manager.node', '--config', str(config_file),
                               '--ros-args', '-r', '__node:=gw_proc_lane_manager',
                               name='gwp_lane_manager')
        port = free_port()
        http = group.python('mcp_gateway', '--config', str(config_file), '--transport',
                            'http', '--port', str(port), env=gateway_env(),
                            name='gwp_http_gateway')
        sim.wait_for_output('sim_driver ready')
        manager.wait_for_output('lane_manager ready')
        http.wait_for_output('mcp_gateway ready on', timeout=60)
        client = RosTestClient(namespace=NAMESPACE)
        client.wait_for_skills('navigate', 'dock', 'grasp', 'release')
        client.wait_state(lambda s: all(v['driver_available'] for v in s['skills'].values()),
                          20, what='the lane manager to see every driver')
        client.wait_stats(lambda s: 'motion' in s['lanes'], what='sim driver stats')
        yield config_file, f'http://127.0.0.1:{port}/mcp', client
    finally:
        if client is not None:
            client.close()
        group.stop_all()


def test_agents_on_separate_gateways_never_overlap_in_a_lane(robot):
    config_file, url, ros = robot
    before = ros.sim_stats['lanes']
    outcomes: dict[str, list] = {'motion': [], 'gripper': [], 'busy': [], 'other': []}

    async def gripper_call(client: Client, skill: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            result = await client.call_tool(skill, {'order': 2})
            answer = body(result)
            if not result.is_error:
                outcomes['gripper'].append(assert_succeeded(result, skill, LANES))
                return
            if answer['error'] != 'operation_busy':
                outcomes['other'].append(answer)
                return
            data = answer['data']
            assert data['lane'] == 'gripper' and data['retry_after_ms'] == 150, answer
            assert data['holder']['skill'] in ('grasp', 'release'), answer
            outcomes['busy'].append(answer)
            assert time.monotonic() < deadline, 'gripper never became free'
            await anyio.sleep(data['retry_after_ms'] / 1000)

    async def motion_call(client: Client, skill: str) -> None:
        result = await client.call_tool(skill, {'order': 1})
        if result.is_error:
            outcomes['other'].append(body(result))
        else:
            outcomes['motion'].append(assert_succeeded(result, skill, LANES))

    async def agent(client: Client, index: int, ready: anyio.Event, go: anyio.Event) -> None:
        await client.list_tools()
        ready.set()
        await go.wait()
        async with anyio.create_task_group() as group:
            for turn in range(MOTION_CALLS):
                group.start_soon(motion_call, client, ('navigate', 'dock')[(index + turn) % 2])
            for turn in range(GRIPPER_CALLS):
                group.start_soon(gripper_call, client, ('grasp', 'release')[(index + turn) % 2])

    async def with_stdio(index, ready, go):
        async with stdio_gateway(config_file) as client:
            await agent(client, index, ready, go)

    async def with_http(index, ready, go):
        async with Client(url) as client:
            await agent(client, index, ready, go)

    async def scenario():
        go = anyio.Event()
        agents = [(with_stdio, i) for i in range(3)] + [(with_http, i) for i in (3, 4)]
        readies = [anyio.Event() for _ in agents]
        async with anyio.create_task_group() as group:
            for (start, index), ready in zip(agents, readies):
                group.start_soon(start, index, ready, go)
            for ready in readies:  # every gateway up and connected: then all at once
                await ready.wait()
            go.set()
    run(scenario, timeout=150)

    agents = 5
    assert outcomes['other'] == []
    assert len(outcomes['motion']) == agents * MOTION_CALLS
    assert len(outcomes['gripper']) == agents * GRIPPER_CALLS
    assert len({a['goal_id'] for a in outcomes['motion'] + outcomes['gripper']}) == \
        agents * (MOTION_CALLS + GRIPPER_CALLS)
    stats = ros.wait_stats(
        lambda s: (s['lanes']['motion']['goals'] - before['motion']['goals']
                   == agents * MOTION_CALLS)
        and s['lanes']['gripper']['goals'] - before['gripper']['goals'] == agents * GRIPPER_CALLS
        and s['lanes']['motion']['active'] == 0 and s['lanes']['gripper']['active'] == 0,
        15, what='every goal counted at the drivers')
    for lane in ('motion', 'gripper'):
        assert stats['lanes'][lane]['overlaps'] == 0, stats
        assert stats['lanes'][lane]['max_active'] == 1, stats
    assert stats['max_concurrent'] >= 2, 'motion and gripper goals must run in parallel'
    # Busy answers were real refusals at the lane manager, never goals at the driver.
    assert outcomes['busy'], 'ten gripper calls at once must meet a busy gripper'
    counters = ros.wait_state(lambda s: True)['lanes']['gripper']['counters']
    assert counters['rejected'] >= len(outcomes['busy'])

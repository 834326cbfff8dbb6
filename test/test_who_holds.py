"""Who holds what: a goal sent by a gateway carries who asked (MCP client name + version from
`initialize`, session, tool); the lane manager joins it into lane state, and a busy answer
names the agent holding the lane. Goals from a plain ROS client show as such.

Lane manager and simulated drivers as OS processes; the gateway in this process, reached by
real MCP sessions (in-memory transport) whose clients introduce themselves by name.
"""
from __future__ import annotations

import json
import textwrap

import anyio
import mcp_types as types
import pytest
from mcp import Client

from ros_client import RosTestClient
from support import ProcessGroup, wait_until
from test_gateway import InProcessGateway, body, run, write_config

CONFIG = textwrap.dedent("""
    lanes:
      arm: {policy: reject}
    skills:
      grasp: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /sim_who/grasp}
    lane_manager: {namespace: who_lm}
    sim:
      default: {duration_s: 3.0, feedback_hz: 10}
""")


@pytest.fixture(scope='module')
def stack(tmp_path_factory, rclpy_context):
    path = write_config(tmp_path_factory.mktemp('who'), CONFIG)
    group = ProcessGroup()
    client = gateway = None
    try:
        sim = group.python('skill_lanes_sim.sim_driver', '--config', str(path), name='sim_driver')
        manager = group.python('lane_manager.node', '--config', str(path), name='lane_manager')
        sim.wait_for_output('sim_driver ready')
        manager.wait_for_output('lane_manager ready')
        client = RosTestClient(namespace='/who_lm')
        client.wait_for_skills('grasp')
        client.wait_state(lambda s: s['skills']['grasp']['driver_available']
                          and s['lanes']['arm']['holder'] is None
                          and not s['lanes']['arm'].get('occupants'), 20,
                          what='the arm lane free, its driver known')
        gateway = InProcessGateway(path)
        gateway.wait_ready()
        wait_until(lambda: gateway.ros.node.lane_state is not None, 20,
                   what='the gateway to receive the lane state')
        yield client, gateway
    finally:
        if gateway is not None:
            gateway.close()
        if client is not None:
            client.close()
        group.stop_all()


def named_client(gateway: InProcessGateway, name: str) -> Client:
    return Client(gateway.server, mode='legacy',
                  client_info=types.Implementation(name=name, version='1.2'))


def test_busy_answer_names_the_agent_holding_the_lane(stack):
    ros, gateway = stack

    async def scenario():
        async with named_client(gateway, 'claude-code') as holder, \
                named_client(gateway, 'cursor') as other:
            async with anyio.create_task_group() as group:
                group.start_soon(holder.call_tool, 'grasp', {'order': 1})
                await anyio.to_thread.run_sync(lambda: ros.wait_state(
                    lambda s: (s['lanes']['arm']['holder'] or {}).get('agent'),
                    what='the holder with its agent in lane state'))
                busy = await other.call_tool('grasp', {'order': 1})
                group.cancel_scope.cancel()
            return busy
    busy = run(scenario)
    answer = body(busy)
    assert busy.is_error and answer['error'] == 'operation_busy', answer
    assert 'held by agent claude-code 1.2 (session' in answer['message'], answer
    assert 'running grasp' in answer['message']
    state = ros.wait_state(lambda s: s['lanes']['arm']['last_refusals'],
                           what='the refusal in lane state')
    refusal = state['lanes']['arm']['last_refusals'][-1]
    assert refusal['agent']['client'] == 'cursor' and refusal['agent']['tool'] == 'grasp'
    assert refusal['holder_agent']['client'] == 'claude-code'
    ros.wait_state(lambda s: s['lanes']['arm']['holder'] is None, 20, what='arm free')


def test_goal_from_a_plain_ros_client_shows_as_such(stack):
    ros, _ = stack
    call = ros.send('grasp')
    assert call.accepted()
    state = ros.wait_state(lambda s: (s['lanes']['arm']['holder'] or {}).get('goal_id')
                           == call.id, what='the ROS goal holding the arm')
    holder = state['lanes']['arm']['holder']
    assert holder['agent'] is None and holder['asked_by'] == 'a plain ROS client'
    call.cancel()
    ros.wait_state(lambda s: s['lanes']['arm']['holder'] is None, 20, what='arm free')


def test_who_asked_is_one_message_a_goal_kept_for_a_late_reader(stack):
    """One small message a goal (not the gateway's last 256 in each), and the gateway's
    writer keeps the last GOAL_AGENTS_HISTORY: a reader that starts later (a lane manager
    (re)started) hears who asked for each goal since, in order.
    """
    from std_msgs.msg import String

    from skill_lanes.interfaces import GOAL_AGENTS_QOS
    ros, gateway = stack

    async def two_calls():
        async with named_client(gateway, 'late-reader-check') as agent:
            for _ in range(2):
                async with anyio.create_task_group() as group:
                    group.start_soon(agent.call_tool, 'grasp', {'order': 1})
                    await anyio.to_thread.run_sync(lambda: ros.wait_state(
                        lambda s: ((s['lanes']['arm']['holder'] or {}).get('agent') or {})
                        .get('client') == 'late-reader-check', what='our goal holding arm'))
                    group.cancel_scope.cancel()
                await anyio.to_thread.run_sync(lambda: ros.wait_state(
                    lambda s: s['lanes']['arm']['holder'] is None, 20, what='arm free'))
    run(two_calls)
    heard: list[dict] = []
    late = ros.node.create_subscription(String, gateway.ros.node.names.goal_agents,
                                        lambda msg: heard.append(json.loads(msg.data)),
                                        GOAL_AGENTS_QOS)
    try:
        wait_until(lambda: sum(
            agent['client'] == 'late-reader-check'
            for message in heard for agent in message['agents'].values()) >= 2, 20,
            what='the late reader to hear both goals of the agent')
    finally:
        ros.node.destroy_subscription(late)
    ours = [message for message in heard
            if any(a['client'] == 'late-reader-check' for a in message['agents'].values())]
    assert all(len(message['agents']) == 1 for message in heard), heard
    assert len({gid for message in ours for gid in message['agents']}) == 2, ours
    assert {message['gateway'] for message in heard} == {
        gateway.ros.node.get_fully_qualified_name()}

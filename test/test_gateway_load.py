"""500 concurrent tools/call on one stdio session: every call ends in its real answer.

Before the gateway bounded the goal requests it has in flight (`gateway.max_goals_in_flight`),
such a burst ended in ~476 `lane_manager_unavailable` answers while the lane manager was
healthy: it had received only a few dozen of the requests; and a result request lost in such
a burst left its call waiting forever (the gateway now asks again once the goal's status says
it ended). Here a queue lane must run every
one of its goals (the driver counts them) and a reject lane must answer each call with its
result or a structured busy refusal; no call may end `lane_manager_unavailable`.
"""
from __future__ import annotations

import collections
import textwrap

import anyio
import pytest

from support import sim_robot_client
from test_gateway import run, stdio_gateway, write_config

NAMESPACE = '/gw_load_lm'
QUEUED_CALLS = 300
REJECT_CALLS = 200
CONFIG = textwrap.dedent(f"""
    lanes:
      conveyor: {{policy: queue, max_queue: {QUEUED_CALLS + 10}}}
      gripper:  {{policy: reject, retry_after_ms: 100}}
    skills:
      tick:  {{lane: conveyor, action_type: test_msgs/action/Fibonacci, driver: /gwload/tick}}
      poke:  {{lane: gripper, action_type: test_msgs/action/Fibonacci, driver: /gwload/poke}}
    lane_manager: {{namespace: {NAMESPACE}, driver_wait_s: 1.0}}
    gateway: {{lane_manager_wait_s: 30.0, progress_interval_s: 5.0, refusal_wait_s: 5.0}}
    sim:
      default: {{duration_s: 0.0, feedback_hz: 0}}
      skills:
        poke: {{duration_s: 0.3, feedback_hz: 0}}
""")


@pytest.fixture(scope='module')
def robot(tmp_path_factory, rclpy_context):
    config_file = write_config(tmp_path_factory.mktemp('gw_load'), CONFIG)
    with sim_robot_client(config_file, NAMESPACE, 'gw_load_lane_manager', ('tick', 'poke'),
                          'conveyor') as client:
        yield config_file, client


def test_500_concurrent_calls_on_one_stdio_session_each_get_their_real_answer(robot):
    config_file, stack = robot
    before = stack.sim_stats['lanes']
    answers: dict[str, list[dict]] = collections.defaultdict(list)

    async def call(client, skill: str) -> None:
        result = await client.call_tool(skill, {'order': 1})
        answers[skill].append(result.structured_content)

    async def scenario():
        async with stdio_gateway(config_file) as client:
            await client.call_tool('tick', {})  # the gateway has found the lane manager
            async with anyio.create_task_group() as group:
                for index in range(QUEUED_CALLS + REJECT_CALLS):
                    group.start_soon(call, client, 'tick' if index % 5 < 3 else 'poke')
    run(scenario, timeout=280)

    assert len(answers['tick']) == QUEUED_CALLS and len(answers['poke']) == REJECT_CALLS
    outcomes = collections.Counter((skill, body.get('status') or body.get('error'))
                                   for skill, bodies in answers.items() for body in bodies)
    assert outcomes[('tick', 'succeeded')] == QUEUED_CALLS, outcomes
    assert outcomes[('poke', 'succeeded')] + outcomes[('poke', 'operation_busy')] == \
        REJECT_CALLS, outcomes
    assert outcomes[('poke', 'succeeded')] >= 1, outcomes
    for body in answers['poke']:
        if body.get('error') == 'operation_busy':
            assert body['hint'] == 'retry' and body['data']['retry_after_ms'] == 100, body
    # Every call that was accepted ran at the driver, once, never two of a lane at once.
    after = stack.wait_stats(
        lambda s: s['lanes']['conveyor']['goals'] == before['conveyor']['goals']
        + QUEUED_CALLS + 1, 30, what='the driver to run every queued goal')['lanes']
    assert after['gripper']['goals'] - before['gripper']['goals'] == \
        outcomes[('poke', 'succeeded')]
    assert after['conveyor']['overlaps'] == after['gripper']['overlaps'] == 0

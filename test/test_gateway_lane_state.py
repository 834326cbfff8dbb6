"""The gateway reads the lane state typed, and keeps a message it cannot read out.

A test node publishes lane state messages for real over DDS (`<ns>/lane_state`, the lane
manager's QoS) in a namespace of this module where no lane manager runs: a mistyped message
(an incompatible lane manager) is never the state, `lanes_status` and the lane-state resource
answer the last valid message as it was published (unknown keys of a newer lane manager
included, conforming to the outputSchema: test_gateway's autouse check), and the refusal is
logged once.
"""
from __future__ import annotations

import json
import os
import textwrap

import pytest
from mcp.shared.exceptions import MCPError

from support import wait_until
from test_gateway import (InProcessGateway, assert_error, body, conforming_answers,  # noqa: F401
                          run, write_config)
from test_lane_state import _readme_example

NAMESPACE = '/gw_typed_state_lm'
CONFIG = textwrap.dedent(f"""
    lanes:
      motion: {{policy: queue}}
    skills:
      navigate: {{lane: motion, action_type: test_msgs/action/Fibonacci,
                 driver: /gwts/navigate}}
    lane_manager: {{namespace: {NAMESPACE}}}
    gateway: {{lane_manager_wait_s: 1.0}}
""")


@pytest.fixture(scope='module')
def gateway(tmp_path_factory, rclpy_context):
    config_file = write_config(tmp_path_factory.mktemp('gw_typed_state'), CONFIG)
    with InProcessGateway(config_file) as gw:
        yield gw


@pytest.fixture
def publish(rclpy_context):
    """Publish a lane state message text as the lane manager would (transient local)."""
    from std_msgs.msg import String

    from skill_lanes.interfaces import LANE_STATE_QOS, lane_state_topic
    node = rclpy_context.create_node(f'gw_typed_state_publisher_{os.getpid()}')
    publisher = node.create_publisher(String, lane_state_topic(NAMESPACE), LANE_STATE_QOS)
    yield lambda text: publisher.publish(String(data=text))
    node.destroy_node()


def _message(seq: int) -> dict:
    state = json.loads(_readme_example())
    state['seq'] = seq
    return state


def _mistyped(seq: int) -> str:
    state = _message(seq)
    state['lanes']['motion']['counters']['started'] = 'six'
    return json.dumps(state)


def read_all(gateway: InProcessGateway):
    """lanes_status and the lane-state resource (its text, or the MCP error)."""
    async def scenario():
        async with gateway.client() as client:
            status = await client.call_tool('lanes_status', {})
            try:
                content = (await client.read_resource('skill-lanes://lane-state')).contents
            except MCPError as exc:
                return status, exc
            return status, json.loads(content[0].text)
    return run(scenario)


def test_a_refused_lane_state_is_kept_out_and_the_last_valid_one_answers(gateway, publish,
                                                                         capfd):
    node = gateway.ros.node
    refused = node._lane_state

    # An incompatible lane manager's first message: no state at all.
    publish(_mistyped(1))
    wait_until(lambda: node.lane_state is None and refused.refused == 1, 20,
               what='the gateway to receive and refuse the mistyped message')
    status, resource = read_all(gateway)
    assert_error(status, 'lane_manager_unavailable')
    assert isinstance(resource, MCPError) and resource.code == -32010, resource
    assert node.awaiting_approval('…') is None and node.lane_record(
        'motion', 'last_refusals', '…') is None

    # A valid message of a newer lane manager (keys this gateway does not know): the state,
    # answered as published.
    sent = _message(2)
    sent['from_the_future'] = {'lanes_planned': 3}
    sent['lanes']['motion']['holder']['colour'] = 'blue'
    publish(json.dumps(sent))
    wait_until(lambda: (node.lane_state or {}).get('seq') == 2, 20,
               what='the gateway to take the valid message')
    status, resource = read_all(gateway)
    assert not status.is_error and body(status) == sent
    assert resource == sent
    lane, waiting = node.awaiting_approval('…')
    assert lane == 'motion' and waiting.deadline == 1795350989.0  # read typed
    assert node.lane_record('motion', 'last_refusals', '…').holder.skill == 'navigate'
    assert node.approval_record('…').decision == 'approved'

    # A mistyped message and a message that is not JSON later: the valid one stays.
    publish(_mistyped(3))
    wait_until(lambda: node.lane_state is not None and refused.refused == 2, 20,
               what='the gateway to refuse the second mistyped message')
    publish('{"seq": 4, "lanes": ')
    wait_until(lambda: node.lane_state is not None and refused.refused == 3, 20,
               what='the gateway to refuse the message that is not JSON')
    status, resource = read_all(gateway)
    assert not status.is_error and body(status) == sent and resource == sent

    # Said once for the first run of refusals, once for the second, naming the key.
    log = capfd.readouterr().err
    assert log.count('lane state message refused') == 2, log
    assert 'lanes.motion.counters.started' in log
    assert 'a valid message again, after 1 refused one(s)' in log

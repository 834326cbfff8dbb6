"""The MCP tools lane_take / lane_give_back: off unless gateway.operator_tools is true; they
call the lane manager's real take / give_back Trigger services (served here by a test node
over DDS, recording each call); answers conform to their outputSchema; over HTTP they need
the operator token (header X-Skill-Lanes-Operator, env var gateway.operator_token_env).
"""
from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest

from mcp_gateway.server import operator_refusal
from support import wait_until
from test_gateway import InProcessGateway, assert_error, body, write_config
from test_gateway_operator import TriggerServices, call

NAMESPACE = '/gw_operator_lm'  # TriggerServices serves under this namespace
CONFIG = textwrap.dedent(f"""
    lanes:
      arm:  {{policy: queue}}
    skills:
      count: {{lane: arm, action_type: test_msgs/action/Fibonacci, driver: /gwtake/count}}
    lane_manager: {{namespace: {NAMESPACE}}}
    gateway: {{lane_manager_wait_s: 1.0, operator_tools: {{enabled}}}}
""")


@pytest.fixture(scope='module')
def gateways(tmp_path_factory, rclpy_context):
    made = []
    try:
        for enabled in ('true', 'false'):
            path = write_config(tmp_path_factory.mktemp(f'gw_take_{enabled}'),
                                CONFIG.replace('{enabled}', enabled))
            made.append(InProcessGateway(path))
        yield made
    finally:
        for gateway in made:
            gateway.close()


def test_operator_tools_are_off_unless_enabled(gateways):
    enabled, disabled = gateways
    assert {'lane_take', 'lane_give_back'} <= {t.name for t in enabled.tools.tools()}
    assert not {'lane_take', 'lane_give_back'} & {t.name for t in disabled.tools.tools()}
    assert_error(call(disabled, 'lane_take', {'lane': 'arm'}), 'unknown_tool')


def test_take_and_give_back_call_the_lane_managers_services(gateways, rclpy_context):
    enabled, _ = gateways
    services = TriggerServices(rclpy_context, {
        'arm/take': (True, "lane 'arm' taken by an operator"),
        'arm/give_back': (False, "lane 'arm' was not taken")})
    try:
        client = enabled.ros.node._lane_services[('arm', 'take')]
        wait_until(client.service_is_ready, 20, what='the gateway to see the services')
        taken = call(enabled, 'lane_take', {'lane': 'arm'})
        assert not taken.is_error
        assert body(taken) == {'lane': 'arm', 'taken': True,
                               'detail': "lane 'arm' taken by an operator"}
        refused = assert_error(call(enabled, 'lane_give_back', {'lane': 'arm'}), 'not_taken')
        assert refused['message'] == "lane 'arm' was not taken"
        assert_error(call(enabled, 'lane_take', {'lane': 'nope'}), 'invalid_arguments')
        assert services.calls == ['arm/take', 'arm/give_back']
    finally:
        services.close()


def test_operator_token_over_http(monkeypatch):
    def request(headers):
        return SimpleNamespace(headers=headers)
    env = 'SKILL_LANES_OPERATOR_TOKEN_TEST'
    assert operator_refusal(None, env) is None  # stdio: the local user who started it
    monkeypatch.delenv(env, raising=False)
    assert env in operator_refusal(request({}), env)  # no token configured: refused
    monkeypatch.setenv(env, 's3cret')
    assert 'missing or wrong' in operator_refusal(request({}), env)
    assert 'missing or wrong' in operator_refusal(
        request({'x-skill-lanes-operator': 'nope'}), env)
    assert operator_refusal(request({'x-skill-lanes-operator': 's3cret'}), env) is None

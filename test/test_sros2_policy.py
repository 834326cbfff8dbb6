"""The SROS2 policy (skill_lanes/sros2_policy.py) against the nodes as they really run.

SROS2 itself is not on PyPI, so the permissions cannot be enforced here. What can be checked
is what decides whether a policy works on a robot: every endpoint the real lane manager and
gateway create (read from the ROS graph, a namespaced stack as launch brings it up) is allowed
by their enclave, read back from the XML the way sros2's permissions template reads it, and
the safety-relevant names are allowed to nobody else: only the e-stop source enclaves publish
on an e-stop topic, only the operator (and a gateway with operator_tools) calls take/give_back.
"""
from __future__ import annotations

import fnmatch
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from skill_lanes.config import parse_config as _parse
from skill_lanes.sros2_policy import policy_xml
from support import ProcessGroup

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = '/robot1'
CONFIG = textwrap.dedent("""
    lanes:
      motion: {policy: queue}
      arm:    {policy: reject}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: sim/navigate}
      grasp:    {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /arm/grasp}
      inspect:  {action_type: test_msgs/action/NestedMessage, driver: sim/inspect}
    lane_manager: {emergency_stop_topic: /pendant/stop}
    gateway: {operator_tools: false}
""")
# Kinds of permission, as sros2's permissions template turns a profile into topics.
PUBLISH, SUBSCRIBE, REPLY, REQUEST = 'publish', 'subscribe', 'reply', 'request'
ACTION_SERVICES = ('send_goal', 'get_result', 'cancel_goal')
ACTION_TOPICS = ('feedback', 'status')


def parse_config(text: str):
    return _parse(yaml.safe_load(text))


def allowed(policy: str) -> dict[str, dict[str, set[str]]]:
    """Enclave path -> kind -> the name patterns it may use, from the policy XML."""
    enclaves: dict[str, dict[str, set[str]]] = {}
    for enclave in ET.fromstring(policy).iter('enclave'):
        kinds: dict[str, set[str]] = {k: set() for k in (PUBLISH, SUBSCRIBE, REPLY, REQUEST)}
        for profile in enclave.iter('profile'):
            ns, node = profile.get('ns').rstrip('/'), profile.get('node')

            def name(text: str) -> str:
                if text.startswith('/'):
                    return text
                if text.startswith('~'):
                    return f'{ns}/{node}{text[1:]}'
                return f'{ns}/{text}'
            for group in profile:
                names = [name(e.text) for e in group]
                for kind in (PUBLISH, SUBSCRIBE, REPLY, REQUEST):
                    if group.tag in ('topics', 'services') and group.get(kind) == 'ALLOW':
                        kinds[kind].update(names)
                if group.tag == 'actions':
                    for action in names:
                        services = {f'{action}/_action/{s}' for s in ACTION_SERVICES}
                        topics = {f'{action}/_action/{t}' for t in ACTION_TOPICS}
                        if group.get('execute') == 'ALLOW':
                            kinds[REPLY] |= services
                            kinds[PUBLISH] |= topics
                        if group.get('call') == 'ALLOW':
                            kinds[REQUEST] |= services
                            kinds[SUBSCRIBE] |= topics
        enclaves[enclave.get('path')] = kinds
    return enclaves


def is_allowed(patterns: set[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def test_policy_is_a_valid_sros2_policy_document():
    root = ET.fromstring(policy_xml(parse_config(CONFIG), NAMESPACE))
    assert root.tag == 'policy' and root.get('version') == '0.2.0'
    assert [c.tag for c in root] == ['enclaves']
    for enclave in root.find('enclaves'):
        assert enclave.tag == 'enclave' and enclave.get('path').startswith('/skill_lanes/')
        assert [c.tag for c in enclave] == ['profiles']
        for profile in enclave.find('profiles'):
            assert profile.get('ns') == NAMESPACE and profile.get('node')
            for group in profile:
                assert group.tag in ('topics', 'services', 'actions') and len(group)
                assert set(group.attrib.values()) == {'ALLOW'}


def test_only_the_sources_publish_the_stop_and_only_the_operator_takes():
    enclaves = allowed(policy_xml(parse_config(CONFIG), NAMESPACE))
    for path, kinds in enclaves.items():
        may_stop = is_allowed(kinds[PUBLISH], '/pendant/stop')
        assert may_stop == path.startswith('/skill_lanes/emergency_stop/'), path
        may_take = is_allowed(kinds[REQUEST], f'{NAMESPACE}/lane_manager/lanes/arm/take')
        assert may_take == (path == '/skill_lanes/operator'), path
        manager = f'{NAMESPACE}/lane_manager'
        may_approve = (is_allowed(kinds[REQUEST], f'{manager}/lanes/arm/approve')
                       or is_allowed(kinds[PUBLISH], f'{manager}/approval_decisions'))
        assert may_approve == (path == '/skill_lanes/operator'), path
    gateway = enclaves['/skill_lanes/mcp_gateway']
    assert not is_allowed(gateway[REQUEST], f'{NAMESPACE}/sim/navigate/_action/send_goal')
    skill_goal = f'{NAMESPACE}/lane_manager/skills/navigate/_action/send_goal'
    assert is_allowed(gateway[REQUEST], skill_goal)
    with_tools = allowed(policy_xml(parse_config(CONFIG.replace('operator_tools: false',
                                                                'operator_tools: true')),
                                    NAMESPACE))['/skill_lanes/mcp_gateway']
    assert is_allowed(with_tools[REQUEST], f'{NAMESPACE}/lane_manager/lanes/arm/take')
    assert is_allowed(with_tools[PUBLISH], f'{NAMESPACE}/lane_manager/approval_decisions')


def test_each_stop_source_has_an_enclave_of_its_own():
    config = parse_config(CONFIG.replace(
        'lane_manager: {emergency_stop_topic: /pendant/stop}',
        'lane_manager: {emergency_stop: {sources: [{topic: /pendant/stop}, '
        '{topic: fleet/stop, heartbeat_s: 0.5, lanes: [arm]}]}}'))
    enclaves = allowed(policy_xml(config, NAMESPACE))
    manager = enclaves['/skill_lanes/lane_manager']
    for topic in ('/pendant/stop', f'{NAMESPACE}/fleet/stop'):
        assert is_allowed(manager[SUBSCRIBE], topic), topic
    assert not is_allowed(manager[SUBSCRIBE], '/emergency_stop')  # the old key's default
    source0, source1 = (enclaves[f'/skill_lanes/emergency_stop/source{i}'] for i in (0, 1))
    assert is_allowed(source0[PUBLISH], '/pendant/stop')
    assert not is_allowed(source0[PUBLISH], f'{NAMESPACE}/fleet/stop')
    assert is_allowed(source1[PUBLISH], f'{NAMESPACE}/fleet/stop')
    assert not is_allowed(source1[PUBLISH], '/pendant/stop')


def test_shipped_policy_is_the_generated_one_for_the_sim_robot():
    shipped = (ROOT / 'config' / 'sros2' / 'sim_robot.policy.xml').read_text()
    out = subprocess.run([sys.executable, '-m', 'skill_lanes.sros2_policy', '--config',
                          str(ROOT / 'config' / 'sim_robot.yaml')],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert shipped == out, 'regenerate config/sros2/sim_robot.policy.xml (README "Safety")'


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lanes: {motion: {policy: sometimes}}\n')
    run = subprocess.run([sys.executable, '-m', 'skill_lanes.sros2_policy', '--config',
                          str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ''
    assert run.stderr.startswith('config error: ') and 'lanes.motion.policy' in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def _endpoints(node, name: str, ns: str) -> dict[str, set[str]]:
    return {
        PUBLISH: {t for t, _ in node.get_publisher_names_and_types_by_node(name, ns)},
        SUBSCRIBE: {t for t, _ in node.get_subscriber_names_and_types_by_node(name, ns)},
        REPLY: {s for s, _ in node.get_service_names_and_types_by_node(name, ns)},
        REQUEST: {s for s, _ in node.get_client_names_and_types_by_node(name, ns)},
    }


@pytest.fixture
def namespaced_stack(tmp_path, rclpy_context):
    from test_gateway import free_port, gateway_env
    path = tmp_path / 'robot.yaml'
    path.write_text(CONFIG)
    group = ProcessGroup()
    ros_ns = ('--ros-args', '-r', f'__ns:={NAMESPACE}')
    try:
        manager = group.python('lane_manager.node', '--config', str(path), *ros_ns,
                               name='lane_manager')
        gateway = group.python('mcp_gateway', '--config', str(path), '--transport', 'http',
                               '--port', str(free_port()), *ros_ns, env=gateway_env(),
                               name='gateway')
        manager.wait_for_output('lane_manager ready', timeout=60)
        gateway.wait_for_output('mcp_gateway ready on', timeout=60)
        yield path
    finally:
        group.stop_all()


def test_every_endpoint_of_the_running_nodes_is_allowed_by_its_enclave(namespaced_stack,
                                                                       rclpy_context):
    enclaves = allowed(policy_xml(parse_config(namespaced_stack.read_text()), NAMESPACE))
    observer = rclpy_context.create_node('sros2_policy_observer')
    try:
        roles = {'/skill_lanes/lane_manager': 'lane_manager*',
                 '/skill_lanes/mcp_gateway': 'mcp_gateway_*'}
        expected_nodes = {'lane_manager', 'lane_manager_status', 'lane_manager_motion_goals',
                          'lane_manager_arm_goals', 'lane_manager_goals'}
        deadline = time.monotonic() + 30
        while True:  # discovery of every node and of its endpoints takes a while
            nodes = [(n, ns) for n, ns in observer.get_node_names_and_namespaces()
                     if ns == NAMESPACE]
            names = {n for n, _ in nodes}
            seen = {n: _endpoints(observer, n, ns) for n, ns in nodes}
            gateway = [n for n in names if n.startswith('mcp_gateway_')]
            if (expected_nodes <= names and gateway
                    and seen['lane_manager'][REPLY] and seen[gateway[0]][REQUEST]
                    and seen['lane_manager_motion_goals'][REPLY]):
                break
            assert time.monotonic() < deadline, f'nodes seen: {sorted(names)}'
            time.sleep(0.3)
        time.sleep(1.0)  # let the last endpoints arrive
        seen = {n: _endpoints(observer, n, ns) for n, ns in nodes}
        denied = []
        checked = 0
        for node, kinds in seen.items():
            path = next(p for p, pattern in roles.items() if fnmatch.fnmatchcase(node, pattern))
            for kind, names_used in kinds.items():
                for name in names_used:
                    checked += 1
                    if not is_allowed(enclaves[path][kind], name):
                        denied.append(f'{node} ({path}) {kind} {name}')
        assert checked > 40
        assert not denied, 'the policy would deny:\n' + '\n'.join(sorted(denied))
    finally:
        observer.destroy_node()

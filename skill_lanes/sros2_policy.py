"""An SROS2 access-control policy for one skill_lanes stack, generated from its config.

Why: on an open ROS graph any node may call a lane's stop/take/approve service or publish on an
emergency stop topic (clearing the stop). ROS 2 has no authentication of its own; DDS
Security (SROS2) adds it: every process joins with a certificate of its *enclave*, and a
permissions file signed for that enclave lists the topics it may publish or subscribe and the
services and actions it may serve or call. This module writes the policy those permissions are
generated from (`ros2 security create_permission` / `generate_artifacts -p FILE`), one enclave
per role:

- `/skill_lanes/lane_manager`: serves the skills' action servers and the lanes' operator
  services, calls the drivers' actions, follows the e-stop topics and the gateways' goal agents.
- `/skill_lanes/mcp_gateway`: calls the skills' action servers (never a driver), reads lane
  state, may call the stop/release services (and, with `operator_tools`, take, give_back,
  approve and the approval decisions).
- `/skill_lanes/operator`: an operator console or a physical button: the lanes' operator
  services (stop, release, take, give_back, approve), approval decisions and lane state.
- `/skill_lanes/emergency_stop/<n>`: one per e-stop source, allowed to publish on its own
  topic only (a pendant cannot publish on the supervisor's topic).

Names follow the SROS2 policy format (policy.xsd 0.2.0): absolute names are kept, relative
names are resolved under the profile's `ns`, the way the nodes resolve them. No node and no
ROS I/O: `test/test_sros2_policy.py` checks the policy against the endpoints the real
nodes create. Drivers keep the policies of their own packages (Nav2, ros2_control); they must
allow the lane manager's enclave to call them.

    python -m skill_lanes.sros2_policy --config robot.yaml [--namespace /robot1] > policy.xml
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence
from xml.sax.saxutils import escape

from skill_lanes.config import Config, ConfigError, load_config
from skill_lanes.interfaces import (APPROVE_VERB, DIAGNOSTICS_TOPIC, GIVE_BACK_VERB,
                                     GOAL_AGENTS_TOPIC, TAKE_VERB, TOOL_LANES_TOPIC,
                                     approval_decisions_topic, lane_service_name,
                                     lane_state_topic, normalize_namespace, skill_server_name)

# Per-lane services of the lane manager; the operator ones only for the operator (and for a
# gateway with operator_tools).
OPERATOR_LANE_VERBS = (TAKE_VERB, GIVE_BACK_VERB, APPROVE_VERB)
LANE_VERBS = ('release', 'stop', *OPERATOR_LANE_VERBS)
POLICY_VERSION = '0.2.0'
ENCLAVE_ROOT = '/skill_lanes'
# What every rclpy node creates besides its own interfaces (sros2's common/node.xml).
NODE_TOPICS_PUBLISH = ('/rosout', '/parameter_events')
NODE_TOPICS_SUBSCRIBE = ('/parameter_events',)
NODE_SERVICES = ('~/describe_parameters', '~/get_parameter_types', '~/get_parameters',
                 '~/list_parameters', '~/set_parameters', '~/set_parameters_atomically',
                 '~/get_type_description')


@dataclass
class Profile:
    """What one node of an enclave may do (a `<profile>` of the policy)."""

    node: str
    ns: str
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    reply: list[str] = field(default_factory=list)      # services served
    request: list[str] = field(default_factory=list)    # services called
    execute: list[str] = field(default_factory=list)    # actions served
    call: list[str] = field(default_factory=list)       # actions called
    node_interfaces: bool = True                        # rosout, parameters, type description


@dataclass
class Enclave:
    path: str
    profiles: list[Profile]


def emergency_stop_topics(config: Config) -> list[str]:
    """Every e-stop topic the lane manager follows, in the order of its sources (the
    enclave `/skill_lanes/emergency_stop/source<N>` is the source at index N).
    """
    return [source.topic for source in config.lane_manager.stop_sources()]


def resolve(name: str, ns: str, node: str = '') -> str:
    """A ROS name as the node `ns`/`node` resolves it (absolute, `~` private, else relative)."""
    if name.startswith('/'):
        return name
    base = normalize_namespace(ns).rstrip('/')
    if name.startswith('~'):
        return f'{base}/{node}{name[1:]}'
    return f'{base}/{name}'


def stack_enclaves(config: Config, namespace: str = '/') -> list[Enclave]:
    """The enclaves of one stack whose nodes run in ROS namespace `namespace`."""
    ns = normalize_namespace(namespace)
    manager_ns = resolve(config.lane_manager.namespace, ns)
    skills = [skill_server_name(manager_ns, s) for s in config.skills]
    drivers = sorted({resolve(s.driver, ns) for s in config.skills.values()})
    lanes = list(config.lanes)
    lane_services = [lane_service_name(manager_ns, lane, verb)
                     for lane in lanes for verb in LANE_VERBS]
    operator_services = [lane_service_name(manager_ns, lane, verb)
                         for lane in lanes for verb in OPERATOR_LANE_VERBS]
    agent_services = [s for s in lane_services if s not in operator_services]
    state = lane_state_topic(manager_ns)
    stop_topics = [resolve(t, ns) for t in emergency_stop_topics(config)]
    goal_agents = resolve(GOAL_AGENTS_TOPIC, ns)
    decisions = approval_decisions_topic(manager_ns)  # operator decisions on waiting goals
    operator_tools = config.gateway.operator_tools

    manager = Profile(
        'lane_manager', ns, publish=[state, DIAGNOSTICS_TOPIC],
        subscribe=[goal_agents, decisions, *stop_topics], reply=lane_services, execute=skills,
        call=drivers)
    status = Profile('lane_manager_status', ns,
                     subscribe=[f'{d}/_action/status' for d in drivers])
    # Each lane's skill servers live on a node of their own (goal_intake.py); unlaned ones
    # on `lane_manager_goals`.
    intakes = [Profile(f'lane_manager_{lane}_goals' if lane else 'lane_manager_goals', ns,
                       node_interfaces=False,
                       execute=[skill_server_name(manager_ns, s)
                                for s, cfg in config.skills.items()
                                if cfg.primary_lane == lane])
               for lane in [*lanes, None]]
    # A gateway's node is `mcp_gateway_<pid>` unless --node-name says otherwise: DDS
    # permissions match names as fnmatch patterns, so its private names are a pattern.
    gateway = Profile(
        'mcp_gateway_*', ns,
        publish=[resolve(TOOL_LANES_TOPIC, ns), goal_agents] + ([decisions] if operator_tools
                                                                 else []),
        subscribe=[state], call=skills,
        request=agent_services + (operator_services if operator_tools else []))
    operator = Profile('operator', ns, subscribe=[state], publish=[decisions],
                       request=lane_services)
    enclaves = [
        Enclave(f'{ENCLAVE_ROOT}/lane_manager',
                [manager, status, *[i for i in intakes if i.execute]]),
        Enclave(f'{ENCLAVE_ROOT}/mcp_gateway', [gateway]),
        Enclave(f'{ENCLAVE_ROOT}/operator', [operator]),
    ]
    for index, topic in enumerate(stop_topics):
        enclaves.append(Enclave(f'{ENCLAVE_ROOT}/emergency_stop/source{index}',
                                [Profile('emergency_stop_source', ns, publish=[topic])]))
    return enclaves


def _names(tag: str, items: Sequence[str]) -> list[str]:
    return [f'        <{tag}>{escape(item)}</{tag}>' for item in sorted(dict.fromkeys(items))]


def _group(kind: str, item: str, qualifiers: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return [f'      <{kind} {qualifiers}>', *_names(item, items), f'      </{kind}>']


def _profile_xml(profile: Profile) -> list[str]:
    publish, subscribe, reply = list(profile.publish), list(profile.subscribe), list(profile.reply)
    if profile.node_interfaces:
        publish += NODE_TOPICS_PUBLISH
        subscribe += NODE_TOPICS_SUBSCRIBE
        reply += NODE_SERVICES
    both = sorted(set(publish) & set(subscribe))
    lines = [f'    <profile ns="{escape(profile.ns)}" node="{escape(profile.node)}">']
    lines += _group('topics', 'topic', 'publish="ALLOW" subscribe="ALLOW"', both)
    lines += _group('topics', 'topic', 'publish="ALLOW"',
                    [t for t in publish if t not in both])
    lines += _group('topics', 'topic', 'subscribe="ALLOW"',
                    [t for t in subscribe if t not in both])
    lines += _group('services', 'service', 'reply="ALLOW"', reply)
    lines += _group('services', 'service', 'request="ALLOW"', profile.request)
    lines += _group('actions', 'action', 'execute="ALLOW"', profile.execute)
    lines += _group('actions', 'action', 'call="ALLOW"', profile.call)
    lines.append('    </profile>')
    return ['  ' + line for line in lines]


def policy_xml(config: Config, namespace: str = '/') -> str:
    """The policy document (SROS2 policy.xsd 0.2.0) for the stack in `namespace`."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<!-- Generated by: python -m skill_lanes.sros2_policy (see README "Safety") -->',
             f'<policy version="{POLICY_VERSION}">', '  <enclaves>']
    for enclave in stack_enclaves(config, namespace):
        lines += [f'    <enclave path="{escape(enclave.path)}">', '      <profiles>']
        for profile in enclave.profiles:
            lines += ['  ' + line for line in _profile_xml(profile)]
        lines += ['      </profiles>', '    </enclave>']
    lines += ['  </enclaves>', '</policy>']
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='skill_lanes_sros2_policy',
        description='Print the SROS2 policy of a skill_lanes stack (see README "Safety").')
    parser.add_argument('--config', required=True, help='skill_lanes YAML file')
    parser.add_argument('--namespace', default='/',
                        help='the ROS namespace the stack runs in (launch namespace:=...)')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, check_types=False)
    except ConfigError as exc:
        print(f'config error: {exc}', file=sys.stderr)
        return 2
    sys.stdout.write(policy_xml(config, args.namespace))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Which agent may do what, as pure rules: config keys, token -> client, client -> skills and
lanes, the tools/list each sees and the calls refused (mcp_gateway/permissions.py).

The processes that apply them (HTTP with two named tokens, stdio with gateway.skills) are
test_permissions_processes.py.
"""
from __future__ import annotations

import textwrap
from types import SimpleNamespace

import mcp_types as types
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lane_manager.agents import describe
from skill_lanes.config import ConfigError, parse_config
from mcp_gateway import lane_view_auth as auth
from mcp_gateway.agents import agent_of
from mcp_gateway.permissions import SCOPE_KEY, Permissions, grant_of
from mcp_gateway.server import operator_refusal
from mcp_gateway.tool_names import OPERATOR_TOOL_NAMES
from mcp_gateway.tool_defs import builtin_tools, operator_tools

SKILLS = {'navigate': 'base', 'dock': 'base', 'grasp': 'arm', 'arm_home': 'arm',
          'inspect': None}
LANES = ['arm', 'base']


def config(gateway: str = '{}'):
    skills = '\n'.join(
        f'  {name}: {{{f"lane: {lane}, " if lane else ""}action_type: a/action/B, '
        f'driver: /d/{name}}}' for name, lane in SKILLS.items())
    text = f'lanes: {{arm: {{}}, base: {{}}}}\nskills:\n{skills}\ngateway: {gateway}\n'
    return parse_config(yaml.safe_load(text), 'robot.yaml', check_types=False)


def config_error(gateway: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config(gateway)
    return str(caught.value)


def all_tools() -> list[types.Tool]:
    skills = [types.Tool.model_validate({'name': name, 'inputSchema': {'type': 'object'}})
              for name in SKILLS]
    return (skills + builtin_tools(sorted(SKILLS), LANES) + operator_tools(LANES)
            + [types.Tool.model_validate({'name': 'unity_refresh',
                                          'inputSchema': {'type': 'object'}})])


CLIENTS = """{clients: {
    alice: {token_env: ALICE_TOKEN, skills: ['nav*', dock]},
    bob:   {token_env: BOB_TOKEN, skills: [grasp]},
    carol: {token_env: CAROL_TOKEN, skills: [], operator: true},
    dave:  {token_env: DAVE_TOKEN}}}"""
TOKENS = {'ALICE_TOKEN': 'a-secret', 'BOB_TOKEN': 'b-secret', 'CAROL_TOKEN': 'c-secret'}


@pytest.fixture
def permissions() -> Permissions:
    return Permissions.from_config(config(CLIENTS), TOKENS)


# ------------------------------------------------------------------------------ config
def test_config_defaults_offer_everything_to_one_unnamed_caller():
    perms = Permissions.from_config(config(), {'SKILL_LANES_TOKEN': 'x'})
    assert not perms.named and perms.default.client is None
    assert perms.default.skills == set(SKILLS) and perms.default.lanes == set(LANES)
    assert perms.authenticate('x') is None  # the single token is http.py's, as before


def test_config_reads_clients_with_defaults():
    gateway = config(CLIENTS).gateway
    assert gateway.clients['dave'].skills == ['*'] and gateway.clients['dave'].operator is False
    assert gateway.clients['carol'].operator is True and gateway.skills == ['*']


@pytest.mark.parametrize('gateway, expected', [
    ('{clients: {a: {token_env: A, bogus: 1}}}', 'robot.yaml: gateway.clients.a.bogus: '
                                                 'unknown key'),
    ('{clients: {a: {skills: [grasp]}}}', 'robot.yaml: gateway.clients.a.token_env: '
                                          'Field required'),
    ('{clients: {a: {token_env: "NOT AN ENV"}}}', 'gateway.clients.a.token_env: invalid value'),
    ('{clients: {"9lives": {token_env: A}}}', "gateway.clients: invalid client name '9lives'"),
    ('{clients: {a: {token_env: T}, b: {token_env: T}}}',
     "robot.yaml: gateway.clients.b.token_env: T is already the token of client 'a'"),
    ('{skills: [grap]}', "robot.yaml: gateway.skills: 'grap' matches no configured skill "
                         '(known: arm_home, dock, grasp, inspect, navigate)'),
    ('{skills: [nav*], clients: {a: {token_env: A, skills: [grasp]}}}',
     "robot.yaml: gateway.clients.a.skills: 'grasp' matches no skill this gateway offers "
     '(gateway.skills: navigate)'),
    ('{clients: {a: {token_env: A, skills: [Grasp]}}}', "'Grasp' matches no"),  # case matters
])
def test_config_errors_name_the_key(gateway, expected):
    message = config_error(gateway)
    assert expected in message, message
    assert '\n' not in message


def test_star_is_never_a_typo_even_without_skills():
    empty = parse_config(yaml.safe_load(textwrap.dedent("""
        gateway: {skills: ['*'], clients: {a: {token_env: A}}}
    """)), check_types=False)
    perms = Permissions.from_config(empty, {'A': 'x'})
    assert perms.grant('a').skills == frozenset() and perms.offered == frozenset()


# ------------------------------------------------------------------------------ tokens
def test_a_token_names_its_client_and_nothing_else(permissions):
    assert permissions.authenticate('a-secret').client == 'alice'
    assert permissions.authenticate('b-secret').client == 'bob'
    for wrong in ('', 'a-secre', 'a-secret ', 'A-SECRET', 'c'):
        assert permissions.authenticate(wrong) is None


def test_a_token_of_any_characters_names_its_client():
    perms = Permissions.from_config(config(CLIENTS), {**TOKENS, 'DAVE_TOKEN': 'dävë-ß'})
    supplied = 'dävë-ß'.encode().decode('utf-8', 'surrogateescape')  # as http.py decodes
    assert perms.authenticate(supplied).client == 'dave'
    assert perms.authenticate(b'\xff\xfe'.decode('utf-8', 'surrogateescape')) is None


def test_a_client_without_its_variable_can_never_authenticate():
    perms = Permissions.from_config(config(CLIENTS), {**TOKENS, 'DAVE_TOKEN': ''})
    assert perms.clients_without_token() == ['dave']
    assert perms.authenticate('') is None
    assert all(g is None or g.client != 'dave'
               for g in map(perms.authenticate, ['', ' ', 'None', 'DAVE_TOKEN']))


def test_two_clients_with_the_same_token_are_found():
    perms = Permissions.from_config(config(CLIENTS), {**TOKENS, 'DAVE_TOKEN': 'a-secret'})
    assert perms.shared_tokens() == [('alice', 'dave')]


def test_grants_are_the_clients_globs_within_gateway_skills():
    perms = Permissions.from_config(config("""{skills: [navigate, grasp, inspect],
        clients: {alice: {token_env: A, skills: ['nav*', 'grasp']}, eve: {token_env: E}}}"""),
        {'A': 'a', 'E': 'e'})
    assert perms.grant('alice').skills == {'navigate', 'grasp'}
    assert perms.grant('alice').lanes == {'base', 'arm'}
    assert perms.grant('eve').skills == {'navigate', 'grasp', 'inspect'}  # '*' within the bound
    assert perms.default.skills == {'navigate', 'grasp', 'inspect'}  # stdio's allowlist


# ------------------------------------------------------------------------------ tools
def names(tools: list[types.Tool]) -> list[str]:
    return [tool.name for tool in tools]


def test_each_client_lists_only_what_it_may_use(permissions):
    alice = permissions.visible_tools(all_tools(), permissions.grant('alice'), False,
                                      OPERATOR_TOOL_NAMES)
    assert names(alice) == ['navigate', 'dock', 'lanes_status', 'lane_stop', 'lane_release',
                            'skill_start', 'skill_status', 'skill_cancel', 'unity_refresh']
    by_name = {tool.name: tool for tool in alice}
    assert by_name['skill_start'].input_schema['properties']['skill']['enum'] == [
        'dock', 'navigate']
    assert by_name['lane_stop'].input_schema['properties']['lane']['enum'] == ['base']
    carol = permissions.visible_tools(all_tools(), permissions.grant('carol'), True,
                                      OPERATOR_TOOL_NAMES)
    assert names(carol) == ['lanes_status', 'lane_stop', 'lane_release', 'lane_take',
                            'lane_give_back', 'goal_approve', 'goal_deny', 'unity_refresh']


def test_the_unrestricted_list_is_exactly_todays(permissions):
    tools = all_tools()
    shown = permissions.visible_tools(tools, permissions.default, True, OPERATOR_TOOL_NAMES)
    assert len(shown) == len(tools) and all(a is b for a, b in zip(shown, tools))


def no_jobs(goal_id: str):
    return None


def test_calls_outside_the_grant_are_forbidden_naming_client_and_skill(permissions):
    alice = permissions.grant('alice')
    refusal = permissions.refusal(alice, 'grasp', {}, no_jobs)
    assert refusal.error == 'forbidden'
    assert refusal.message == "client 'alice' may not use skill 'grasp' (its skills: dock, " \
                              'navigate)'
    assert refusal.data == {'client': 'alice', 'skill': 'grasp', 'tool': 'grasp'}
    assert permissions.refusal(alice, 'navigate', {'order': 1}, no_jobs) is None
    # The generic tools are no way around it.
    assert permissions.refusal(alice, 'skill_start', {'skill': 'grasp'}, no_jobs).data[
        'skill'] == 'grasp'
    assert permissions.refusal(alice, 'skill_start', {'skill': 'dock'}, no_jobs) is None
    unknown = permissions.refusal(alice, 'skill_start', {'skill': 'fly'}, no_jobs)
    assert unknown.error == 'invalid_arguments' and unknown.data['known'] == ['dock', 'navigate']
    jobs = {'g1': 'grasp', 'g2': 'dock'}.get
    assert permissions.refusal(alice, 'skill_cancel', {'goal_id': 'g1'}, jobs).error == \
        'forbidden'
    assert permissions.refusal(alice, 'skill_status', {'goal_id': 'g1'}, jobs).error == \
        'forbidden'
    assert permissions.refusal(alice, 'skill_cancel', {'goal_id': 'g2'}, jobs) is None
    assert permissions.refusal(alice, 'skill_cancel', {'goal_id': 'nope'}, jobs) is None
    stop = permissions.refusal(alice, 'lane_stop', {'lane': 'arm'}, no_jobs)
    assert stop.error == 'forbidden' and "may not act on lane 'arm'" in stop.message
    assert permissions.refusal(alice, 'lane_release', {'lane': 'base', 'force': True},
                               no_jobs) is None
    assert permissions.refusal(alice, 'lanes_status', {}, no_jobs) is None
    # An operator client may stop any lane.
    assert permissions.refusal(permissions.grant('carol'), 'lane_stop', {'lane': 'arm'},
                               no_jobs) is None


def test_stdio_allowlist_refusal_names_gateway_skills():
    perms = Permissions.from_config(config('{skills: [grasp]}'), {}, with_clients=False)
    refusal = perms.refusal(perms.default, 'navigate', {}, no_jobs)
    assert refusal.error == 'forbidden' and refusal.data['client'] is None
    assert refusal.message == "this gateway does not offer skill 'navigate' (gateway.skills: " \
                              'grasp)'


@settings(max_examples=300, deadline=None)
@given(offered=st.sets(st.sampled_from(sorted(SKILLS))),
       mine=st.sets(st.sampled_from(sorted(SKILLS))), operator=st.booleans(),
       tool=st.sampled_from(sorted(SKILLS) + ['skill_start', 'lane_stop', 'skill_cancel']),
       target=st.sampled_from(sorted(SKILLS)))
def test_what_is_listed_is_what_may_be_called(offered, mine, operator, tool, target):
    if not offered:
        return
    gateway = (f'{{skills: {sorted(offered)}, clients: {{c: {{token_env: C, '
               f'skills: {sorted(mine & offered)}, operator: {str(operator).lower()}}}}}}}')
    perms = Permissions.from_config(config(gateway), {'C': 'c'})
    grant = perms.authenticate('c')
    allowed = mine & offered
    assert grant.skills == allowed
    shown = {t.name: t for t in perms.visible_tools(all_tools(), grant, operator,
                                                      OPERATOR_TOOL_NAMES)}
    assert set(shown) & set(SKILLS) == allowed
    lane_of_target = SKILLS[target]
    arguments = {'skill': target, 'lane': lane_of_target, 'goal_id': 'g'}
    refusal = perms.refusal(grant, tool, arguments, {'g': target}.get)
    if tool in SKILLS:
        assert (refusal is None) == (tool in allowed)
    elif tool in ('skill_start', 'skill_cancel'):
        assert (refusal is None) == (target in allowed)
        if allowed:
            assert set(shown['skill_start'].input_schema['properties']['skill']['enum']) \
                == allowed
    elif lane_of_target is not None:
        lanes = {SKILLS[s] for s in allowed} - {None}
        may = operator or lane_of_target in lanes
        assert (refusal is None) == may
        if may:
            assert lane_of_target in shown['lane_stop'].input_schema['properties']['lane'][
                'enum']


# ------------------------------------------------------------------------------ identity
def request_with(grant, headers=None):
    return SimpleNamespace(scope={SCOPE_KEY: grant}, headers=headers or {})


def test_an_operator_client_passes_the_one_operator_guard(permissions, monkeypatch):
    monkeypatch.setenv('OP_ENV_TEST', 'op-secret')
    carol, alice = permissions.grant('carol'), permissions.grant('alice')
    assert operator_refusal(request_with(carol), 'OP_ENV_TEST') is None
    assert 'missing or wrong' in operator_refusal(request_with(alice), 'OP_ENV_TEST')
    # The operator header still works for a client that is not an operator.
    assert operator_refusal(request_with(alice, {'x-skill-lanes-operator': 'op-secret'}),
                            'OP_ENV_TEST') is None
    assert grant_of(SimpleNamespace(scope={SCOPE_KEY: 'forged'})) is None
    assert grant_of(None) is None


def test_the_authenticated_name_is_who_asked(permissions):
    info = types.Implementation(name='claude-code', version='1.2')
    ctx = SimpleNamespace(session=SimpleNamespace(client_params=SimpleNamespace(
        client_info=info)), request=request_with(permissions.grant('bob'),
                                                 {'mcp-session-id': '3f2c9a'}))
    agent = agent_of(ctx, 'grasp')
    assert agent == {'client': 'bob', 'authenticated': True, 'software': 'claude-code',
                     'software_version': '1.2', 'session': '3f2c9a', 'tool': 'grasp'}
    assert describe(agent) == 'agent bob (claude-code 1.2, session 3f2c…)'
    # Without named clients, as before.
    ctx.request = request_with(None, {'mcp-session-id': '3f2c9a'})
    assert agent_of(ctx, 'grasp') == {'client': 'claude-code', 'version': '1.2',
                                      'session': '3f2c9a', 'tool': 'grasp'}
    assert describe(agent_of(ctx, 'grasp')) == 'agent claude-code 1.2 (session 3f2c…)'


def test_the_lane_view_tells_clients_apart_by_token_or_cookie():
    tokens = {'alice': 'a-secret', 'bob': 'b-secret'}
    assert auth.client_of(tokens, {'authorization': 'Bearer a-secret'}) == 'alice'
    assert auth.client_of(tokens, {
        'cookie': f'{auth.COOKIE_NAME}={auth.cookie_value("b-secret")}'}) == 'bob'
    assert auth.client_of(tokens, {'authorization': 'Bearer nope'}) is None
    assert auth.client_of(tokens, {'authorization': 'Bearer '}) is None
    assert auth.client_of({'dave': ''}, {'authorization': 'Bearer '}) is None
    assert auth.client_of(tokens, {'cookie': f'{auth.COOKIE_NAME}=a-secret'}) is None

"""Which agent may do what: bearer token -> named client -> the skills (and lanes) it may use.

Pure Python (no ROS, no Starlette), so the rules can be checked exhaustively.

- `gateway.skills` (globs, default all) is what this gateway process offers at all: over
  stdio the whole allowlist, over HTTP the bound of every client's list.
- `gateway.clients` (HTTP only): name -> {token_env, skills, operator}. With clients
  configured every HTTP request must carry one of their tokens (loopback included), and
  the client's name is its identity: in the "who asked" record of each goal (lane state,
  refusals) and in every `forbidden` answer. The MCP 2026-07-28 protocol has no sessions
  and `initialize` is self-declared, so identity comes from the token, per request.
- Without clients: one grant for every caller (the single `gateway.token_env` token, or
  stdio), the skills of `gateway.skills`: today's behaviour when that is `['*']`.

A grant's lanes are the lanes of its skills: it may stop (`lane_stop`) or release
(`lane_release`) those, never a lane it has no skill in. An operator grant may act on every
lane and use the operator tools (see `server.operator_refusal`, the one guard for those).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

import mcp_types as types

from skill_lanes.config import match_globs

# Where the HTTP layer leaves the authenticated grant for the handlers (an ASGI scope key:
# nothing a client sends can set it).
SCOPE_KEY = 'skill_lanes.grant'
SKILL_START = 'skill_start'
JOB_TOOLS = frozenset({'skill_status', 'skill_cancel'})
LANE_TOOLS = frozenset({'lane_stop', 'lane_release'})


@dataclass(frozen=True)
class Grant:
    """What one caller may use. `client` None: stdio or the single-token setup."""

    client: Optional[str]
    skills: frozenset[str]
    lanes: frozenset[str]
    operator: bool = False

    def who(self) -> str:
        return f'client {self.client!r}' if self.client else 'this gateway'


@dataclass(frozen=True)
class Refusal:
    """A tools/call the grant does not allow: the isError answer's error, message, data."""

    error: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientRule:
    """One `gateway.clients` entry, its globs resolved."""

    name: str
    token_env: str
    skills: frozenset[str]
    operator: bool


class Permissions:
    """The grants of one gateway process and how a bearer token selects one.

    skill_lanes: every configured skill -> its lanes; offered: the skills of gateway.skills;
    clients: the named clients; tokens: client name -> its token (absent or empty: that
    client can never authenticate).
    """

    def __init__(self, skill_lanes: Mapping[str, tuple[str, ...]], lanes: Iterable[str],
                 offered: frozenset[str], clients: Iterable[ClientRule] = (),
                 tokens: Optional[Mapping[str, str]] = None) -> None:
        self.skill_lanes = dict(skill_lanes)
        self.all_lanes = frozenset(lanes)
        self.offered = offered
        self.clients = {rule.name: rule for rule in clients}
        self._tokens = {name: token for name, token in (tokens or {}).items()
                        if token and name in self.clients}
        self.default = Grant(None, offered, self._lanes_of(offered))
        self._grants = {name: self._grant(rule) for name, rule in self.clients.items()}

    @classmethod
    def from_config(cls, config: Any, environ: Optional[Mapping[str, str]] = None,
                    with_clients: bool = True) -> 'Permissions':
        """From a validated Config; tokens read from `environ` (None: no tokens).

        with_clients false (stdio: no tokens to tell callers apart): gateway.skills only.
        """
        gateway = config.gateway
        offered, _ = match_globs(gateway.skills, config.skills)
        rules = []
        for name, entry in (gateway.clients if with_clients else {}).items():
            skills, _ = match_globs(entry.skills, offered)
            rules.append(ClientRule(name, entry.token_env, skills, entry.operator))
        tokens = {rule.name: (environ or {}).get(rule.token_env, '') for rule in rules}
        return cls({name: skill.all_lanes for name, skill in config.skills.items()},
                   config.lanes, offered, rules, tokens)

    # ---------------------------------------------------------------- who is it
    @property
    def named(self) -> bool:
        """Whether HTTP callers are told apart by named tokens (gateway.clients)."""
        return bool(self.clients)

    def grant(self, client: str) -> Grant:
        return self._grants[client]

    def clients_without_token(self) -> list[str]:
        """Clients whose token variable is unset or empty: they can never authenticate."""
        return sorted(set(self.clients) - set(self._tokens))

    def shared_tokens(self) -> list[tuple[str, str]]:
        """Pairs of clients holding the same token (one token must name one client)."""
        names = sorted(self._tokens)
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                if hmac.compare_digest(self._tokens[a].encode(), self._tokens[b].encode())]

    def client_tokens(self) -> dict[str, str]:
        """Client name -> token, for the clients that have one (the lane view's check)."""
        return dict(self._tokens)

    def authenticate(self, supplied: str) -> Optional[Grant]:
        """The grant of the client whose token this is (None: nobody's).

        Every client's token is compared (in constant time each), so the time taken does
        not tell which one nearly matched. An empty token never matches.
        """
        found = None
        given = supplied.encode('utf-8', 'surrogateescape')
        for name, token in self._tokens.items():
            if hmac.compare_digest(given, token.encode('utf-8', 'surrogateescape')):
                found = self._grants[name]
        return found if supplied else None

    def _grant(self, rule: ClientRule) -> Grant:
        skills = rule.skills & self.offered
        lanes = self.all_lanes if rule.operator else self._lanes_of(skills)
        return Grant(rule.name, skills, lanes, rule.operator)

    def _lanes_of(self, skills: Iterable[str]) -> frozenset[str]:
        return frozenset(lane for skill in skills for lane in self.skill_lanes.get(skill, ()))

    # ---------------------------------------------------------------- what it may do
    def visible_tools(self, tools: Iterable[types.Tool], grant: Grant,
                      operator_ok: bool, operator_tools: frozenset[str]) -> list[types.Tool]:
        """The tools/list a grant sees: its skills, job tools narrowed to its skills, lane
        tools narrowed to its lanes, operator tools if `operator_ok`, the rest (lanes_status,
        Unity tools) as they are. A tool it may not use is not listed at all.
        """
        shown: list[types.Tool] = []
        for tool in tools:
            name = tool.name
            if name in self.skill_lanes:
                if name in grant.skills:
                    shown.append(tool)
            elif name == SKILL_START:
                if grant.skills:
                    shown.append(_narrowed(tool, 'skill', grant.skills))
            elif name in JOB_TOOLS:
                if grant.skills:
                    shown.append(tool)
            elif name in LANE_TOOLS:
                if grant.lanes:
                    shown.append(_narrowed(tool, 'lane', grant.lanes))
            elif name in operator_tools:
                if operator_ok:
                    shown.append(tool)
            else:
                shown.append(tool)
        return shown

    def refusal(self, grant: Grant, tool: str, arguments: Mapping[str, Any],
                job_skill: Callable[[str], Optional[str]]) -> Optional[Refusal]:
        """Why `grant` may not make this call (None: it may; the tool checks the rest).

        job_skill: goal id -> the skill of that skill_start job (None: no such job).
        The generic tools are no way around the lists: skill_start of a skill, and
        skill_status / skill_cancel of a job of a skill, the grant may not use are refused
        as the skill's own tool is; so are lane_stop / lane_release of a lane it has no
        skill in. The operator tools are server.operator_refusal's.
        """
        if tool in self.skill_lanes:
            return None if tool in grant.skills else self._forbidden(grant, tool, tool)
        if tool == SKILL_START:
            skill = arguments.get('skill')
            if not isinstance(skill, str) or skill in grant.skills:
                return None
            if skill in self.skill_lanes:
                return self._forbidden(grant, tool, skill)
            if grant.skills == frozenset(self.skill_lanes):
                return None  # the tool's own schema check answers, naming every skill
            return Refusal('invalid_arguments', f'unknown skill {skill[:100]!r}',
                           {'field': 'skill', 'known': sorted(grant.skills)})
        if tool in JOB_TOOLS:
            skill = job_skill(str(arguments.get('goal_id')))
            if skill is None or skill in grant.skills:
                return None
            return self._forbidden(grant, tool, skill)
        if tool in LANE_TOOLS:
            lane = arguments.get('lane')
            if lane in self.all_lanes and lane not in grant.lanes:
                return Refusal('forbidden', f'{grant.who()} may not act on lane {lane!r}: '
                               f'it has no skill there ({_listing(grant.lanes, "its lanes")})',
                               {'client': grant.client, 'lane': lane, 'tool': tool})
        return None

    def _forbidden(self, grant: Grant, tool: str, skill: str) -> Refusal:
        if grant.client is None:
            message = (f'this gateway does not offer skill {skill!r} (gateway.skills: '
                       f'{_names(grant.skills)})')
        else:
            message = (f'client {grant.client!r} may not use skill {skill!r} '
                       f'({_listing(grant.skills, "its skills")})')
        return Refusal('forbidden', message, {'client': grant.client, 'skill': skill,
                                              'tool': tool})


def grant_of(request: Any) -> Optional[Grant]:
    """The grant the HTTP layer authenticated for this request (None: stdio, no clients)."""
    scope = getattr(request, 'scope', None)
    grant = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    return grant if isinstance(grant, Grant) else None


def _names(names: Iterable[str]) -> str:
    return ', '.join(sorted(names)) or 'none'


def _listing(names: Iterable[str], what: str) -> str:
    return f'{what}: {_names(names)}'


def _narrowed(tool: types.Tool, argument: str, allowed: frozenset[str]) -> types.Tool:
    """`tool` with the enum of its `argument` cut down to `allowed` (the same object when
    nothing is cut, so an unrestricted tools/list is exactly today's).
    """
    schema = tool.input_schema
    prop = (schema.get('properties') or {}).get(argument) or {}
    enum = prop.get('enum')
    if enum is None or set(enum) <= allowed:
        return tool
    properties = {**schema['properties'], argument: {**prop, 'enum': [
        value for value in enum if value in allowed]}}
    return tool.model_copy(update={'input_schema': {**schema, 'properties': properties}})

"""The MCP layer of the gateway: a thin translation onto the tool providers.

Built on the SDK's low-level `Server` because the tools come from a config file with explicit
JSON Schemas. The low-level server does not validate arguments (the providers do) and turns
an uncaught handler exception into a JSON-RPC error: the handler below turns every failure
into an `isError` result instead, so a client never sees a traceback. resources/read
answers MCP error codes (resource not found: -32002) via MCPError, never a traceback.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any, Callable, Optional, Protocol

import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from skill_lanes import lane_state as lane_state_schema

from mcp_gateway.agents import CURRENT_AGENT, agent_of
from mcp_gateway.permissions import Grant, Permissions, grant_of
from mcp_gateway.results import error_result
from mcp_gateway.skill_tools import ReportProgress
from mcp_gateway.tool_defs import META_PREFIX
from mcp_gateway.tool_names import OPERATOR_TOOL_NAMES

LANE_STATE_URI = 'skill-lanes://lane-state'
# The lane state's JSON Schema (skill_lanes/lane_state.py, the lanes_status outputSchema's
# body): a client validates the lane-state resource against it, or reads what each key means.
LANE_STATE_SCHEMA_URI = 'skill-lanes://lane-state/schema'
SCHEMA_MIME_TYPE = 'application/schema+json'
JSON_SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema'
RESOURCE_URIS = [LANE_STATE_URI, LANE_STATE_SCHEMA_URI]
# JSON-RPC error codes of resources/read: the MCP spec's (2025-11-25) resource-not-found,
# and one of our own (implementation-defined band) for "not yet, retry".
RESOURCE_NOT_FOUND = -32002
LANE_STATE_NOT_YET = -32010
log = logging.getLogger('mcp_gateway')


class ToolProvider(Protocol):
    def tools(self) -> list[types.Tool]: ...

    def handles(self, name: str) -> bool: ...

    async def call(self, name: str, arguments: dict,
                   report_progress: ReportProgress) -> types.CallToolResult: ...


def build_server(name: str, version: str, providers: list[ToolProvider],
                 lane_state: Any, operator_token_env: Optional[str] = None,
                 permissions: Optional[Permissions] = None,
                 job_skill: Optional[Callable[[str], Optional[str]]] = None) -> Server:
    """An MCP server exposing the providers' tools and the lane state resource.

    lane_state: a callable returning the latest lane state dict (or None).
    operator_token_env: over HTTP, the operator tools (lane_take, lane_give_back) need header
    X-Skill-Lanes-Operator equal to this env var's value (over stdio: the local user), or a
    named client with `operator: true`.
    permissions: which caller may use which tools (mcp_gateway/permissions.py; None: all);
    job_skill: goal id -> skill of a skill_start job, so job handles obey the same lists.
    """
    def all_tools() -> list[types.Tool]:
        return [t for p in providers for t in p.tools()]

    def grant_for(ctx: ServerRequestContext) -> Optional[Grant]:
        """The caller's grant: the authenticated client's over HTTP, else the gateway's."""
        if permissions is None:
            return None
        request = getattr(ctx, 'request', None)
        grant = grant_of(request)
        if grant is not None:
            return grant
        if request is not None and permissions.named:
            return Grant(None, frozenset(), frozenset())  # not authenticated: nothing
        return permissions.default

    def visible(ctx: ServerRequestContext, grant: Optional[Grant]) -> list[types.Tool]:
        if permissions is None or grant is None:
            return all_tools()
        # Operator tools are listed as before for the single-token setup (a call without
        # the header is refused); a named client sees them only when it may use them.
        operator_ok = grant.client is None or operator_refusal(
            getattr(ctx, 'request', None), operator_token_env) is None
        return permissions.visible_tools(all_tools(), grant, operator_ok, OPERATOR_TOOL_NAMES)

    async def list_tools(ctx: ServerRequestContext, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=visible(ctx, grant_for(ctx)))

    async def call_tool(ctx: ServerRequestContext,
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        grant = grant_for(ctx)
        provider = next((p for p in providers if p.handles(params.name)), None)
        if provider is None:
            known = sorted(t.name for t in visible(ctx, grant))
            return error_result('unknown_tool', f'unknown tool {params.name!r}', known=known)

        if permissions is not None and grant is not None:
            refusal = permissions.refusal(grant, params.name, dict(params.arguments or {}),
                                          job_skill or (lambda goal_id: None))
            if refusal is not None:
                log.warning('%s: %s called %s: %s', refusal.error, grant.who(), params.name,
                            refusal.message)
                return error_result(refusal.error, refusal.message, **refusal.data)

        if params.name in OPERATOR_TOOL_NAMES:
            refusal = operator_refusal(getattr(ctx, 'request', None), operator_token_env)
            if refusal is not None:
                return error_result('unauthorized', refusal, tool=params.name)

        async def report(progress: float, total: Optional[float],
                         message: Optional[str]) -> None:
            await ctx.session.report_progress(progress, total, message)

        token = CURRENT_AGENT.set(agent_of(ctx, params.name))
        try:
            return await provider.call(params.name, dict(params.arguments or {}), report)
        except Exception as exc:  # a bug must not reach the client as a traceback
            log.exception('tool %s failed', params.name)
            return error_result('internal_error', f'{type(exc).__name__}: {exc}')
        finally:
            CURRENT_AGENT.reset(token)

    schema_text = json.dumps({'$schema': JSON_SCHEMA_DIALECT, **lane_state_schema.json_schema()})

    async def list_resources(ctx: ServerRequestContext,
                             params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=resources(len(schema_text.encode())))

    async def read_resource(ctx: ServerRequestContext,
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == LANE_STATE_SCHEMA_URI:
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=LANE_STATE_SCHEMA_URI, mime_type=SCHEMA_MIME_TYPE, text=schema_text)])
        if uri != LANE_STATE_URI:
            raise MCPError(RESOURCE_NOT_FOUND, f'Resource not found: {uri[:200]}',
                           data={'uri': uri[:200], 'known': RESOURCE_URIS})
        state = lane_state()
        if state is None:
            raise MCPError(LANE_STATE_NOT_YET, 'No lane state received from the lane manager '
                           'yet: retry in a second (is the lane manager running?)',
                           data={'uri': uri, 'hint': 'retry', 'retry_after_ms': 1000})
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=LANE_STATE_URI, mime_type='application/json', text=json.dumps(state))])

    return Server(name, version=version,
                  instructions=('Robot skills as tools. Skills in the same lane never run at '
                                'once: a busy lane answers error "operation_busy" with '
                                'data.retry_after_ms; retry after that or pick another lane.'),
                  on_list_tools=list_tools, on_call_tool=call_tool,
                  on_list_resources=list_resources, on_read_resource=read_resource)


def resources(schema_size: int) -> list[types.Resource]:
    """The lane state, and its JSON Schema, which the lane state's entry points to (its
    description, and `_meta` under the project's `skill-lanes/` prefix as tools have).
    """
    return [
        types.Resource(
            uri=LANE_STATE_URI, name='lane-state', mime_type='application/json',
            description=('Live lane state from the lane manager (holders, queues, refusals). '
                         f'Its JSON Schema, every key with what it means: {LANE_STATE_SCHEMA_URI}'
                         ' (also the outputSchema of lanes_status).'),
            _meta={META_PREFIX + 'schema': LANE_STATE_SCHEMA_URI}),
        types.Resource(
            uri=LANE_STATE_SCHEMA_URI, name='lane-state-schema', mime_type=SCHEMA_MIME_TYPE,
            size=schema_size,
            description=(f'JSON Schema (draft 2020-12) of {LANE_STATE_URI}: every key the lane '
                         'manager publishes, with what it means. Readers must tolerate keys it '
                         'does not declare (a newer lane manager may add some).'),
            _meta={META_PREFIX + 'schema_of': LANE_STATE_URI}),
    ]


OPERATOR_HEADER = 'x-skill-lanes-operator'


def operator_refusal(request: Any, token_env: Optional[str]) -> Optional[str]:
    """Why an operator tool call is refused (None: allowed). stdio has no HTTP request.

    Over HTTP: a named client with `operator: true` (gateway.clients), or the operator
    token in header X-Skill-Lanes-Operator. The one guard of every operator action (MCP
    tools and lane view buttons).
    """
    if request is None:
        return None
    grant = grant_of(request)
    if grant is not None and grant.operator:
        return None
    token = os.environ.get(token_env or '', '')
    if not token:
        return (f'operator tools over HTTP need an operator token: set {token_env} for the '
                'gateway and send it in header X-Skill-Lanes-Operator')
    supplied = request.headers.get(OPERATOR_HEADER, '')
    if not hmac.compare_digest(supplied.encode(), token.encode()):
        return 'operator token missing or wrong (header X-Skill-Lanes-Operator)'
    return None


def initialization_options(server: Server):
    return server.create_initialization_options(NotificationOptions(tools_changed=False))

"""MCP tool results as every gateway tool shapes them, and the outputSchema they conform to.

Success and failure both carry the same JSON body as `structuredContent` and as text (for
clients that show only text). Failures are `isError` results with `success: false`, an
`error` token, a human `message`, an optional `hint` ("retry") and a `data` object: the
shape unity-mcp's busy answer uses, so agents learn one contract for every tool.

Clients built on the official TypeScript SDK (Claude Desktop, Claude Code, Cursor, the MCP
Inspector) validate `structuredContent` against the tool's `outputSchema` on EVERY result,
`isError` ones included, and throw the result away when it does not match. So a tool's
outputSchema must cover its error bodies too: `output_schema()` builds it from the tool's
success shape plus the common error envelope (`ERROR_ENVELOPE`), and every tool that
declares an outputSchema builds it there. Schemas stay draft-07 compatible (what the TS
SDK's Ajv speaks by default): `$defs` + `$ref: '#/$defs/..'`, no `$schema` key.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import mcp_types as types

# Every failure body: {success: false, error, message, hint?, data?} (plus, for a goal that
# ran and failed, the goal's own keys: status, goal_id, skill, lane, result).
ERROR_ENVELOPE: dict[str, Any] = {
    'success': {'type': 'boolean', 'description': 'false on every error'},
    'error': {'type': 'string', 'description': 'error token, e.g. operation_busy, '
                                               'invalid_arguments, goal_aborted'},
    'message': {'type': 'string', 'description': 'what went wrong, for a human or a model'},
    'hint': {'type': 'string', 'description': '"retry": the same call may succeed later'},
    'data': {'type': 'object', 'description': 'details, e.g. retry_after_ms, field, lane'},
}
_ERROR_BRANCH: dict[str, Any] = {
    'required': ['success', 'error', 'message'],
    'properties': {'success': {'const': False}},
}


def output_schema(properties: dict[str, Any], required: list[str],
                  defs: Optional[dict[str, Any]] = None,
                  description: Optional[str] = None) -> dict[str, Any]:
    """An outputSchema accepting the success body AND every error body of a tool.

    properties/required describe the success body; `defs` are `$defs` its properties refer to
    (`{'$ref': '#/$defs/Name'}`). A body is valid when it has the success keys, or when it is
    an error envelope. Property schemas apply to both, so a failed goal's `result` must
    still match (declare it nullable where a failure may carry none).
    """
    clash = set(properties) & set(ERROR_ENVELOPE)
    if clash:
        raise ValueError(f'success keys clash with the error envelope: {sorted(clash)}')
    schema: dict[str, Any] = {
        'type': 'object',
        'properties': {**properties, **ERROR_ENVELOPE},
        'anyOf': [{'required': list(required)}, _ERROR_BRANCH],
    }
    if description:
        schema['description'] = description
    if defs:
        schema['$defs'] = defs
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null (draft-07 spelling that Ajv and jsonschema both read)."""
    return {'anyOf': [schema, {'type': 'null'}]}


def tool_result(body: dict, is_error: bool = False) -> types.CallToolResult:
    """A result with the same body as structured content and as JSON text."""
    return types.CallToolResult(
        content=[types.TextContent(type='text', text=json.dumps(body, default=str))],
        structured_content=body, is_error=is_error)


def error_result(error: str, message: str, hint: Optional[str] = None,
                 **data: Any) -> types.CallToolResult:
    """An isError result: `{success: false, error, message, hint?, data?}`."""
    return tool_result(error_body(error, message, hint, **data), is_error=True)


def error_body(error: str, message: str, hint: Optional[str] = None, **data: Any) -> dict:
    """The error envelope as a dict (for a job's stored result, or to extend)."""
    body: dict[str, Any] = {'success': False, 'error': error, 'message': message}
    if hint:
        body['hint'] = hint
    if data:
        body['data'] = data
    return body

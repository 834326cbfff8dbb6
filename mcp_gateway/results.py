"""MCP tool results as every gateway tool shapes them.

Success and failure both carry the same JSON body as `structuredContent` and as text (for
clients that show only text). Failures are `isError` results with `success: false`, an
`error` token, a human `message`, an optional `hint` ("retry") and a `data` object: the
shape unity-mcp's busy answer uses, so agents learn one contract for every tool.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import mcp_types as types


def tool_result(body: dict, is_error: bool = False) -> types.CallToolResult:
    """A result with the same body as structured content and as JSON text."""
    return types.CallToolResult(
        content=[types.TextContent(type='text', text=json.dumps(body, default=str))],
        structured_content=body, is_error=is_error)


def error_result(error: str, message: str, hint: Optional[str] = None,
                 **data: Any) -> types.CallToolResult:
    """An isError result: `{success: false, error, message, hint?, data?}`."""
    body: dict[str, Any] = {'success': False, 'error': error, 'message': message}
    if hint:
        body['hint'] = hint
    if data:
        body['data'] = data
    return tool_result(body, is_error=True)

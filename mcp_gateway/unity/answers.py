"""Every answer a Unity tool gives, shaped in this one place, and the schemas they follow.

Failures are exceptions (`UnityError` and subclasses) until they reach the tool surface,
where `error_answer` turns any of them into the one error shape of every gateway tool
(`results.error_result`): `{success: false, error, message, hint?, data?}`. Successes go
through `success_answer`. `OUTPUT_SCHEMAS` describe both, so a client that checks
structuredContent against outputSchema (the TypeScript SDK does) accepts every answer.
"""
from __future__ import annotations

from typing import Any, Optional

import mcp_types as types

from mcp_gateway.results import error_result, tool_result


class UnityError(Exception):
    """Base of every Unity failure: a token (`code`), a message and structured data."""

    code = 'unity_error'
    retryable = False

    def __init__(self, message: str, *, retry_after_ms: Optional[int] = None,
                 data: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.data = data or {}


class UnityUnavailable(UnityError):
    """No Editor answers (not running, port closed, handshake failed, server down)."""

    code = 'unity_unavailable'
    retryable = True


class UnityConnectionLost(UnityUnavailable):
    """The connection dropped after a command was sent: its outcome is unknown."""

    code = 'unity_connection_lost'


class UnityReloading(UnityError):
    """The Editor is reloading (or compiling) for longer than the caller's wait budget."""

    code = 'unity_reloading'
    retryable = True


class UnityNotReady(UnityReloading):
    """The Editor stayed busy (compiling, reloading, running tests) past the wait budget."""

    code = 'unity_not_ready'


class UnityProtocolError(UnityError):
    """The peer does not speak the protocol (bad handshake, bad frame, odd answer)."""

    code = 'unity_protocol_error'


class UnityLeaseLost(UnityError):
    """This gateway lost the Editor's lease before a command: the command was not sent."""

    code = 'lease_lost'
    retryable = True


class UnityCommandError(UnityError):
    """The Editor answered with an error. `data` holds the Editor's own error fields."""

    code = 'unity_command_failed'

    def __init__(self, command: str, response: dict[str, Any]) -> None:
        token = response.get('code') or response.get('error') or 'error'
        detail = response.get('message') or response.get('error') or 'no details'
        data = response.get('data') if isinstance(response.get('data'), dict) else {}
        retry = data.get('retry_after_ms')
        super().__init__(f'{command} failed in the Editor: {detail}',
                         retry_after_ms=retry if isinstance(retry, int) else None,
                         data={'editor_error': str(token)[:200], **data})
        self.editor_error = str(token)
        self.retryable = self.retry_after_ms is not None or response.get('hint') == 'retry'

    @property
    def is_reloading_rejection(self) -> bool:
        """The Editor refused because it is reloading: the command never ran."""
        return self.data.get('reason') == 'reloading'


def error_answer(exc: UnityError) -> types.CallToolResult:
    """The isError result for any Unity failure."""
    data = dict(exc.data)
    if exc.retry_after_ms is not None:
        data['retry_after_ms'] = exc.retry_after_ms
    return error_result(exc.code, exc.message, 'retry' if exc.retryable else None, **data)


def failure(error: str, message: str, hint: Optional[str] = None,
            **data: Any) -> types.CallToolResult:
    """An isError result built from parts (bad arguments, unknown instance...)."""
    return error_result(error, message, hint, **data)


def busy_result(answer: dict[str, Any]) -> types.CallToolResult:
    """The lease's `operation_busy` answer (already in the error shape) as a result."""
    return failure(answer['error'], answer['message'], answer.get('hint'),
                   **(answer.get('data') or {}))


def success_answer(body: dict[str, Any], is_error: bool = False) -> types.CallToolResult:
    """A tool's answer body. `is_error` for a run that completed but failed tests."""
    return tool_result(body, is_error=is_error)


# --------------------------------------------------------------------------- schemas

_ERROR = {
    'type': 'object',
    'required': ['success', 'error', 'message'],
    'properties': {
        'success': {'const': False},
        'error': {'type': 'string'},
        'message': {'type': 'string'},
        'hint': {'type': 'string'},
        'data': {'type': 'object'},
    },
    'additionalProperties': False,
}
_NUMBER_OR_NULL = {'type': ['number', 'null']}
_INT_OR_NULL = {'type': ['integer', 'null']}
_STRING_OR_NULL = {'type': ['string', 'null']}
_OPERATION = {
    'instance_id': {'type': 'string'},
    'transport': {'enum': ['stdio', 'http']},
    'lease_token': {'type': 'integer'},
    'duration_s': {'type': 'number'},
}
_REFRESH = {
    'type': 'object',
    'required': ['success', 'instance_id', 'operation', 'reload_observed', 'ready'],
    'properties': {
        'success': {'const': True},
        'operation': {'const': 'refresh_unity'},
        **_OPERATION,
        'compile_requested': {'type': 'boolean'},
        'reload_observed': {'type': 'boolean'},
        'reload_evidence': _STRING_OR_NULL,
        'editor': {'type': ['object', 'null']},
        'ready': {'type': 'boolean'},
        'is_compiling': {'type': 'boolean'},
    },
    'additionalProperties': False,
}
_FAILURE_ITEM = {
    'type': 'object',
    'properties': {'full_name': _STRING_OR_NULL, 'state': _STRING_OR_NULL,
                   'message': _STRING_OR_NULL, 'stack_trace': _STRING_OR_NULL},
    'additionalProperties': False,
}
_SUMMARY = {
    'type': 'object',
    'properties': {'total': _INT_OR_NULL, 'passed': _INT_OR_NULL, 'failed': _INT_OR_NULL,
                   'skipped': _INT_OR_NULL, 'duration_s': _NUMBER_OR_NULL,
                   'result_state': _STRING_OR_NULL, 'source': {'enum': ['editor', 'rebuilt']}},
    'additionalProperties': False,
}
_RUN = {
    'type': 'object',
    'required': ['success', 'instance_id', 'operation', 'job_id', 'status', 'summary',
                 'failures'],
    'properties': {
        'success': {'type': 'boolean'},
        'operation': {'const': 'run_tests'},
        **_OPERATION,
        'error': {'type': 'string'},
        'message': {'type': 'string'},
        'hint': {'type': 'string'},
        'job_id': _STRING_OR_NULL,
        'status': {'type': 'string'},
        'mode': _STRING_OR_NULL,
        'summary': _SUMMARY,
        'failures': {'type': 'array', 'items': _FAILURE_ITEM},
        'failures_capped': {'type': 'boolean'},
        'editor_error': _STRING_OR_NULL,
    },
    'additionalProperties': False,
}
_INSTANCE = {
    'type': 'object',
    'required': ['instance_id', 'transport', 'state'],
    'properties': {
        'instance_id': {'type': 'string'},
        'transport': {'enum': ['stdio', 'http']},
        'project_name': _STRING_OR_NULL,
        'project_path': _STRING_OR_NULL,
        'unity_version': _STRING_OR_NULL,
        'host': _STRING_OR_NULL,
        'port': _INT_OR_NULL,
        'server_url': _STRING_OR_NULL,
        'state': {'type': 'string'},
        'status_age_s': _NUMBER_OR_NULL,
        'lease': {'type': ['object', 'null']},
    },
    'additionalProperties': False,
}
_INSTANCES = {
    'type': 'object',
    'required': ['success', 'instances'],
    'properties': {
        'success': {'const': True},
        'instances': {'type': 'array', 'items': _INSTANCE},
        'status_dir': {'type': 'string'},
        'server_url': {'type': ['string', 'null']},
        'server_error': {'type': ['string', 'null']},
        'lease_dir': {'type': 'string'},
    },
    'additionalProperties': False,
}


def _either(success: dict[str, Any]) -> dict[str, Any]:
    return {'type': 'object', 'anyOf': [success, _ERROR]}


OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    'unity_refresh': _either(_REFRESH),
    'unity_run_tests': _either(_RUN),
    'unity_instances': _either(_INSTANCES),
}

"""MCP tools for Unity Editors: refresh, run tests, list instances, one operation at a time.

The MCP surface over `operations` (what an operation is), the transports (`bridge` for the
Editor's stdio TCP bridge, `http` for the official server in the Editor's default HTTP
mode), `discovery` and the host-wide `lease`. Every operation that changes the Editor holds
the instance's lease for its whole duration, checked again right before every command. A
caller that finds the lease taken gets the structured `operation_busy` answer at once,
never a wait of unknown length; it can retry after `retry_after_ms`.

The gateway's MCP server routes `tools/call` for these names to `UnityTools.call` and
validates nothing itself: arguments are checked here against the same JSON Schemas that
`tools()` publishes. Failures are `isError` results with a structured body, never
tracebacks.
"""
from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Awaitable, Callable, Optional

import anyio
import jsonschema
import mcp_types as types

from mcp_gateway.unity import operations
from mcp_gateway.unity.answers import (
    OUTPUT_SCHEMAS,
    UnityError,
    UnityLeaseLost,
    busy_result,
    error_answer,
    failure,
    success_answer,
)
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.discovery import UnityInstance, resolve_status_dir
from mcp_gateway.unity.instances import Finder
from mcp_gateway.unity.lease import Lease, LeaseBusy, LeaseError, LeaseManager

logger = logging.getLogger(__name__)

ProgressReporter = Callable[[float, Optional[float], Optional[str]], Awaitable[None]]

REFRESH = 'unity_refresh'
RUN_TESTS = 'unity_run_tests'
INSTANCES = 'unity_instances'

_INSTANCE_PROPERTY = {
    'type': 'string',
    'minLength': 1,
    'description': ('Editor to use: instance id (<Project>@<hash>), project name or hash. '
                    'Required when several Editors run; see unity_instances.'),
}
_NAME_LIST = {'type': 'array', 'items': {'type': 'string', 'minLength': 1}}

INPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    REFRESH: {
        'type': 'object',
        'properties': {
            'mode': {'type': 'string', 'enum': ['if_dirty', 'force'], 'default': 'if_dirty',
                     'description': 'if_dirty: only when assets changed; force: always'},
            'scope': {'type': 'string', 'enum': ['assets', 'scripts', 'all'],
                      'default': 'all'},
            'compile': {'type': 'string', 'enum': ['none', 'request'], 'default': 'none',
                        'description': 'request: compile scripts (reloads the domain)'},
            'instance': _INSTANCE_PROPERTY,
        },
        'additionalProperties': False,
    },
    RUN_TESTS: {
        'type': 'object',
        'properties': {
            'mode': {'type': 'string', 'enum': ['EditMode', 'PlayMode'],
                     'default': 'EditMode'},
            'filters': {
                'type': 'object',
                'description': 'Run only matching tests (all of them when omitted).',
                'properties': {
                    'test_names': _NAME_LIST,
                    'group_names': _NAME_LIST,
                    'category_names': _NAME_LIST,
                    'assembly_names': _NAME_LIST,
                },
                'additionalProperties': False,
            },
            'instance': _INSTANCE_PROPERTY,
        },
        'additionalProperties': False,
    },
    INSTANCES: {'type': 'object', 'properties': {}, 'additionalProperties': False},
}

_VALIDATORS = {name: jsonschema.Draft202012Validator(schema)
               for name, schema in INPUT_SCHEMAS.items()}


def _argument_error(name: str, arguments: Any) -> Optional[types.CallToolResult]:
    """An isError result naming the first bad field, or None when the arguments are valid."""
    error = jsonschema.exceptions.best_match(_VALIDATORS[name].iter_errors(arguments))
    if error is None:
        return None
    path = [str(part) for part in error.absolute_path]
    if error.validator == 'additionalProperties':
        allowed = error.schema.get('properties', {})
        extra = sorted(set(error.instance) - set(allowed))
        path.append(extra[0] if extra else '?')
    field = '.'.join(path) or '<arguments>'
    return failure('invalid_arguments', f'{name}: {field}: {error.message}', field=field)


class _Progress:
    """Progress notifications that always increase (the MCP rule) and never fail a call."""

    def __init__(self, report: ProgressReporter) -> None:
        self._report = report
        self._last = -math.inf

    async def __call__(self, progress: float, total: Optional[float], message: str) -> None:
        progress = max(float(progress), self._last + 0.001)
        self._last = progress
        try:
            await self._report(progress, total, message)
        except Exception:  # noqa: BLE001 - a lost progress message must not abort the operation
            pass


def _annotations(title: str, read_only: bool) -> types.ToolAnnotations:
    return types.ToolAnnotations(title=title, read_only_hint=read_only, destructive_hint=False,
                                 idempotent_hint=True, open_world_hint=False)


class UnityTools:
    """The Unity tools of one gateway process. `owner` names this gateway in busy answers."""

    def __init__(self, config: UnityConfig, owner: str,
                 lease_manager: Optional[LeaseManager] = None) -> None:
        self.config = config
        self.owner = owner
        self._leases = lease_manager
        self.status_dir = resolve_status_dir(config.status_dir)
        self.finder = Finder(config)
        self._call_numbers = itertools.count(1)

    # ----------------------------------------------------------------- MCP surface

    def tools(self) -> list[types.Tool]:
        busy = ('One Editor operation runs at a time across all agents: if another one is '
                'running you get error "operation_busy" with data.retry_after_ms.')
        return [
            types.Tool(
                name=REFRESH, title='Refresh the Unity Editor',
                description=('Refresh Unity assets and optionally compile scripts; returns '
                             'once the Editor is ready again (after its domain reload). '
                             + busy),
                input_schema=INPUT_SCHEMAS[REFRESH], output_schema=OUTPUT_SCHEMAS[REFRESH],
                annotations=_annotations('Refresh the Unity Editor', False)),
            types.Tool(
                name=RUN_TESTS, title='Run Unity tests',
                description=('Run Unity Test Runner tests and wait for the final result, '
                             'reporting progress. Returns the summary and the failures with '
                             'their messages. ' + busy),
                input_schema=INPUT_SCHEMAS[RUN_TESTS], output_schema=OUTPUT_SCHEMAS[RUN_TESTS],
                annotations=_annotations('Run Unity tests', False)),
            types.Tool(
                name=INSTANCES, title='List Unity Editors',
                description=('Unity Editors found on this host (stdio bridge or the MCP for '
                             'Unity server), their state, and who holds each one.'),
                input_schema=INPUT_SCHEMAS[INSTANCES], output_schema=OUTPUT_SCHEMAS[INSTANCES],
                annotations=_annotations('List Unity Editors', True)),
        ]

    @property
    def leases(self) -> LeaseManager:
        """The lease manager, made on first use: a bad lease folder (a symlink, another
        user's) then fails Unity calls with a clear answer instead of the whole gateway.
        """
        if self._leases is None:
            self._leases = LeaseManager(self.config.lease_dir, ttl_s=self.config.lease_ttl_s)
        return self._leases

    def handles(self, name: str) -> bool:
        return name in INPUT_SCHEMAS

    async def call(self, name: str, arguments: Optional[dict[str, Any]],
                   report_progress: ProgressReporter) -> types.CallToolResult:
        """Run one tool call. Every failure is an isError result; only cancellation raises."""
        arguments = {} if arguments is None else arguments
        invalid = _argument_error(name, arguments) if self.handles(name) else failure(
            'unknown_tool', f'{name!r} is not a Unity tool')
        if invalid is not None:
            return invalid
        progress = _Progress(report_progress)
        try:
            if name == INSTANCES:
                return await self._list_instances()
            instance = await self._resolve_instance(arguments.get('instance'))
            if isinstance(instance, types.CallToolResult):
                return instance
            transport = await self.finder.transport_for(instance)
            if name == REFRESH:
                return await self._with_lease(
                    instance, 'refresh_unity', lambda lease: operations.refresh(
                        transport, self.config, arguments, self._fence(lease), progress))
            return await self._with_lease(
                instance, 'run_tests', lambda lease: operations.run_tests(
                    transport, self.config, arguments, self._fence(lease), progress,
                    lease.expect_end_in))
        except UnityError as exc:
            return error_answer(exc)
        except LeaseError as exc:
            return failure('lease_unavailable', str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must still answer, not drop the call
            logger.exception('%s failed unexpectedly', name)
            return failure('internal_error', f'{name} failed: {type(exc).__name__}: {exc}')

    async def aclose(self) -> None:
        await self.finder.aclose()

    # ----------------------------------------------------------------- plumbing

    @staticmethod
    def _fence(lease: Lease) -> Callable[[], None]:
        """The check run right before each Editor command: a lost lease sends nothing."""
        def check() -> None:
            if not lease.check():
                raise UnityLeaseLost(
                    f'lease on {lease.instance_id} (token {lease.token}) was lost before a '
                    'command; nothing was sent. Retry.', retry_after_ms=1000)
        return check

    async def _with_lease(self, instance: UnityInstance, operation: str,
                          body: Callable[[Lease], Awaitable[dict[str, Any]]],
                          ) -> types.CallToolResult:
        """Run `body` holding the instance's lease; release it however `body` ends.

        The lease is taken in a worker thread (its guard may wait on another process) that
        cancellation cannot abandon, and released synchronously, so a cancelled call can
        neither leak the lease nor be interrupted while giving it back.
        """
        owner = f'{self.owner}#{next(self._call_numbers)}'
        taken: list[Lease] = []

        def take() -> None:
            taken.append(self.leases.acquire(instance.instance_id, owner, operation,
                                             ttl_s=self.config.lease_ttl_s))

        started = anyio.current_time()
        try:
            await anyio.to_thread.run_sync(take)
            answer = await body(taken[0])
        except LeaseBusy as busy:
            return busy_result(busy.answer)
        finally:
            for lease in taken:
                lease.release()
        answer.update(instance_id=instance.instance_id, transport=instance.transport,
                      lease_token=taken[0].token,
                      duration_s=round(anyio.current_time() - started, 3))
        return success_answer(answer, is_error=answer.get('success') is not True)

    async def _list_instances(self) -> types.CallToolResult:
        listed = [{**instance.summary(), 'lease': self.leases.who_holds(instance.instance_id)}
                  for instance in await self.finder.instances()]
        return success_answer({
            'success': True, 'instances': listed, 'status_dir': str(self.status_dir),
            'server_url': (self.config.server_url
                           if self.config.transport in ('auto', 'http') else None),
            'server_error': self.finder.server_error,
            'lease_dir': str(self.leases.directory)})

    async def _resolve_instance(self, requested: Optional[str],
                                ) -> UnityInstance | types.CallToolResult:
        """The one Editor this call is about, or an error listing the candidates."""
        instances = await self.finder.instances()
        listed = [instance.summary() for instance in instances]
        wanted = requested or (None if self.config.port is not None else self.config.instance)
        if wanted:
            matches = [instance for instance in instances
                       if wanted in (instance.instance_id, instance.project_name,
                                     instance.project_hash)]
            if len(matches) == 1:
                return matches[0]
            problem = 'matches several Editors' if matches else 'matches no running Editor'
            return failure('unknown_instance', f'instance {wanted!r} {problem}',
                           instances=listed)
        if len(instances) == 1:
            return instances[0]
        if not instances:
            return failure('unity_unavailable', self.finder.nothing_found_message(),
                           'retry', retry_after_ms=5000)
        return failure('several_instances',
                       f'{len(instances)} Unity Editors are running: pass "instance" (one of '
                       f'{", ".join(item.instance_id for item in instances)})',
                       instances=listed)


__all__ = ['UnityBridge', 'UnityTools']

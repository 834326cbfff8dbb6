"""MCP tools for Unity Editors: refresh, run tests, list instances, one operation at a time.

A thin layer over `unity_bridge` (the wire) and `file_lease` (the host-wide lease). Every
operation that changes the Editor holds the instance's lease for its whole duration: a
refresh until the Editor is ready again, a test run until the job has finished. A caller
that finds the lease taken gets the structured `operation_busy` answer at once, never a
wait of unknown length; it can retry after `retry_after_ms`.

The gateway's MCP server routes `tools/call` for these names to `UnityTools.call` and
validates nothing itself: arguments are checked here against the same JSON Schemas that
`tools()` publishes. Failures are `isError` results with a structured body, never
tracebacks.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from typing import Any, Awaitable, Callable, Optional

import anyio
import jsonschema
import mcp_types as types

from lane_manager.config import UnityConfig
from mcp_gateway.file_lease import Lease, LeaseBusy, LeaseError, LeaseLost, LeaseManager
from mcp_gateway.results import error_result, tool_result
from mcp_gateway.unity_bridge import (
    ReadyWaitCallback,
    UnityBridge,
    UnityError,
    UnityInstance,
    UnityReloading,
    UnityUnavailable,
    discover_instances,
    read_status_file,
    resolve_status_dir,
)

logger = logging.getLogger(__name__)

ProgressReporter = Callable[[float, Optional[float], Optional[str]], Awaitable[None]]

REFRESH = 'unity_refresh'
RUN_TESTS = 'unity_run_tests'
INSTANCES = 'unity_instances'
FINAL_JOB_STATES = frozenset({'succeeded', 'failed', 'cancelled'})

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

_FILTER_PARAMS = {'test_names': 'testNames', 'group_names': 'groupNames',
                  'category_names': 'categoryNames', 'assembly_names': 'assemblyNames'}


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
    return error_result('invalid_arguments', f'{name}: {field}: {error.message}', field=field)


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


class UnityTools:
    """The Unity tools of one gateway process. `owner` names this gateway in busy answers."""

    def __init__(self, config: UnityConfig, owner: str,
                 lease_manager: Optional[LeaseManager] = None) -> None:
        self.config = config
        self.owner = owner
        self.leases = lease_manager or LeaseManager(config.lease_dir, ttl_s=config.lease_ttl_s)
        self.status_dir = resolve_status_dir(config.status_dir)
        self._bridges: dict[str, UnityBridge] = {}
        self._call_numbers = itertools.count(1)

    # ----------------------------------------------------------------- MCP surface

    def tools(self) -> list[types.Tool]:
        return [
            types.Tool(
                name=REFRESH, title='Refresh the Unity Editor',
                description=(
                    'Refresh Unity assets and optionally compile scripts, then wait until the '
                    'Editor is ready again. One Editor operation runs at a time across all '
                    'agents: if another one is running you get error "operation_busy" with '
                    'data.retry_after_ms; retry after that.'),
                input_schema=INPUT_SCHEMAS[REFRESH],
                annotations=types.ToolAnnotations(
                    title='Refresh the Unity Editor', read_only_hint=False,
                    destructive_hint=False, idempotent_hint=True, open_world_hint=False)),
            types.Tool(
                name=RUN_TESTS, title='Run Unity tests',
                description=(
                    'Run Unity Test Runner tests and wait for the result, reporting progress '
                    '(completed/total, current test). Returns the summary and the failures. '
                    'Busy Editor: error "operation_busy" with data.retry_after_ms.'),
                input_schema=INPUT_SCHEMAS[RUN_TESTS],
                annotations=types.ToolAnnotations(
                    title='Run Unity tests', read_only_hint=False, destructive_hint=False,
                    idempotent_hint=True, open_world_hint=False)),
            types.Tool(
                name=INSTANCES, title='List Unity Editors',
                description=('Unity Editors found on this host, their state, and which agent '
                             'currently holds each one for an operation.'),
                input_schema=INPUT_SCHEMAS[INSTANCES],
                annotations=types.ToolAnnotations(
                    title='List Unity Editors', read_only_hint=True, destructive_hint=False,
                    idempotent_hint=True, open_world_hint=False)),
        ]

    def handles(self, name: str) -> bool:
        return name in INPUT_SCHEMAS

    async def call(self, name: str, arguments: Optional[dict[str, Any]],
                   report_progress: ProgressReporter) -> types.CallToolResult:
        """Run one tool call. Every failure is an isError result; only cancellation raises."""
        arguments = {} if arguments is None else arguments
        invalid = _argument_error(name, arguments) if self.handles(name) else error_result(
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
            if name == REFRESH:
                return await self._with_lease(
                    instance, 'refresh_unity',
                    lambda lease: self._refresh(instance, lease, arguments, progress))
            return await self._with_lease(
                instance, 'run_tests',
                lambda lease: self._run_tests(instance, lease, arguments, progress))
        except UnityError as exc:
            return tool_result(exc.to_dict(), is_error=True)
        except LeaseLost as exc:
            return error_result('lease_lost', f'{exc}; the operation was stopped. Retry.')
        except LeaseError as exc:
            return error_result('lease_unavailable', str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must still answer, not drop the call
            logger.exception('%s failed unexpectedly', name)
            return error_result('internal_error', f'{name} failed: {type(exc).__name__}: {exc}')

    async def aclose(self) -> None:
        for bridge in self._bridges.values():
            await bridge.aclose()
        self._bridges.clear()

    # ----------------------------------------------------------------- tools

    async def _refresh(self, instance: UnityInstance, lease: Lease, arguments: dict[str, Any],
                       progress: _Progress) -> types.CallToolResult:
        bridge = await self._bridge(instance)
        started = time.monotonic()
        waiting = self._waiting_reporter(progress)
        # Let work already under way finish first: a compile a user started, or what a
        # holder that crashed mid-operation left (its lease is free at once, the Editor not).
        await bridge.wait_until_ready(self.config.ready_wait_s, waiting)
        await progress(1, None, f'refreshing {instance.instance_id}')
        lease.ensure()
        outcome = await bridge.refresh(arguments.get('mode', 'if_dirty'),
                                       arguments.get('scope', 'all'),
                                       arguments.get('compile', 'none'),
                                       reload_wait_s=self.config.ready_wait_s)
        await progress(2, None, 'Editor reloading' if outcome.reloaded else 'refresh done')
        state = await bridge.wait_until_ready(self.config.ready_wait_s, waiting)
        return tool_result({
            'success': True,
            'instance_id': instance.instance_id,
            'operation': 'refresh_unity',
            'lease_token': lease.token,
            'reloaded': outcome.reloaded,
            'editor': outcome.result.get('data'),
            'ready': True,
            'is_compiling': bool((state.get('compilation') or {}).get('is_compiling')),
            'duration_s': round(time.monotonic() - started, 3),
        })

    async def _run_tests(self, instance: UnityInstance, lease: Lease,
                         arguments: dict[str, Any], progress: _Progress) -> types.CallToolResult:
        bridge = await self._bridge(instance)
        started = time.monotonic()
        mode = arguments.get('mode', 'EditMode')
        params: dict[str, Any] = {'mode': mode, 'includeFailedTests': True}
        for name, wire_name in _FILTER_PARAMS.items():
            params[wire_name] = list((arguments.get('filters') or {}).get(name, []))
        await bridge.wait_until_ready(self.config.ready_wait_s, self._waiting_reporter(progress))
        lease.ensure()
        started_job = await bridge.command('run_tests', params, idempotent=False,
                                           reload_wait_s=self.config.ready_wait_s)
        job_id = (started_job.get('data') or {}).get('job_id')
        if not job_id:
            return error_result('unity_protocol_error', 'run_tests answered without a job_id',
                          editor=started_job)
        await progress(0, None, f'test job {job_id} started ({mode})')
        unreachable_since: Optional[float] = None
        while True:
            await anyio.sleep(self.config.test_poll_s)
            lease.ensure()
            try:
                job = (await bridge.command(
                    'get_test_job', {'job_id': job_id, 'includeFailedTests': True},
                    timeout_s=max(10.0, self.config.test_poll_s * 5))).get('data') or {}
            except (UnityUnavailable, UnityReloading) as exc:
                # Entering play mode reloads the domain: the job outlives it, keep polling.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.config.ready_wait_s:
                    raise
                await progress(0, None, f'test job {job_id}: {exc.message}; still waiting')
                continue
            unreachable_since = None
            await self._report_job(job, lease, started, progress)
            if job.get('status') in FINAL_JOB_STATES:
                return self._job_result(instance, lease, job, time.monotonic() - started)

    @staticmethod
    def _waiting_reporter(progress: _Progress) -> ReadyWaitCallback:
        async def waiting(reason: str) -> None:
            await progress(0, None, f'waiting for the Editor: {reason}')
        return waiting

    @staticmethod
    async def _report_job(job: dict[str, Any], lease: Lease, started: float,
                          progress: _Progress) -> None:
        state = job.get('progress') or {}
        completed = state.get('completed') if isinstance(state.get('completed'), int) else 0
        total = state.get('total') if isinstance(state.get('total'), int) else None
        current = state.get('current_test_full_name')
        if total and completed:
            elapsed = time.monotonic() - started
            lease.expect_end_in(elapsed / completed * (total - completed))
        count = f'{completed}/{total}' if total else f'{completed}'
        message = f'{count} tests done' + (f'; running {current}' if current else '')
        await progress(completed, total or None, message)

    @staticmethod
    def _job_result(instance: UnityInstance, lease: Lease, job: dict[str, Any],
                    duration_s: float) -> types.CallToolResult:
        status = job.get('status')
        result = job.get('result') if isinstance(job.get('result'), dict) else {}
        summary = result.get('summary') if isinstance(result.get('summary'), dict) else {}
        failures = [
            {'full_name': test.get('fullName') or test.get('name'),
             'state': test.get('state'), 'message': test.get('message')}
            for test in result.get('results') or []
            if isinstance(test, dict) and str(test.get('state', '')).lower() != 'passed'
        ] or list((job.get('progress') or {}).get('failures_so_far') or [])
        payload = {
            'success': status == 'succeeded' and not summary.get('failed') and not failures,
            'instance_id': instance.instance_id,
            'operation': 'run_tests',
            'lease_token': lease.token,
            'job_id': job.get('job_id'),
            'status': status,
            'mode': job.get('mode'),
            'summary': summary,
            'failures': failures,
            'error': job.get('error'),
            'duration_s': round(duration_s, 3),
        }
        return tool_result(payload, is_error=status != 'succeeded')

    async def _list_instances(self) -> types.CallToolResult:
        instances = await self._instances()
        listed = []
        for instance in instances:
            holder = self.leases.who_holds(instance.instance_id)
            listed.append({**instance.summary(), 'lease': holder})
        return tool_result({'success': True, 'instances': listed,
                        'status_dir': str(self.status_dir),
                        'lease_dir': str(self.leases.directory)})

    # ----------------------------------------------------------------- plumbing

    async def _with_lease(self, instance: UnityInstance, operation: str,
                          body: Callable[[Lease], Awaitable[types.CallToolResult]],
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

        try:
            await anyio.to_thread.run_sync(take)
            return await body(taken[0])
        except LeaseBusy as busy:
            return tool_result(busy.answer, is_error=True)
        finally:
            for lease in taken:
                lease.release()

    async def _instances(self) -> list[UnityInstance]:
        if self.config.port is not None:
            return [self._pinned_instance()]
        return await discover_instances(self.status_dir, self.config.host)

    def _pinned_instance(self) -> UnityInstance:
        """The configured host:port, named like discovery names it when a status file matches.

        Sharing the discovered id matters: gateways that find the same Editor in different
        ways must take the same lease.
        """
        port = self.config.port
        assert port is not None
        try:
            paths = sorted(self.status_dir.glob('unity-mcp-status-*.json'))
        except OSError:
            paths = []
        for path in paths:
            found = read_status_file(path, self.config.host)
            if found is not None and found.port == port:
                return found
        return UnityInstance(instance_id=self.config.instance or f'{self.config.host}:{port}',
                             host=self.config.host, port=port)

    async def _resolve_instance(self, requested: Optional[str],
                                ) -> UnityInstance | types.CallToolResult:
        """The one Editor this call is about, or an error listing the candidates."""
        instances = await self._instances()
        listed = [instance.summary() for instance in instances]
        wanted = requested or (None if self.config.port is not None else self.config.instance)
        if wanted:
            matches = [instance for instance in instances
                       if wanted in (instance.instance_id, instance.project_name,
                                     instance.project_hash)]
            if len(matches) == 1:
                return matches[0]
            problem = 'matches several Editors' if matches else 'matches no running Editor'
            return error_result('unknown_instance', f'instance {wanted!r} {problem}',
                          instances=listed)
        if len(instances) == 1:
            return instances[0]
        if not instances:
            return error_result('unity_unavailable',
                          f'no Unity Editor found (status files in {self.status_dir}); '
                          'start Unity with the MCP for Unity package', hint='retry',
                          retry_after_ms=5000)
        return error_result('several_instances',
                      f'{len(instances)} Unity Editors are running: pass "instance" (one of '
                      f'{", ".join(item.instance_id for item in instances)})',
                      instances=listed)

    async def _bridge(self, instance: UnityInstance) -> UnityBridge:
        """One bridge (one connection) per Editor; a new one if it moved to another port."""
        bridge = self._bridges.get(instance.instance_id)
        if bridge is not None and (bridge.instance.host, bridge.instance.port) != (
                instance.host, instance.port):
            await bridge.aclose()
            bridge = None
        if bridge is None:
            bridge = UnityBridge(instance)
            self._bridges[instance.instance_id] = bridge
        return bridge


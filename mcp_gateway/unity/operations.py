"""Refresh and test runs as the Editor really runs them, over either transport.

The lease must cover the whole operation, not just the Editor's first answer:
- A refresh with `compile: request` is answered at once; the compile starts a tick later
  and a domain reload follows (`RefreshUnity.cs`). So after the answer we watch for the
  reload (compiling, reload pending, reloading, unreachable, a dropped connection, or a
  compile/reload stamp newer than the request) for up to `compile_grace_s`, then wait
  until the Editor is ready again. Only then is the operation over.
- A test run is held from its start to its final result, with an overall deadline and
  stall detection that end it with a clear answer (the lease is then released).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional, Protocol

from mcp_gateway.unity.answers import (
    UnityCommandError,
    UnityError,
    UnityNotReady,
    UnityProtocolError,
    UnityReloading,
    UnityUnavailable,
)
from mcp_gateway.unity.bridge import BeforeSend, RefreshOutcome
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.job_results import (
    FINAL_STATUSES,
    job_progress,
    progress_marker,
    stuck_reason,
    summarize_job,
)

Progress = Callable[[float, Optional[float], str], Awaitable[None]]
STATE_POLL_S = 0.1
WAIT_REPORT_S = 1.0
RELOADING_RETRY_AFTER_MS = 2000
FILTER_PARAMS = {'test_names': 'testNames', 'group_names': 'groupNames',
                 'category_names': 'categoryNames', 'assembly_names': 'assemblyNames'}


class Transport(Protocol):
    """What operations need from a transport (stdio bridge or the official HTTP server)."""

    transport: str

    async def command(self, name: str, params: Optional[dict[str, Any]] = None, *,
                      idempotent: bool = True, reload_wait_s: float = 0.0,
                      timeout_s: Optional[float] = None,
                      before_send: Optional[BeforeSend] = None) -> dict[str, Any]: ...

    async def refresh(self, params: dict[str, Any], reload_wait_s: float,
                      before_send: Optional[BeforeSend] = None) -> RefreshOutcome: ...

    async def editor_state(self, timeout_s: float) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


def busy_reasons(state: dict[str, Any]) -> list[str]:
    """Why an Editor state snapshot is not ready for a new operation (empty: ready)."""
    def section(key: str) -> dict[str, Any]:
        value = state.get(key)
        return value if isinstance(value, dict) else {}

    compilation, assets, tests = section('compilation'), section('assets'), section('tests')
    refresh = assets.get('refresh') if isinstance(assets.get('refresh'), dict) else {}
    reasons = []
    if tests.get('is_running') is True:  # e.g. left by a holder that crashed or hung
        reasons.append('tests_running')
    if compilation.get('is_compiling') is True:
        reasons.append('compiling')
    if compilation.get('is_domain_reload_pending') is True:
        reasons.append('domain_reload')
    if assets.get('is_updating') is True or refresh.get('is_refresh_in_progress') is True:
        reasons.append('asset_refresh')
    return reasons


def reload_evidence(state: dict[str, Any], since_ms: int) -> Optional[str]:
    """Whether a snapshot shows a compile or reload that began after `since_ms`."""
    if 'compiling' in busy_reasons(state):
        return 'compiling'
    if 'domain_reload' in busy_reasons(state):
        return 'domain reload pending'
    compilation = state.get('compilation') if isinstance(state.get('compilation'), dict) else {}
    for key in ('last_domain_reload_before_unix_ms', 'last_domain_reload_after_unix_ms',
                'last_compile_started_unix_ms'):
        stamp = compilation.get(key)
        if isinstance(stamp, int) and stamp >= since_ms:
            return key.removeprefix('last_').removesuffix('_unix_ms').replace('_', ' ')
    return None


async def wait_until_ready(transport: Transport, budget_s: float, progress: Progress,
                           settle_reads: int = 1) -> dict[str, Any]:
    """Wait until the Editor answers and neither compiles, reloads nor refreshes.

    `settle_reads` ready snapshots in a row are needed (after a compile: a snapshot taken
    between the compile's end and the reload's start must not end the operation).
    """
    deadline = time.monotonic() + budget_s
    reason, reported, reported_at = 'waiting for the Editor', None, 0.0
    ready_reads = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnityNotReady(f'the Editor was not ready within {budget_s:g} s ({reason})',
                                retry_after_ms=RELOADING_RETRY_AFTER_MS)
        try:
            state = await transport.editor_state(max(0.5, min(remaining, 10.0)))
        except (UnityUnavailable, UnityReloading) as exc:
            reason, ready_reads = exc.message, 0
        except UnityCommandError as exc:
            if not exc.retryable:
                raise
            reason, ready_reads = exc.message, 0
        else:
            busy = busy_reasons(state)
            ready_reads = 0 if busy else ready_reads + 1
            if ready_reads >= settle_reads:
                return state
            reason = ', '.join(busy) or 'settling'
            if not busy:
                await asyncio.sleep(STATE_POLL_S * 2)
                continue
        now = time.monotonic()
        if reason != reported or now - reported_at >= WAIT_REPORT_S:
            reported, reported_at = reason, now
            await progress(0, None, f'waiting for the Editor: {reason}')
        await asyncio.sleep(min(STATE_POLL_S * 2, max(0.0, deadline - time.monotonic())))


async def observe_reload(transport: Transport, since_ms: int, grace_s: float) -> Optional[str]:
    """Watch for the compile/reload a refresh requested; its evidence, or None after grace."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            evidence = reload_evidence(await transport.editor_state(2.0), since_ms)
        except (UnityUnavailable, UnityReloading) as exc:
            return f'Editor away ({exc.message})'
        except UnityCommandError as exc:
            if not exc.retryable:
                raise
            return f'Editor busy ({exc.message})'
        if evidence:
            return evidence
        await asyncio.sleep(STATE_POLL_S)
    return None


async def refresh(transport: Transport, config: UnityConfig, arguments: dict[str, Any],
                  before_send: BeforeSend, progress: Progress) -> dict[str, Any]:
    """One refresh, held until the Editor is ready again (after its reload, if any)."""
    await wait_until_ready(transport, config.ready_wait_s, progress)
    compile_requested = arguments.get('compile', 'none') == 'request'
    params = {'mode': arguments.get('mode', 'if_dirty'), 'scope': arguments.get('scope', 'all'),
              'compile': arguments.get('compile', 'none'), 'wait_for_ready': False}
    await progress(1, None, 'refreshing')
    sent_ms = unix_ms()
    outcome = await transport.refresh(params, config.ready_wait_s, before_send)
    evidence: Optional[str] = None
    if compile_requested:
        if outcome.dropped:
            evidence = 'connection dropped'
        else:
            await progress(2, None, 'refresh answered; watching for the compile')
            evidence = await observe_reload(transport, sent_ms, config.compile_grace_s)
    await progress(3, None, f'reload: {evidence}' if evidence else 'waiting until ready')
    state = await wait_until_ready(transport, config.ready_wait_s, progress,
                                   settle_reads=2 if evidence else 1)
    compilation = state.get('compilation') if isinstance(state.get('compilation'), dict) else {}
    return {
        'success': True, 'operation': 'refresh_unity', 'transport': transport.transport,
        'compile_requested': compile_requested, 'reload_observed': evidence is not None,
        'reload_evidence': evidence,
        'editor': outcome.result.get('data') if isinstance(outcome.result.get('data'),
                                                             dict) else None,
        'ready': True, 'is_compiling': compilation.get('is_compiling') is True,
    }


def run_params(arguments: dict[str, Any], config: UnityConfig) -> dict[str, Any]:
    mode = arguments.get('mode', 'EditMode')
    params: dict[str, Any] = {'mode': mode, 'includeFailedTests': True}
    for name, wire_name in FILTER_PARAMS.items():
        params[wire_name] = list((arguments.get('filters') or {}).get(name, []))
    if mode == 'PlayMode':
        params['initTimeout'] = config.play_mode_init_timeout_ms
    return params


async def run_tests(transport: Transport, config: UnityConfig, arguments: dict[str, Any],
                    before_send: BeforeSend, progress: Progress,
                    expect_end_in: Callable[[float], None]) -> dict[str, Any]:
    """Start a run and follow it to its final result, a deadline or a stall."""
    await wait_until_ready(transport, config.ready_wait_s, progress)
    params = run_params(arguments, config)
    started = time.monotonic()
    answer = await transport.command('run_tests', params, idempotent=False,
                                     reload_wait_s=config.ready_wait_s,
                                     before_send=before_send)
    data = answer.get('data') if isinstance(answer.get('data'), dict) else {}
    job_id = data.get('job_id')
    if not isinstance(job_id, str) or not job_id:
        raise UnityProtocolError('run_tests answered without a job_id')
    await progress(0, None, f'test job {job_id} started ({params["mode"]})')
    job: dict[str, Any] = {'job_id': job_id, 'status': 'running', 'mode': params['mode']}
    marker, moved_at, away_since = None, time.monotonic(), None
    while True:
        await asyncio.sleep(config.test_poll_s)
        now = time.monotonic()
        if now - started > config.test_deadline_s:
            return ended(job, 'test_run_timeout',
                         f'test job {job_id} had no final result after '
                         f'{config.test_deadline_s:.0f} s; the lease was released')
        try:
            result = await transport.command(
                'get_test_job', {'job_id': job_id, 'includeFailedTests': True},
                timeout_s=max(10.0, config.test_poll_s * 5), before_send=before_send)
        except (UnityUnavailable, UnityReloading) as exc:
            # Entering play mode reloads the domain: the job outlives it, keep polling.
            away_since = away_since or now
            if now - away_since > config.ready_wait_s:
                raise
            await progress(0, None, f'test job {job_id}: {exc.message}; still waiting')
            continue
        away_since = None
        job = result.get('data') if isinstance(result.get('data'), dict) else job
        completed, total, current = job_progress(job)
        count = f'{completed}/{total}' if total else f'{completed}'
        await progress(completed, total, f'{count} tests done'
                       + (f'; running {current}' if current else ''))
        if job.get('status') in FINAL_STATUSES:
            return ended(job)
        if progress_marker(job) != marker:
            marker, moved_at = progress_marker(job), now
        stuck = stuck_reason(job)
        still_s = now - moved_at
        if still_s >= config.test_stall_s or (stuck and still_s >= config.test_stall_s / 4):
            return ended(job, 'test_run_stalled',
                         f'test job {job_id} made no progress for {still_s:.0f} s'
                         f'{f" ({stuck})" if stuck else ""}; the lease was released')
        if total and completed:
            expect_end_in((now - started) / completed * (total - completed))


def ended(job: dict[str, Any], error: Optional[str] = None,
          message: Optional[str] = None) -> dict[str, Any]:
    """The answer body for a run: its final result, or why we stopped following it."""
    shaped = summarize_job(job)
    body: dict[str, Any] = {
        'success': shaped['success'] and error is None, 'operation': 'run_tests',
        'job_id': job.get('job_id') if isinstance(job.get('job_id'), str) else None,
        'status': shaped['status'],
        'mode': job.get('mode') if isinstance(job.get('mode'), str) else None,
        'summary': shaped['summary'], 'failures': shaped['failures'],
        'failures_capped': shaped['failures_capped'],
        'editor_error': job.get('error') if isinstance(job.get('error'), str) else None,
    }
    if error is not None:
        body.update(error=error, message=message or error, hint='retry')
    elif not body['success']:
        failed = shaped['summary'].get('failed')
        body.update(error='tests_failed', message=(
            f'test run {shaped["status"]}: {failed if failed is not None else "some"} '
            f'test(s) failed' + (f' ({body["editor_error"]})' if body['editor_error'] else '')))
    return body


__all__ = ['Transport', 'UnityError', 'refresh', 'run_tests', 'wait_until_ready']

"""Unity test results as the Editor reports them (pure logic, no I/O).

What the Editor really sends (`TestJobManager.cs`, `RunTests.cs`): a run with a failing
test ends `status: failed` with `result: null`; its summary must be rebuilt from
`progress` (completed/total) and `failures_so_far` (at most 25, no stack traces). Ignored
tests report `Skipped:Ignored`: only `Failed*` states are failures. There is no
`cancelled` status; `total` is null until the run starts.
"""
from __future__ import annotations

from typing import Any, Optional

FINAL_STATUSES = frozenset({'succeeded', 'failed', 'cancelled'})
FAILURES_SO_FAR_CAP = 25


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_failure_state(state: Any) -> bool:
    """`Failed`, `Failed:Error`... are failures; `Skipped:Ignored`, `Inconclusive` are not."""
    return isinstance(state, str) and state.lower().startswith('failed')


def job_progress(job: dict[str, Any]) -> tuple[int, Optional[int], Optional[str]]:
    """(completed, total or None, current test or None) from a `get_test_job` answer."""
    progress = _dict(job.get('progress'))
    completed = _int(progress.get('completed')) or 0
    total = _int(progress.get('total'))
    return completed, (total if total else None), _text(progress.get('current_test_full_name'))


def progress_marker(job: dict[str, Any]) -> tuple[Any, ...]:
    """What changes whenever a run moves on (for stall detection)."""
    progress = _dict(job.get('progress'))
    return (job.get('status'), progress.get('completed'),
            progress.get('current_test_full_name'), job.get('last_update_unix_ms'),
            progress.get('last_finished_unix_ms'))


def stuck_reason(job: dict[str, Any]) -> Optional[str]:
    """The Editor's own word that a run is stuck (`stuck_suspected`, `blocked_reason`)."""
    progress = _dict(job.get('progress'))
    blocked = _text(progress.get('blocked_reason'))
    if blocked:
        return f'blocked: {blocked}'
    if progress.get('stuck_suspected') is True:
        return 'the Editor suspects the run is stuck'
    return None


def summarize_job(job: dict[str, Any]) -> dict[str, Any]:
    """`status`, `summary`, `failures`, `failures_capped` and `success` for one job answer."""
    status = _text(job.get('status')) or 'unknown'
    result = _dict(job.get('result'))
    editor_summary = _dict(result.get('summary'))
    progress = _dict(job.get('progress'))
    failures = [
        {'full_name': _text(test.get('fullName')) or _text(test.get('name')),
         'state': _text(test.get('state')), 'message': _text(test.get('message')),
         'stack_trace': _text(test.get('stackTrace'))}
        for test in _list(result.get('results')) if isinstance(test, dict)
        and is_failure_state(test.get('state'))]
    so_far = [item for item in _list(progress.get('failures_so_far')) if isinstance(item, dict)]
    capped = progress.get('failures_capped') is True or len(so_far) >= FAILURES_SO_FAR_CAP
    if not failures:
        failures = [{'full_name': _text(item.get('full_name')), 'state': 'Failed',
                     'message': _text(item.get('message')), 'stack_trace': None}
                    for item in so_far]
    else:
        capped = False
    if editor_summary:
        summary = {
            'total': _int(editor_summary.get('total')),
            'passed': _int(editor_summary.get('passed')),
            'failed': _int(editor_summary.get('failed')),
            'skipped': _int(editor_summary.get('skipped')),
            'duration_s': (editor_summary.get('durationSeconds')
                           if isinstance(editor_summary.get('durationSeconds'), (int, float))
                           else None),
            'result_state': _text(editor_summary.get('resultState')),
            'source': 'editor'}
    else:
        completed, total, _ = job_progress(job)
        failed = len(failures)
        summary = {
            'total': total, 'passed': max(0, completed - failed) if completed else None,
            'failed': failed if status in FINAL_STATUSES or failed else None,
            'skipped': None, 'duration_s': None,
            'result_state': 'Failed' if failed or status == 'failed' else None,
            'source': 'rebuilt'}
    failed_count = summary['failed'] or 0
    return {
        'status': status, 'summary': summary, 'failures': failures,
        'failures_capped': capped,
        'success': status == 'succeeded' and failed_count == 0 and not failures,
    }

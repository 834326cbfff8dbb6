"""Test results as the Editor reports them, and the lease check right before a command."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings, strategies as st

from fake_unity_editor import FakeUnityEditor
from mcp_gateway.unity.answers import OUTPUT_SCHEMAS, UnityLeaseLost
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.instances import Finder
from mcp_gateway.unity.job_results import summarize_job
from mcp_gateway.unity.lease import LeaseManager, lease_file_stem
from mcp_gateway.unity.operations import ended
from mcp_gateway.unity.tools import UnityTools

RUN_SCHEMA = OUTPUT_SCHEMAS['unity_run_tests']


def test_a_failed_run_with_result_null_is_rebuilt_from_progress() -> None:
    job = {'job_id': 'j', 'status': 'failed', 'mode': 'EditMode', 'result': None,
           'progress': {'completed': 7, 'total': 7, 'failures_so_far': [
               {'full_name': 'A.B', 'message': 'boom'}]}}
    body = ended(job)
    jsonschema.validate({**body, 'instance_id': 'P@1'}, RUN_SCHEMA)
    assert body['success'] is False and body['error'] == 'tests_failed'
    assert body['summary'] == {'total': 7, 'passed': 6, 'failed': 1, 'skipped': None,
                               'duration_s': None, 'result_state': 'Failed',
                               'source': 'rebuilt'}
    assert body['failures'] == [{'full_name': 'A.B', 'state': 'Failed', 'message': 'boom',
                                 'stack_trace': None}]


def test_ignored_tests_are_not_failures() -> None:
    job = {'job_id': 'j', 'status': 'succeeded', 'result': {
        'summary': {'total': 3, 'passed': 2, 'failed': 0, 'skipped': 1,
                    'durationSeconds': 0.2, 'resultState': 'Passed'},
        'results': [{'fullName': 'A.Ignored', 'state': 'Skipped:Ignored'}]}}
    shaped = summarize_job(job)
    assert shaped['success'] is True and shaped['failures'] == []
    assert shaped['summary']['skipped'] == 1 and shaped['summary']['source'] == 'editor'


def test_a_capped_failure_list_says_so() -> None:
    failures = [{'full_name': f'T{i}', 'message': 'x'} for i in range(25)]
    shaped = summarize_job({'status': 'failed', 'result': None,
                            'progress': {'completed': 40, 'total': 40,
                                         'failures_so_far': failures}})
    assert shaped['failures_capped'] is True and shaped['summary']['failed'] == 25


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_jobs = st.fixed_dictionaries({}, optional={
    'job_id': _json | st.text(), 'status': st.sampled_from(['running', 'succeeded', 'failed'])
    | _json, 'mode': _json, 'error': _json,
    'result': st.none() | st.fixed_dictionaries({}, optional={'summary': _json,
                                                              'results': _json}),
    'progress': st.fixed_dictionaries({}, optional={
        'completed': _json, 'total': _json, 'failures_so_far': _json,
        'current_test_full_name': _json, 'stuck_suspected': _json})})


@settings(max_examples=150, deadline=None)
@given(_jobs)
def test_any_job_answer_gives_an_answer_that_conforms(job: dict[str, Any]) -> None:
    body = ended(job)
    jsonschema.validate({**body, 'instance_id': 'P@1', 'lease_token': 1, 'duration_s': 0.1},
                        RUN_SCHEMA)


def test_a_holder_that_lost_its_lease_sends_nothing(tmp_path: Path) -> None:
    """A stalled holder whose lease was broken meanwhile must not act on the Editor."""
    status = tmp_path / 'status'
    with FakeUnityEditor(status, 'Game') as editor:
        manager = LeaseManager(tmp_path / 'leases')
        lease = manager.acquire(editor.instance_id, 'stalled', 'refresh_unity')
        fence = UnityTools._fence(lease)
        fence()  # still ours: passes
        # What a breaker does to an expired lease: replace the lock file.
        lock = tmp_path / 'leases' / f'{lease_file_stem(editor.instance_id)}.lock'
        replacement = lock.with_name('replacement')
        replacement.write_text('')
        os.replace(replacement, lock)

        async def act() -> None:
            (instance,) = await Finder(UnityConfig(status_dir=str(status),
                                                   transport='stdio')).instances()
            bridge = UnityBridge(instance)
            try:
                with pytest.raises(UnityLeaseLost):
                    await bridge.refresh({'compile': 'request'}, 1.0, before_send=fence)
            finally:
                await bridge.aclose()
        asyncio.run(act())
        assert 'refresh_unity' not in editor.commands and lease.lost
        manager.close()


def _run_tests(config: UnityConfig, arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    tools = UnityTools(config, 'gw')

    async def ignore(*_: Any) -> None:
        pass

    async def call() -> Any:
        try:
            return await tools.call('unity_run_tests', arguments, ignore)
        finally:
            await tools.aclose()
    result = asyncio.run(call())
    body = result.structured_content
    jsonschema.validate(body, RUN_SCHEMA)
    return result, body


def test_a_stalled_run_ends_with_a_clear_answer_and_frees_the_lease(tmp_path: Path) -> None:
    status = tmp_path / 'status'
    config = UnityConfig(status_dir=str(status), lease_dir=str(tmp_path / 'leases'),
                         test_poll_s=0.05, test_stall_s=0.8, ready_wait_s=5.0)
    with FakeUnityEditor(status, 'Game', tests=['Slow.Test'], test_duration_s=60) as editor:
        result, body = _run_tests(config, {})
        assert result.is_error and body['error'] == 'test_run_stalled'
        assert 'no progress' in body['message'] and body['status'] == 'running'
        assert LeaseManager(tmp_path / 'leases').who_holds(editor.instance_id) is None


def test_a_run_past_its_deadline_ends_with_a_clear_answer(tmp_path: Path) -> None:
    status = tmp_path / 'status'
    config = UnityConfig(status_dir=str(status), lease_dir=str(tmp_path / 'leases'),
                         test_poll_s=0.05, test_deadline_s=0.6, ready_wait_s=5.0)
    with FakeUnityEditor(status, 'Game', tests=[f'T.{i}' for i in range(40)],
                         test_duration_s=0.1):
        result, body = _run_tests(config, {})
        assert result.is_error and body['error'] == 'test_run_timeout'
        assert body['summary']['total'] == 40


def test_play_mode_runs_send_an_init_timeout(tmp_path: Path) -> None:
    status = tmp_path / 'status'
    config = UnityConfig(status_dir=str(status), lease_dir=str(tmp_path / 'leases'),
                         test_poll_s=0.05, play_mode_init_timeout_ms=90_000)
    with FakeUnityEditor(status, 'Game', ignored_tests=('Fake.Tests.Test1',)) as editor:
        result, body = _run_tests(config, {'mode': 'PlayMode'})
        assert editor.last_params['run_tests']['initTimeout'] == 90_000
        # An ignored test is not a failure: the run succeeds.
        assert not result.is_error and body['success'] is True
        assert body['summary']['skipped'] == 1 and body['failures'] == []
        _, edit_body = _run_tests(config, {'mode': 'EditMode'})
        assert 'initTimeout' not in editor.last_params['run_tests']


def test_the_unity_section_is_checked_by_the_gateway_with_one_line_errors(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    from skill_lanes.config import ConfigError
    from mcp_gateway.unity.config import load_unity_config
    with pytest.raises(ConfigError, match=r'^f\.yaml: unity\.transprt: unknown key$'):
        load_unity_config({'transprt': 'http'}, 'f.yaml')
    with pytest.raises(ConfigError, match=r'^f\.yaml: unity\.server_url: invalid value'):
        load_unity_config({'server_url': 'not a url'}, 'f.yaml')
    assert load_unity_config(None).enabled is False
    bad = tmp_path / 'bad.yaml'
    bad.write_text('unity:\n  enabled: true\n  transport: carrier_pigeon\n')
    run = subprocess.run([sys.executable, '-m', 'mcp_gateway', '--config', str(bad)],
                         capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert run.returncode == 2, run.stderr
    assert f'{bad}: unity.transport: ' in run.stderr and 'Traceback' not in run.stderr


def test_server_answers_are_read_whatever_their_shape() -> None:
    import mcp_types as types

    from mcp_gateway.unity.http import _body, _is_away

    def text_result(text: str, is_error: bool = False) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type='text', text=text)],
                                    is_error=is_error)
    assert _body(text_result('{"success": true, "data": {"job_id": "j"}}'))['data'] == {
        'job_id': 'j'}
    disabled = _body(text_result("Tool 'run_tests' is disabled", is_error=True))
    assert disabled == {'success': False, 'error': "Tool 'run_tests' is disabled"}
    wrapped = types.CallToolResult(content=[], structured_content={'result': {'success': 1}})
    assert _body(wrapped) == {'success': 1}
    assert _is_away({'success': False, 'hint': 'retry',
                     'error': 'No Unity plugins are currently connected'})
    assert not _is_away({'success': False, 'error': 'tests_running', 'hint': 'retry'})

"""The Editor side of the fake Unity Editors: commands, test jobs, compile and reload.

Shared by the two front-ends the real Editor has: `fake_unity_editor.py` (the stdio TCP
bridge, with status files) and `fake_unity_plugin.py` (the HTTP-mode plugin that dials the
official server's WebSocket hub). Timing as the Editor's (`RefreshUnity.cs`,
`TestJobManager.cs`): a refresh with `compile: request` is answered success at once; the
compile starts a tick later and a domain reload follows, during which the Editor is away.
A run with a failing test ends `failed` with `result: null` (failures_so_far capped at 25,
no stack traces); ignored tests are `Skipped:Ignored`.

It records what the tests check: how many times two operations (a refresh with its compile
and reload, or a test run) were in progress at once (`overlaps`).
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

FAILURES_CAP = 25


@dataclass
class FakeTestJob:
    job_id: str
    mode: str
    tests: list[str]
    status: str = 'running'
    completed: int = 0
    current: Optional[str] = None
    results: list[dict[str, Any]] = field(default_factory=list)
    started_unix_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    finished_unix_ms: Optional[int] = None


class FakeEditorCore:
    """One fake Editor minus its transport. Timings are parameters so tests stay fast."""

    writes_status = True  # the stdio bridge writes status files; the HTTP plugin does not

    def __init__(self, status_dir: str | os.PathLike[str], project_name: str = 'FakeProject',
                 *, port: int = 0, tests: Optional[list[str]] = None,
                 failing_tests: tuple[str, ...] = (), test_duration_s: float = 0.05,
                 refresh_duration_s: float = 0.05, reload_on_compile: bool = True,
                 reload_duration_s: float = 0.5, status_interval_s: float = 0.2,
                 record_path: Optional[str | os.PathLike[str]] = None,
                 compile_delay_s: float = 0.2, compile_duration_s: float = 0.3,
                 ignored_tests: tuple[str, ...] = (), idle_close_s: float = 30.0) -> None:
        self.status_dir = Path(status_dir)
        self.project_name = project_name
        self.project_path = f'/fake/projects/{project_name}/Assets'
        self.project_hash = hashlib.sha1(self.project_path.encode()).hexdigest()[:8]
        self.instance_id = f'{project_name}@{self.project_hash}'
        self.status_path = self.status_dir / f'unity-mcp-status-{self.project_hash}.json'
        self.port = port
        self.tests = tests if tests is not None else [f'Fake.Tests.Test{i}' for i in range(5)]
        self.failing_tests = set(failing_tests)
        self.test_duration_s = test_duration_s
        self.refresh_duration_s = refresh_duration_s
        self.reload_on_compile = reload_on_compile
        self.reload_duration_s = reload_duration_s
        self.status_interval_s = status_interval_s
        self.record_path = Path(record_path) if record_path else None
        self.compile_delay_s = compile_delay_s
        self.compile_duration_s = compile_duration_s
        self.ignored_tests = set(ignored_tests)
        self.idle_close_s = idle_close_s
        self.compiling = False
        self.last_params: dict[str, dict[str, Any]] = {}
        self.compile_started_ms: Optional[int] = None
        self.reload_before_ms: Optional[int] = None
        self.reload_after_ms: Optional[int] = None
        # Observations (read by tests from other threads).
        self.overlaps = 0
        self.max_active = 0
        self.commands: list[str] = []
        self.connections = 0
        self.reloads = 0
        self.zero_length_frames_received = 0
        self.reloading = False
        self.jobs: dict[str, FakeTestJob] = {}
        self._active = 0
        self._refreshing = 0
        self._job_numbers = itertools.count(1)
        self._seq = 0
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: Optional[asyncio.AbstractServer] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client_tasks: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> 'FakeEditorCore':
        """Run in a background thread with its own event loop; returns once listening."""
        self._thread = threading.Thread(target=self._run, name='fake-unity', daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError('fake Unity Editor did not start')
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self) -> 'FakeEditorCore':
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        """Serve until `stop()`; usable directly inside an event loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.status_dir.mkdir(parents=True, exist_ok=True)
        await self._come_up()
        self._write_status()
        self._spawn(self._status_writer())
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self._shut_down()
            try:
                self.status_path.unlink()
            except OSError:
                pass

    # ----------------------------------------------------------------- test hooks

    def begin_reload(self, seconds: float) -> None:
        """Start a domain reload not caused by a client (e.g. a user saved a script)."""
        self._call(lambda: self._spawn(self._reload(seconds)))

    def _call(self, function: Any) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            function()
            done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(5)
    # ----------------------------------------------------------------- front-end hooks

    async def _come_up(self) -> None:
        """Start serving (at start and after a reload)."""
        raise NotImplementedError

    async def _go_down(self) -> None:
        """Stop serving and drop every connection (a domain reload)."""
        raise NotImplementedError

    async def _shut_down(self) -> None:
        await self._go_down()

    # ----------------------------------------------------------------- commands

    async def handle(self, command: str, params: dict[str, Any]) -> Optional[dict[str, Any]]:
        """One command's tool result (None: the connection drops). Shared by front-ends."""
        if command == 'ping':  # the main-thread probe the hub sends before fast commands
            return {'message': 'pong'}
        self.commands.append(command)
        self.last_params[command] = params
        handler = {
            'refresh_unity': self._refresh,
            'run_tests': self._run_tests,
            'get_test_job': self._get_test_job,
            'get_editor_state': self._editor_state,
        }.get(command)
        if handler is None:
            return _failure(f'Unknown command: {command}')
        return await handler(params)

    async def _refresh(self, params: dict[str, Any]) -> Optional[dict[str, Any]]:
        if self._running_job() is not None:
            self._count_overlap()
            return _failure('tests_running', reason='tests_running', retry_after_ms=5000)
        compile_requested = params.get('compile') == 'request'
        self._begin_operation(refresh=True)
        try:
            await asyncio.sleep(self.refresh_duration_s)
        except asyncio.CancelledError:
            self._end_operation(refresh=True)
            raise
        if compile_requested and self.reload_on_compile:
            # Answered at once with the Editor idle ("resulting_state": "idle"): the asset
            # refresh is over, the compile starts a tick later and a reload ends it. The
            # operation lasts until then.
            self._refreshing -= 1
            self._spawn(self._compile_then_reload())
        else:
            self._end_operation(refresh=True)
        return {'success': True, 'message': 'Refresh requested.',
                'data': {'refresh_triggered': True, 'compile_requested': compile_requested,
                         'resulting_state': 'idle'}}

    async def _compile_then_reload(self) -> None:
        await asyncio.sleep(self.compile_delay_s)
        self.compiling = True
        self.compile_started_ms = int(time.time() * 1000)
        try:
            await asyncio.sleep(self.compile_duration_s)
        finally:
            self.reloading = True  # the reload follows the compile without a gap
            self.compiling = False
        await self._reload(self.reload_duration_s, ends_refresh=True)

    async def _run_tests(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._running_job() is not None:
            self._count_overlap()
            return _failure('tests_running', reason='tests_running', retry_after_ms=5000)
        wanted = set(params.get('testNames') or [])
        tests = [name for name in self.tests if not wanted or name in wanted]
        job = FakeTestJob(job_id=f'job-{next(self._job_numbers)}',
                          mode=params.get('mode', 'EditMode'), tests=tests)
        self.jobs[job.job_id] = job
        self._begin_operation()
        self._spawn(self._execute(job))
        return {'success': True, 'message': 'Test job started.',
                'data': {'job_id': job.job_id, 'status': 'running', 'mode': job.mode}}

    async def _execute(self, job: FakeTestJob) -> None:
        try:
            for name in job.tests:
                job.current = name
                await asyncio.sleep(self.test_duration_s)
                failed = name in self.failing_tests
                state = ('Failed' if failed else
                         'Skipped:Ignored' if name in self.ignored_tests else 'Passed')
                job.results.append({
                    'name': name.rsplit('.', 1)[-1], 'fullName': name, 'state': state,
                    'stackTrace': 'at Fake.Tests (Fake.cs:12)' if failed else None,
                    'durationSeconds': self.test_duration_s,
                    'message': 'Expected 1 but was 2' if failed else None})
                job.completed += 1
            job.current = None
            job.status = ('failed' if any(r['state'] == 'Failed' for r in job.results)
                          else 'succeeded')
        finally:
            job.finished_unix_ms = int(time.time() * 1000)
            if job.status == 'running':
                job.status = 'cancelled'
            self._end_operation()

    async def _get_test_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(str(params.get('job_id')))
        if job is None:
            return _failure('Unknown job_id.')
        failures = [{'full_name': r['fullName'], 'message': r['message']}
                     for r in job.results if r['state'] == 'Failed']
        result = None
        if job.status == 'succeeded':  # a failed run has result null, as in the Editor
            skipped = sum(r['state'].startswith('Skipped') for r in job.results)
            result = {
                'mode': job.mode,
                'summary': {'total': len(job.tests),
                            'passed': len(job.tests) - skipped, 'failed': 0,
                            'skipped': skipped,
                            'durationSeconds': self.test_duration_s * len(job.tests),
                            'resultState': 'Passed'},
                'results': ([r for r in job.results if r['state'] != 'Passed']
                            if params.get('includeFailedTests') else None),
            }
        return {'success': True, 'message': 'Test job status retrieved.', 'data': {
            'job_id': job.job_id, 'status': job.status, 'mode': job.mode,
            'started_unix_ms': job.started_unix_ms, 'finished_unix_ms': job.finished_unix_ms,
            'progress': {'completed': job.completed, 'total': len(job.tests),
                         'current_test_full_name': job.current,
                         'failures_so_far': failures[:FAILURES_CAP],
                         'failures_capped': len(failures) > FAILURES_CAP},
            'error': None, 'result': result}}

    async def _editor_state(self, params: dict[str, Any]) -> dict[str, Any]:
        return {'success': True, 'message': 'Editor state.', 'data': {
            'activity': {'phase': 'running_tests' if self._running_job() else 'idle'},
            'compilation': {'is_compiling': self.compiling,
                            # From the compile until the reload is over (as
                            # beforeAssemblyReload/afterAssemblyReload set it).
                            'is_domain_reload_pending': self.compiling or self.reloading,
                            'last_compile_started_unix_ms': self.compile_started_ms,
                            'last_domain_reload_before_unix_ms': self.reload_before_ms,
                            'last_domain_reload_after_unix_ms': self.reload_after_ms},
            'tests': {'is_running': self._running_job() is not None},
            'assets': {'is_updating': self._refreshing > 0,
                       'refresh': {'is_refresh_in_progress': self._refreshing > 0}}}}

    # ----------------------------------------------------------------- state

    def _running_job(self) -> Optional[FakeTestJob]:
        return next((job for job in self.jobs.values() if job.status == 'running'), None)

    def _count_overlap(self) -> None:
        self.overlaps += 1
        self._write_record()

    def _begin_operation(self, refresh: bool = False) -> None:
        if self._active > 0:
            self.overlaps += 1
        self._active += 1
        self._refreshing += refresh
        self.max_active = max(self.max_active, self._active)
        self._write_record()

    def _end_operation(self, refresh: bool = False) -> None:
        self._active -= 1
        self._refreshing -= refresh
        self._write_record()

    async def _reload(self, seconds: float, ends_refresh: bool = False) -> None:
        self.reloading = True
        self.reload_before_ms = int(time.time() * 1000)
        try:
            self.status_path.unlink()  # the Editor deletes its status file at a reload
        except OSError:
            pass
        await asyncio.sleep(0.05)
        self._write_status()
        await self._go_down()
        try:
            await asyncio.sleep(seconds)
            await self._come_up()
        finally:
            self.reloading = False
            self.reload_after_ms = int(time.time() * 1000)
            self.reloads += 1
            if ends_refresh:
                self._end_operation()
            self._write_status()

    async def _status_writer(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            self._write_status()

    def _write_status(self) -> None:
        if not self.writes_status:
            return
        self._seq += 1
        payload = {
            'unity_port': self.port, 'reloading': self.reloading,
            'reason': 'reloading' if self.reloading else 'ready', 'seq': self._seq,
            'project_path': self.project_path, 'project_name': self.project_name,
            'unity_version': '6000.0.0f1',
            'last_heartbeat': datetime.now(timezone.utc).isoformat().replace('+00:00', 'Z'),
        }
        _write_in_place(self.status_path, payload)

    def _write_record(self) -> None:
        if self.record_path is not None:
            _write_atomically(self.record_path, {
                'overlaps': self.overlaps, 'max_active': self.max_active,
                'active': self._active, 'commands': self.commands,
                'zero_length_frames_received': self.zero_length_frames_received})

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task



def _failure(error: str, **data: Any) -> dict[str, Any]:
    return {'success': False, 'code': error, 'error': error, 'data': data}


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def _write_in_place(path: Path, payload: dict[str, Any]) -> None:
    """As the Editor does: truncate and rewrite the same file (readers may see it partial)."""
    raw = json.dumps(payload).encode()
    with open(path, 'wb') as file:
        file.write(raw[:len(raw) // 2])
        file.flush()
        time.sleep(0.001)
        file.write(raw[len(raw) // 2:])



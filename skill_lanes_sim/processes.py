"""OS processes started by tests, benches and the demo: always stopped, output in a log file.

Processes run with their output in a log file (never a pipe that can fill up and block
them); `wait_for_output` polls that file. `stop` sends SIGINT (the executables exit cleanly
on Ctrl-C), then SIGTERM, then SIGKILL, to the whole process group.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent  # the checkout (default cwd of started processes)
PYTHON = sys.executable


def wait_until(predicate: Callable[[], object], timeout: float = 15.0,
               interval: float = 0.02, what: str = 'condition') -> object:
    """Poll predicate until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(interval)


class ManagedProcess:
    """One OS process started by a test, with its combined output in a log file."""

    def __init__(self, args: Sequence[str], env: Optional[dict] = None,
                 name: str = 'proc', stdin: Any = subprocess.DEVNULL,
                 log_dir: Optional[Path] = None, cwd: Optional[Path] = None) -> None:
        self.name = name
        self.args = list(args)
        if log_dir is not None:
            self.log_path = Path(log_dir) / f'{name}.log'
        else:
            self.log_path = Path(tempfile.mkstemp(prefix=f'skill_lanes_{name}_',
                                                  suffix='.log')[1])
        self._log = open(self.log_path, 'wb')
        full_env = dict(os.environ)
        for key, value in (env or {}).items():  # None unsets an inherited variable
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.popen = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=stdin,
            env=full_env, cwd=str(cwd or ROOT), start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors='replace')
        except OSError:
            return ''

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            if self.popen.poll() is not None:
                raise AssertionError(
                    f'{self.name} exited ({self.popen.returncode}) before printing {text!r}:\n'
                    f'{self.output()[-3000:]}')
            return False
        try:
            wait_until(seen, timeout, what=f'{self.name} to print {text!r}')
        except AssertionError as exc:
            raise AssertionError(f'{exc}\n--- {self.name} output ---\n{self.output()[-3000:]}')

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean-up of any kind runs in the process."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def dump_stacks(self) -> str:
        """Thread stacks of a live process (debugging aid; needs py-spy)."""
        import shutil
        spy = shutil.which('py-spy') or str(Path(PYTHON).parent / 'py-spy')
        if self.popen.poll() is not None or not Path(spy).exists():
            return ''
        return subprocess.run([spy, 'dump', '--pid', str(self.pid)], capture_output=True,
                              text=True, timeout=30).stdout

    def stop(self, timeout: float = 8.0) -> Optional[int]:
        """Ctrl-C, then SIGTERM, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0),
                              (signal.SIGKILL, 5.0)):
                self.signal(sig)
                try:
                    self.popen.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Children that outlived the leader (same session): kill them too.
        self.signal(signal.SIGKILL)
        self._log.close()
        return self.popen.returncode

    def remove_log(self) -> None:
        try:
            self.log_path.unlink()
        except OSError:
            pass


class ProcessGroup:
    """Every process one test starts; `stop_all` runs when the test ends."""

    _all_groups: list['ProcessGroup'] = []

    def __init__(self) -> None:
        self.procs: list[ManagedProcess] = []
        ProcessGroup._all_groups.append(self)

    def start(self, args: Sequence[str], env: Optional[dict] = None, name: str = 'proc',
              **kwargs) -> ManagedProcess:
        proc = ManagedProcess(args, env=env, name=name, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, module: str, *args: str, env: Optional[dict] = None,
               name: Optional[str] = None, **kwargs) -> ManagedProcess:
        """Run `python -m module args...` with this interpreter."""
        return self.start([PYTHON, '-m', module, *args], env=env, name=name or module,
                          **kwargs)

    def stop_all(self, remove_logs: bool = True) -> None:
        """Stop every process (last started first); remove their logs unless told not to."""
        for proc in reversed(self.procs):
            proc.stop()
            if remove_logs:
                proc.remove_log()
        self.procs.clear()

    @classmethod
    def stop_every_group(cls) -> None:
        for group in cls._all_groups:
            group.stop_all()

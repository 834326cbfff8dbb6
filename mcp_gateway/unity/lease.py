"""A cross-process lease per Unity Editor instance: one Editor operation at a time per host.

Several MCP gateway processes (one per agent) may drive the same Unity Editor. A refresh that
lands in the middle of another agent's test run, or two refreshes in a row, make reload
storms and false test failures. Every process that wants to run an Editor operation first
takes this lease for the Editor's instance id.

Why this design (and not the O_CREAT|O_EXCL marker file of unity-mcp PR #1184):

- The lease is an exclusive `flock` on a per-instance lock file. The kernel drops it the
  moment the holder dies, even on SIGKILL, so a crashed holder never blocks anyone.
- A holder that is alive but hung keeps its flock, so the lease also carries an expiry in
  JSON metadata inside the lock file. A live holder renews it from a heartbeat thread every
  ttl/3, so a long operation never loses the lease; a stopped process cannot renew.
- Breaking an expired lease replaces the lock file by an atomic rename, done under a
  per-instance guard flock after re-checking the holder under that guard. An acquirer only
  counts as holder after it has checked, under the same guard, that the file it locked is
  still the one at the path. So a breaker can never remove a lease someone just took, and
  two holders cannot exist at once.
- Each new holder gets a fencing token one higher than the previous holder's, persisted in
  the guard file, so the holder of an old lease can be told apart from the current one.
  A holder that lost its lease finds out through `Lease.check()` / `Lease.lost`.
- Anything unexpected in the folder (empty, corrupt or foreign files) is read as "no valid
  holder" and never raises out of a reader.

Works on one host only (flock is not reliable on network file systems).
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from mcp_gateway.unity.lease_files import (  # noqa: F401 - re-exported for callers
    DEFAULT_RETRY_AFTER_MS,
    DEFAULT_TTL_S,
    GUARD_TIMEOUT_S,
    LEASE_DIR_ENV,
    MAX_ACQUIRE_ATTEMPTS,
    UNSETTLED_RECHECK_S,
    LeaseBusy,
    LeaseError,
    LeaseLost,
    _flock_within,
    _Hold,
    _InstanceFiles,
    _is_live_holder,
    _next_token,
    _open_private,
    _read_metadata,
    _same_file,
    busy_answer,
    default_lease_dir,
    lease_file_stem,
    open_for_reading,
    prepare_directory,
    retry_after_ms,
    unix_ms,
)


class LeaseManager:
    """Takes and renews leases in one folder for this process.

    Use one manager per process and folder: reentrancy (same owner, same instance) is
    tracked per manager. Two managers behave like two processes.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError('ttl_s must be positive')
        self.directory = Path(directory).expanduser() if directory else default_lease_dir()
        self.ttl_s = ttl_s
        self._prepare_directory()
        self._mutex = threading.RLock()
        self._files: dict[str, _InstanceFiles] = {}
        self._holds: dict[str, _Hold] = {}
        self._heartbeat: Optional[threading.Thread] = None
        self._heartbeat_tick_s = ttl_s / 6
        self._wake = threading.Event()
        self._closed = False

    # ----------------------------------------------------------------- public API

    def acquire(self, instance_id: str, owner: str, operation: str, *,
                ttl_s: Optional[float] = None,
                expected_duration_s: Optional[float] = None) -> Lease:
        """Take the lease now or raise `LeaseBusy` carrying the structured busy answer."""
        outcome = self._acquire_or_busy(instance_id, owner, operation,
                                        ttl_s or self.ttl_s, expected_duration_s)
        if isinstance(outcome, Lease):
            return outcome
        raise LeaseBusy(outcome)

    def try_acquire(self, instance_id: str, owner: str, operation: str, *,
                    ttl_s: Optional[float] = None,
                    expected_duration_s: Optional[float] = None) -> Optional[Lease]:
        """Take the lease now, or return None when another owner holds it."""
        outcome = self._acquire_or_busy(instance_id, owner, operation,
                                        ttl_s or self.ttl_s, expected_duration_s)
        return outcome if isinstance(outcome, Lease) else None

    def who_holds(self, instance_id: str) -> Optional[dict[str, Any]]:
        """The current holder's metadata (plus `expired`), or None when the lease is free."""
        with self._mutex:
            hold = self._holds.get(instance_id)
            if hold is not None:
                return {**hold.metadata(), 'expired': False}
        fd = open_for_reading(self._files_for(instance_id).lock_path)
        if fd is None:
            return None
        try:
            holder = _read_metadata(fd)
            if holder is None:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return {**holder, 'expired': holder['expires_unix_ms'] <= unix_ms()}
            except OSError:
                return None
            return None  # metadata left by a holder that died: nobody holds the lock
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release every hold and close all files (for shutdown and tests)."""
        with self._mutex:
            self._closed = True
            for hold in list(self._holds.values()):
                hold.depth = 1
                self._release(hold)
            for files in self._files.values():
                for fd in (files.lock_fd, files.guard_fd):
                    if fd is not None:
                        os.close(fd)
                files.lock_fd = files.guard_fd = None
        self._wake.set()

    # ----------------------------------------------------------------- acquisition

    def _acquire_or_busy(self, instance_id: str, owner: str, operation: str, ttl_s: float,
                         expected_duration_s: Optional[float]) -> Lease | dict[str, Any]:
        with self._mutex:
            if self._closed:
                raise LeaseError('lease manager is closed')
            hold = self._holds.get(instance_id)
            if hold is not None:
                if hold.owner != owner:
                    return busy_answer(instance_id, hold.metadata())
                hold.depth += 1
                return Lease(self, hold)
            files = self._files_for(instance_id)
            recheck_until = time.monotonic() + UNSETTLED_RECHECK_S
            holder: Optional[dict[str, Any]] = None
            for _ in range(MAX_ACQUIRE_ATTEMPTS):
                fd = self._lock_fd(files)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_metadata(fd)
                    if self._break_if_stale(files, fd, holder, ttl_s):
                        continue
                    if (_is_live_holder(holder, unix_ms())
                            or time.monotonic() > recheck_until):
                        return busy_answer(instance_id, holder)
                    time.sleep(0.001)
                    continue
                try:
                    hold = self._confirm(files, fd, instance_id, owner, operation, ttl_s,
                                         expected_duration_s)
                except BaseException:
                    self._discard_lock_fd(files)  # closing drops the flock we just took
                    raise
                if hold is not None:
                    self._holds[instance_id] = hold
                    self._ensure_heartbeat(ttl_s)
                    return Lease(self, hold)
            return busy_answer(instance_id, holder)

    def _confirm(self, files: _InstanceFiles, fd: int, instance_id: str, owner: str,
                 operation: str, ttl_s: float,
                 expected_duration_s: Optional[float]) -> Optional[_Hold]:
        """Turn a fresh flock into a hold, unless a breaker replaced the file meanwhile."""
        with self._guard(files) as guard_fd:
            if not _same_file(fd, files.lock_path):
                self._discard_lock_fd(files)
                return None
            now_ms = unix_ms()
            hold = _Hold(
                instance_id=instance_id, owner=owner, operation=operation,
                token=_next_token(guard_fd), ttl_s=ttl_s, fd=fd, files=files,
                started_unix_ms=now_ms, expires_unix_ms=now_ms + int(ttl_s * 1000),
                expected_end_unix_ms=(None if expected_duration_s is None
                                      else now_ms + int(expected_duration_s * 1000)))
            hold.write_metadata()
            return hold

    def _break_if_stale(self, files: _InstanceFiles, fd: int,
                        holder: Optional[dict[str, Any]], ttl_s: float) -> bool:
        """Replace the lock file of an expired (hung) holder. True: try acquiring again.

        Stale means: held, and the metadata expired, or there is no valid metadata and the
        file has not been written for a whole TTL (a holder stopped before confirming).
        Decided again under the guard, where holders confirm and renew, so a lease that was
        just taken or renewed is never broken.
        """
        if not self._looks_stale(fd, holder, ttl_s):
            return False
        with self._guard(files):
            if not _same_file(fd, files.lock_path):
                self._discard_lock_fd(files)
                return True
            if not self._looks_stale(fd, _read_metadata(fd), ttl_s):
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)  # the holder went away meanwhile
                return True
            replacement = files.lock_path.with_name(
                f'{files.lock_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
            os.close(_open_private(replacement, os.O_RDWR | os.O_CREAT | os.O_EXCL))
            os.replace(replacement, files.lock_path)
            self._discard_lock_fd(files)
            return True

    @staticmethod
    def _looks_stale(fd: int, holder: Optional[dict[str, Any]], ttl_s: float) -> bool:
        if holder is not None:
            return holder['expires_unix_ms'] <= unix_ms()
        try:
            written = os.fstat(fd).st_mtime
        except OSError:
            return False
        return time.time() - written > ttl_s

    # ----------------------------------------------------------------- holding

    def _check(self, hold: _Hold) -> bool:
        with self._mutex:
            if hold.lost:
                return False
            if not _same_file(hold.fd, hold.files.lock_path):
                self._mark_lost(hold)
                return False
            if time.monotonic() - hold.renewed_at >= hold.ttl_s / 3:
                return self._renew(hold)
            return True

    def _renew(self, hold: _Hold) -> bool:
        """Push the expiry one TTL ahead; detects a lease that was broken meanwhile."""
        with self._mutex:
            if hold.lost or self._holds.get(hold.instance_id) is not hold:
                return not hold.lost
            try:
                with self._guard(hold.files):
                    if not _same_file(hold.fd, hold.files.lock_path):
                        self._mark_lost(hold)
                        return False
                    hold.expires_unix_ms = unix_ms() + int(hold.ttl_s * 1000)
                    hold.write_metadata()
                    hold.renewed_at = time.monotonic()
                    return True
            except (LeaseError, OSError):
                return True  # try again at the next tick; expiry has not passed yet

    def _set_expected_end(self, hold: _Hold, seconds: Optional[float]) -> None:
        with self._mutex:
            if hold.lost or self._holds.get(hold.instance_id) is not hold:
                return
            hold.expected_end_unix_ms = (None if seconds is None
                                         else unix_ms() + int(max(0.0, seconds) * 1000))
            try:
                with self._guard(hold.files):
                    if _same_file(hold.fd, hold.files.lock_path):
                        hold.write_metadata()
            except (LeaseError, OSError):
                pass  # only a hint for busy answers; the next renewal writes it again

    def _mark_lost(self, hold: _Hold) -> None:
        hold.lost = True
        if self._holds.get(hold.instance_id) is hold:
            del self._holds[hold.instance_id]
        if hold.files.lock_fd == hold.fd:
            hold.files.lock_fd = None  # the hold closes its orphaned fd on release

    def _release(self, hold: _Hold) -> None:
        with self._mutex:
            hold.depth -= 1
            if hold.depth > 0:
                return
            if hold.lost:
                os.close(hold.fd)
                return
            del self._holds[hold.instance_id]
            try:
                # An empty file tells readers there is no holder; the flock is the truth.
                os.ftruncate(hold.fd, 0)
                fcntl.flock(hold.fd, fcntl.LOCK_UN)
            except OSError:
                self._discard_lock_fd(hold.files)

    def _ensure_heartbeat(self, ttl_s: float) -> None:
        """Start the renewal thread once; wake it if this hold needs a shorter tick.

        One thread per manager and no signalling on the common path keeps short holds
        cheap: they are released before their first renewal is due.
        """
        if ttl_s / 6 < self._heartbeat_tick_s:
            self._heartbeat_tick_s = ttl_s / 6
            self._wake.set()
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._heartbeat_loop, name='lease-heartbeat', daemon=True)
            self._heartbeat.start()

    def _heartbeat_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._heartbeat_tick_s)
            self._wake.clear()
            with self._mutex:
                due = [hold for hold in self._holds.values()
                       if time.monotonic() - hold.renewed_at >= hold.ttl_s / 3]
            for hold in due:
                self._renew(hold)

    # ----------------------------------------------------------------- files

    def _prepare_directory(self) -> None:
        prepare_directory(self.directory)

    def _files_for(self, instance_id: str) -> _InstanceFiles:
        files = self._files.get(instance_id)
        if files is None:
            stem = lease_file_stem(instance_id)
            files = _InstanceFiles(self.directory / f'{stem}.lock',
                                   self.directory / f'{stem}.guard')
            self._files[instance_id] = files
        return files

    def _lock_fd(self, files: _InstanceFiles) -> int:
        if files.lock_fd is None:
            files.lock_fd = _open_private(files.lock_path)
        return files.lock_fd

    def _discard_lock_fd(self, files: _InstanceFiles) -> None:
        if files.lock_fd is not None:
            try:
                os.close(files.lock_fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
            files.lock_fd = None

    @contextmanager
    def _guard(self, files: _InstanceFiles) -> Iterator[int]:
        """The per-instance guard: confirmations, renewals and breaks never interleave.

        Taken with self._mutex held: flock does not exclude threads sharing one descriptor.
        """
        with self._mutex:
            if files.guard_fd is None:
                files.guard_fd = _open_private(files.guard_path)
            _flock_within(files.guard_fd, GUARD_TIMEOUT_S, f'lease guard {files.guard_path}')
            try:
                yield files.guard_fd
            finally:
                fcntl.flock(files.guard_fd, fcntl.LOCK_UN)


class Lease:
    """One acquisition of an instance's lease. Release it (or use `with`) when done."""

    def __init__(self, manager: LeaseManager, hold: _Hold) -> None:
        self._manager = manager
        self._hold = hold
        self._released = False

    @property
    def instance_id(self) -> str:
        return self._hold.instance_id

    @property
    def owner(self) -> str:
        return self._hold.owner

    @property
    def operation(self) -> str:
        return self._hold.operation

    @property
    def token(self) -> int:
        """Fencing token: larger than every earlier holder's token for this instance."""
        return self._hold.token

    @property
    def lost(self) -> bool:
        """True once the lease is known to have been broken by another process."""
        return self._hold.lost

    def check(self) -> bool:
        """Whether this process still holds the lease, renewing it now if it is due.

        Call it right before each protected operation: a process that was stopped past its
        TTL may have been replaced, and only this check (not the heartbeat) is synchronous.
        """
        return self._manager._check(self._hold)

    def ensure(self) -> None:
        """Raise `LeaseLost` unless `check()` passes."""
        if not self.check():
            raise LeaseLost(f'lease on {self.instance_id} (token {self.token}) was lost')

    def expect_end_in(self, seconds: Optional[float]) -> None:
        """Publish when the operation should end, so busy answers give a useful retry time."""
        self._manager._set_expected_end(self._hold, seconds)

    def release(self) -> None:
        """Give the lease back (idempotent). An inner reentrant release keeps the outer hold."""
        if not self._released:
            self._released = True
            self._manager._release(self._hold)

    def __enter__(self) -> 'Lease':
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f'Lease({self.instance_id!r}, owner={self.owner!r}, token={self.token}, '
                f'lost={self.lost})')

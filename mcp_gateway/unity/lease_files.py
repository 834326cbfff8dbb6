"""The files behind the Unity lease (names, metadata, tokens, safe opening).

Split from `lease.py` (the holding logic and `Lease`), which imports this module and never
the other way round. Everything here treats the lease folder as hostile ground: another
user's folder, a symlink planted in place of the folder or a file, a FIFO that would block a
reader forever, a corrupt or truncated guard file. None of these may hang the gateway or
send fencing tokens backwards.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

LEASE_DIR_ENV = 'SKILL_LANES_LEASE_DIR'
DEFAULT_TTL_S = 30.0
DEFAULT_RETRY_AFTER_MS = 2000
MIN_RETRY_AFTER_MS = 250
MAX_RETRY_AFTER_MS = 30_000
GUARD_TIMEOUT_S = 5.0
# A lock that is held but whose metadata is not (yet) a live holder is usually an acquirer
# between its flock and its confirmation, or a reader probing: look again for this long
# before answering busy.
UNSETTLED_RECHECK_S = 0.02
MAX_ACQUIRE_ATTEMPTS = 64
_METADATA_READ_LIMIT = 64 * 1024
_TOKEN_WIDTH = 20


class LeaseError(Exception):
    """The lease folder or its files cannot be used (permissions, a stuck guard...)."""


class LeaseBusy(LeaseError):
    """Another owner holds the lease. `answer` is the structured busy answer for a caller."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer['message'])
        self.answer = answer


class LeaseLost(LeaseError):
    """This holder's lease expired and was broken by another process (fencing)."""


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


def default_lease_dir() -> Path:
    """`$SKILL_LANES_LEASE_DIR`, else `~/.skill_lanes/leases`.

    Deliberately not under XDG_RUNTIME_DIR: that variable is set for some of a user's
    processes and not others (cron, ssh without pam_systemd, services), and two gateways
    that disagree on the folder would silently stop excluding each other.
    """
    override = os.environ.get(LEASE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / '.skill_lanes' / 'leases'


def lease_file_stem(instance_id: str) -> str:
    """A safe file name for any instance id: readable part plus a hash of the whole id.

    The hash keeps ids distinct that sanitize to the same text (`a/b` and `a_b`).
    """
    readable = re.sub(r'[^A-Za-z0-9._-]+', '_', instance_id).strip('._')[:48] or 'instance'
    digest = hashlib.sha256(instance_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]
    return f'{readable}-{digest}'


def retry_after_ms(holder: Optional[dict[str, Any]], now_ms: Optional[int] = None) -> int:
    """When to retry: the holder's expected end if it gave one, clamped to a sensible range."""
    now_ms = unix_ms() if now_ms is None else now_ms
    expected_end = (holder or {}).get('expected_end_unix_ms')
    wait = expected_end - now_ms if isinstance(expected_end, int) else DEFAULT_RETRY_AFTER_MS
    return max(MIN_RETRY_AFTER_MS, min(MAX_RETRY_AFTER_MS, wait))


def busy_answer(instance_id: str, holder: Optional[dict[str, Any]],
                now_ms: Optional[int] = None) -> dict[str, Any]:
    """The `operation_busy` answer in the shape of unity-mcp PR #1184 (plus a few fields)."""
    holder = holder or {}
    retry_ms = retry_after_ms(holder, now_ms)
    operation = holder.get('operation') or 'unknown'
    owner = holder.get('owner')
    who = f'{owner} (pid {holder.get("pid")})' if owner else 'another process'
    data = {
        'reason': 'operation_busy',
        'instance_id': instance_id,
        'operation': operation,
        'owner': owner,
        'pid': holder.get('pid'),
        'token': holder.get('token'),
        'started_unix_ms': holder.get('started_unix_ms'),
        'expires_unix_ms': holder.get('expires_unix_ms'),
        'expected_end_unix_ms': holder.get('expected_end_unix_ms'),
        'retry_after_ms': retry_ms,
    }
    return {
        'success': False,
        'error': 'operation_busy',
        'message': (f'Unity instance {instance_id} is busy: {operation} held by {who}; '
                    f'retry in about {retry_ms / 1000:.1f} s'),
        'hint': 'retry',
        'data': data,
    }


def _parse_metadata(raw: bytes) -> Optional[dict[str, Any]]:
    """Holder metadata, or None for anything that is not a complete, well-typed record."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ('token', 'pid', 'expires_unix_ms', 'started_unix_ms'):
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool):
            return None
    if not isinstance(data.get('owner'), str) or not isinstance(data.get('operation'), str):
        return None
    return data


def _read_metadata(fd: int) -> Optional[dict[str, Any]]:
    try:
        return _parse_metadata(os.pread(fd, _METADATA_READ_LIMIT, 0))
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _is_live_holder(holder: Optional[dict[str, Any]], now_ms: int) -> bool:
    return (holder is not None and holder['expires_unix_ms'] > now_ms
            and _pid_alive(holder['pid']))


def _same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (a breaker replaces the file to break it)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open a lease file 0600: never through a symlink, never blocking, regular files only.

    O_NONBLOCK keeps a FIFO planted in the folder from blocking the open (and with it the
    gateway's event loop); anything that is not a regular file we own is refused.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise LeaseError(f'cannot open lease file {path}: {exc.strerror or exc}') from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LeaseError(f'lease file {path} is not a regular file')
        if info.st_uid != os.getuid():
            raise LeaseError(f'lease file {path} belongs to another user')
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except LeaseError:
        os.close(fd)
        raise
    except OSError:
        pass
    return fd


def open_for_reading(path: Path) -> Optional[int]:
    """A read-only descriptor on a regular lease file, or None (missing, FIFO, symlink...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def prepare_directory(directory: Path) -> None:
    """Create the folder 0700, or accept it only if it is a real folder this user owns.

    A symlink in place of the folder is refused, not followed: chmod'ing or writing
    through it would act on whatever another user pointed it at.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise LeaseError(
            f'cannot use lease folder {directory}: {exc.strerror or exc}') from None
    if stat.S_ISLNK(info.st_mode):
        raise LeaseError(f'lease folder {directory} is a symlink; refusing to use it '
                         '(set unity.lease_dir to a real folder)')
    if not stat.S_ISDIR(info.st_mode):
        raise LeaseError(f'lease folder {directory} is not a folder')
    if info.st_uid != os.getuid():
        raise LeaseError(f'lease folder {directory} belongs to another user')
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700, follow_symlinks=False)


def _flock_within(fd: int, timeout_s: float, what: str) -> None:
    """Exclusive flock, polling so that a stopped process inside a guard cannot hang us."""
    deadline = time.monotonic() + timeout_s
    pause = 0.0002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LeaseError(f'{what} held by another process for over {timeout_s:.0f} s')
            time.sleep(pause)
            pause = min(pause * 2, 0.01)


def _next_token(guard_fd: int) -> int:
    """The next fencing token (caller holds the guard): above the last one and the clock.

    Tokens are `max(last + 1, now in microseconds)`. The persisted counter alone would restart at 1
    if the guard file were emptied, replaced or corrupted; the clock floor keeps tokens
    growing across that too, and the counter keeps them growing if the clock steps back.
    """
    raw = os.pread(guard_fd, 64, 0)
    try:
        last = max(0, int(raw)) if raw.strip() else 0
    except ValueError:
        last = 0
    token = max(last + 1, time.time_ns() // 1000)
    os.pwrite(guard_fd, b'%0*d\n' % (_TOKEN_WIDTH, token), 0)
    if len(raw) > _TOKEN_WIDTH + 1:
        os.ftruncate(guard_fd, _TOKEN_WIDTH + 1)
    return token


@dataclass
class _InstanceFiles:
    """The two files of one instance and this manager's open descriptors on them."""

    lock_path: Path
    guard_path: Path
    lock_fd: Optional[int] = None
    guard_fd: Optional[int] = None


@dataclass
class _Hold:
    """This process's hold on one instance, shared by reentrant acquisitions."""

    instance_id: str
    owner: str
    operation: str
    token: int
    ttl_s: float
    fd: int
    files: _InstanceFiles
    started_unix_ms: int
    expires_unix_ms: int
    expected_end_unix_ms: Optional[int]
    renewed_at: float = field(default_factory=time.monotonic)
    depth: int = 1
    lost: bool = False

    def metadata(self) -> dict[str, Any]:
        return {
            'instance_id': self.instance_id,
            'operation': self.operation,
            'owner': self.owner,
            'pid': os.getpid(),
            'token': self.token,
            'started_unix_ms': self.started_unix_ms,
            'expires_unix_ms': self.expires_unix_ms,
            'expected_end_unix_ms': self.expected_end_unix_ms,
            'ttl_s': self.ttl_s,
        }

    def write_metadata(self) -> None:
        """Rewrite the metadata in place (caller holds the guard: breakers read under it)."""
        payload = json.dumps(self.metadata(), separators=(',', ':')).encode()
        os.pwrite(self.fd, payload, 0)
        os.ftruncate(self.fd, len(payload))

"""Finding Editors in stdio mode: the status files the MCP for Unity bridge writes.

Status files (`~/.unity-mcp/unity-mcp-status-<hash>.json`, `$UNITY_MCP_STATUS_DIR`) are
rewritten in place every 0.5 s, not atomically, and deleted at a domain reload: a reader
can find a partial, empty or missing file although the Editor is fine. So a read retries
briefly and falls back to the last good read of that file for a short while; only a file
that stays bad is "no Editor". A FIFO or other odd file is skipped, never opened blocking.
"""
from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

STATUS_DIR_ENV = 'UNITY_MCP_STATUS_DIR'
STATUS_FILE_PREFIX = 'unity-mcp-status-'
DEFAULT_PORT = 6400
# A status file younger than this is a live Editor; an older one is kept only if the Editor
# says it is reloading and the file is under RELOADING_KEEP_S old, or if it answers a ping.
FRESH_STATUS_S = 30.0
RELOADING_KEEP_S = 60.0
READ_ATTEMPTS = 3
READ_RETRY_S = 0.01
KEEP_LAST_GOOD_S = 3.0
_MAX_STATUS_BYTES = 64 * 1024
_last_good: dict[Path, tuple[float, 'UnityInstance']] = {}


@dataclass(frozen=True)
class UnityInstance:
    """One Editor: how to reach it and what it last said about itself."""

    instance_id: str
    transport: str = 'stdio'
    host: Optional[str] = None
    port: Optional[int] = None
    project_name: Optional[str] = None
    project_hash: Optional[str] = None
    project_path: Optional[str] = None
    unity_version: Optional[str] = None
    status_file: Optional[Path] = None
    reloading: bool = False
    reason: Optional[str] = None
    status_age_s: Optional[float] = None
    server_url: Optional[str] = None

    @property
    def state(self) -> str:
        return 'reloading' if self.reloading else (self.reason or 'ready')

    def summary(self) -> dict[str, Any]:
        return {
            'instance_id': self.instance_id, 'transport': self.transport,
            'project_name': self.project_name, 'project_path': self.project_path,
            'unity_version': self.unity_version, 'host': self.host, 'port': self.port,
            'server_url': self.server_url, 'state': self.state,
            'status_age_s': (None if self.status_age_s is None
                             else round(self.status_age_s, 1)),
        }


def resolve_status_dir(configured: Optional[str] = None) -> Path:
    """The configured folder, else `$UNITY_MCP_STATUS_DIR`, else `~/.unity-mcp`."""
    chosen = configured or os.environ.get(STATUS_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / '.unity-mcp'


def project_name(project_path: Any, fallback: Any) -> str:
    """The project folder's name from `.../<Name>/Assets`, as the official server names it."""
    if isinstance(project_path, str) and project_path.strip('/\\'):
        root = project_path.rstrip('/\\')
        if root.endswith('Assets'):
            root = root[:-len('Assets')].rstrip('/\\')
        name = root.replace('\\', '/').rsplit('/', 1)[-1]
        if name:
            return name
    return fallback if isinstance(fallback, str) and fallback else 'Unknown'


def _status_age_s(payload: dict[str, Any], mtime: float, now: float) -> float:
    """Age of the Editor's last heartbeat (its ISO timestamp, else the file's mtime)."""
    stamp = payload.get('last_heartbeat')
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.replace('Z', '+00:00'))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return max(0.0, now - moment.timestamp())
        except ValueError:
            pass
    return max(0.0, now - mtime)


def _read_regular(path: Path) -> tuple[float, bytes]:
    """The file's mtime and bytes; OSError for anything but a regular file. Never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f'{path} is not a regular file')
        return info.st_mtime, os.read(fd, _MAX_STATUS_BYTES)
    finally:
        os.close(fd)


def parse_status(path: Path, mtime: float, raw: bytes, host: str,
                 now: float) -> Optional[UnityInstance]:
    """One status file's content as an instance; None if partial, corrupt or incomplete."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    port = payload.get('unity_port', DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    project_hash = path.stem[len(STATUS_FILE_PREFIX):]
    if not project_hash:
        return None
    name = project_name(payload.get('project_path'), payload.get('project_name'))

    def text(key: str) -> Optional[str]:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    return UnityInstance(
        instance_id=f'{name}@{project_hash}', transport='stdio', host=host, port=port,
        project_name=name, project_hash=project_hash, project_path=text('project_path'),
        unity_version=text('unity_version'), status_file=path,
        reloading=payload.get('reloading') is True, reason=text('reason'),
        status_age_s=_status_age_s(payload, mtime, now))


def read_status_file(path: Path, host: str = '127.0.0.1', now: Optional[float] = None,
                     attempts: int = READ_ATTEMPTS) -> Optional[UnityInstance]:
    """Parse one status file, riding out in-place writes.

    A bad read is retried `attempts` times a few ms apart; then the last good read of the
    same file (under KEEP_LAST_GOOD_S old, marked as such by its age) stands in for it.
    """
    for attempt in range(attempts):
        try:
            mtime, raw = _read_regular(path)
        except OSError:
            found = None
        else:
            found = parse_status(path, mtime, raw, host, time.time() if now is None else now)
        if found is not None:
            _last_good[path] = (time.monotonic(), found)
            return found
        if attempt + 1 < attempts:
            time.sleep(READ_RETRY_S)
    remembered = _last_good.get(path)
    if remembered is not None and time.monotonic() - remembered[0] < KEEP_LAST_GOOD_S:
        return remembered[1]
    _last_good.pop(path, None)
    return None


def status_files(status_dir: Path) -> list[Path]:
    """The status files in the folder, plus those read well a moment ago and now missing
    (the Editor deletes its file at a domain reload and writes it again after).
    """
    try:
        found = set(status_dir.glob(f'{STATUS_FILE_PREFIX}*.json'))
    except OSError:
        found = set()
    now = time.monotonic()
    found.update(path for path, (seen, _) in list(_last_good.items())
                 if path.parent == status_dir and now - seen < KEEP_LAST_GOOD_S)
    return sorted(found)

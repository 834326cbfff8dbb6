"""Removing the Fast DDS shared-memory files a run leaves in /dev/shm.

A process killed with SIGKILL (a test, the soak, a crash) cannot remove its segments; they
pile up in /dev/shm. `ShmGuard` remembers what was there at start and, at the end, removes
the new Fast DDS entries that no live process has open or mapped, so it never pulls a
segment from under a process that still uses it.
"""
from __future__ import annotations

import os
from pathlib import Path


def _shm_in_use() -> set[str]:
    """Names under /dev/shm that some process has open or mapped."""
    used: set[str] = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            for line in Path(f'/proc/{pid}/maps').read_text().splitlines():
                if '/dev/shm/' in line:
                    used.add(line.rsplit('/dev/shm/', 1)[1].split()[0])
        except OSError:
            pass
        try:
            for fd in os.listdir(f'/proc/{pid}/fd'):
                try:
                    target = os.readlink(f'/proc/{pid}/fd/{fd}')
                except OSError:
                    continue
                if target.startswith('/dev/shm/'):
                    used.add(target[len('/dev/shm/'):].split()[0])
        except OSError:
            pass
    return used


class ShmGuard:
    """Remembers /dev/shm at start; `clean()` removes new Fast DDS entries nobody uses."""

    def __init__(self) -> None:
        self.before = self._entries()

    @staticmethod
    def _entries() -> set[str]:
        try:
            return set(os.listdir('/dev/shm'))
        except OSError:
            return set()

    def clean(self) -> list[str]:
        new = {n for n in self._entries() - self.before if 'fastrtps' in n or 'fastdds' in n}
        if not new:
            return []
        in_use = _shm_in_use()
        removed = []
        for name in sorted(new - in_use):
            try:
                os.unlink(os.path.join('/dev/shm', name))
                removed.append(name)
            except OSError:
                pass
        return removed

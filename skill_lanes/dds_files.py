"""Fast DDS's shared-memory files in /dev/shm: which process uses which, and dead ports.

A Fast DDS participant on shared memory maps its own segment and one segment per port it
listens on; a port is alive while its lock file (`<port>_el`) exists. Destroying the
participant removes them, but now and then (about one exit in fifty here, under load) a
port's data segment outlives its lock file: a dead port that Fast DDS would only reclaim
the next time something opens that port. `remove_dead_ports` lets an exiting process clear
its own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

SHM = Path('/dev/shm')


def is_fastdds_file(name: str) -> bool:
    """A Fast DDS segment, its lock file or its port mutex (Fast DDS 2: fastrtps_*)."""
    return 'fastrtps' in name or 'fastdds' in name


def shm_of_process(pid: int) -> set[str]:
    """Names under /dev/shm that process `pid` has open or mapped (empty once it is gone)."""
    used: set[str] = set()
    try:
        for line in Path(f'/proc/{pid}/maps').read_text().splitlines():
            if '/dev/shm/' in line:
                used.add(line.rsplit('/dev/shm/', 1)[1].split()[0])
    except OSError:
        pass
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        return used
    for fd in fds:
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if target.startswith('/dev/shm/'):
            used.add(target[len('/dev/shm/'):].split()[0])
    return used


def shm_in_use(but: int = 0) -> set[str]:
    """Names under /dev/shm that some process (other than pid `but`) has open or mapped."""
    used: set[str] = set()
    for pid in os.listdir('/proc'):
        if pid.isdigit() and int(pid) != but:
            used |= shm_of_process(int(pid))
    return used


def remove_dead_ports(names: Iterable[str]) -> list[str]:
    """Remove those port data segments among `names` that are dead and that nobody uses.

    Dead: the lock file `<name>_el` is gone. Only port data segments are candidates; the
    /proc scan runs only when there is one. This process's own mapping does not count: Fast
    DDS unmaps only at exit, and unlinking a mapped file leaves the mapping valid. Returns
    what was removed.
    """
    candidates = [name for name in names
                  if is_fastdds_file(name) and '_port' in name and not name.endswith('_el')
                  and not name.startswith('sem.') and (SHM / name).exists()
                  and not (SHM / f'{name}_el').exists()]
    if not candidates:
        return []
    used = shm_in_use(but=os.getpid())
    removed = []
    for name in candidates:
        if name in used:
            continue
        try:
            (SHM / name).unlink()
            removed.append(name)
        except OSError:
            pass
    return removed

"""A ROS 2 environment of this run's own, and the /dev/shm files it must not leave behind.

- `claim_ros_domain`: a ROS_DOMAIN_ID no other isolated run on this host holds.
- `ros_environment` / `isolate`: that domain plus Fast DDS over loopback UDP only, from the
  XML profile config/fastdds_udp.xml. ROS_AUTOMATIC_DISCOVERY_RANGE is SYSTEM_DEFAULT on
  purpose: with LOCALHOST, rmw_fastrtps installs its own transports (shared memory + UDP) and
  ignores the profile; the profile keeps discovery on this host by itself (bound to
  127.0.0.1, unicast discovery to 127.0.0.1). Fast DDS's shared-memory transport lost
  service answers between processes here on 2 busy cores; UDP never did.
- `ShmGuard`: removes the Fast DDS files that killed processes left in /dev/shm, and the
  LTTng-UST wait area the ROS 2 wheels' tracing library leaves there.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import os
import random
import tempfile
from pathlib import Path
from typing import IO

from skill_lanes.dds_files import (is_fastdds_file, shm_in_use,  # noqa: F401 - re-exported
                                    shm_of_process)

PROFILE_NAME = 'fastdds_udp.xml'


def fastdds_profile() -> Path:
    """The loopback-UDP profile: this checkout's config/, else the installed share folder."""
    local = Path(__file__).resolve().parent.parent / 'config' / PROFILE_NAME
    if local.is_file():
        return local
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('skill_lanes')) / 'config' / PROFILE_NAME


def _profile_variable() -> str:
    """Fast DDS 3 (Kilted on) reads FASTDDS_...; Fast DDS 2 (Jazzy) only FASTRTPS_...."""
    if os.environ.get('ROS_DISTRO') in ('humble', 'jazzy'):
        return 'FASTRTPS_DEFAULT_PROFILES_FILE'
    try:
        importlib.metadata.version('ros-fastrtps')  # the Fast DDS 2.x wheel (Jazzy)
        return 'FASTRTPS_DEFAULT_PROFILES_FILE'
    except importlib.metadata.PackageNotFoundError:
        return 'FASTDDS_DEFAULT_PROFILES_FILE'


def ros_environment(domain: int) -> dict[str, str]:
    """The environment variables of an isolated, loopback-only ROS run on `domain`."""
    return {
        'ROS_DOMAIN_ID': str(domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT',
        _profile_variable(): str(fastdds_profile()),
        'PYTHONUNBUFFERED': '1',
    }


# Variables that would undo the isolation (or its transport choice) if inherited.
_UNSET = ('ROS_STATIC_PEERS', 'ROS_LOCALHOST_ONLY', 'FASTDDS_BUILTIN_TRANSPORTS',
          'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE',
          'RMW_IMPLEMENTATION')


def isolate(domain: int) -> dict[str, str]:
    """Set (and return) `ros_environment(domain)` in os.environ: call before rclpy starts."""
    for name in _UNSET:
        os.environ.pop(name, None)
    env = ros_environment(domain)
    os.environ.update(env)
    return env


def claim_ros_domain(first: int = 1, last: int = 100) -> tuple[int, IO[str]]:
    """A ROS_DOMAIN_ID no other isolated run on this host holds (tests, soak, demo).

    One flock per domain id in the temp folder; the lock is held as long as the returned
    handle lives and the kernel frees it when the process ends. 1..100 is valid everywhere
    and stays away from the default domain 0 a robot on the same host may use.
    """
    count = last - first + 1
    start = random.randrange(count)
    for offset in range(count):
        domain = first + (start + offset) % count
        handle = open(f'{tempfile.gettempdir()}/skill_lanes_ros_domain_{domain}.lock', 'w')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except OSError:
            handle.close()
    raise RuntimeError(f'every ROS domain {first}..{last} is held by another run on this host')


def is_lttng_wait_file(name: str) -> bool:
    """LTTng-UST's wait area (`lttng-ust-wait-<abi>`, `-<abi>-<uid>`): the tracing library
    in the ROS 2 wheels (tracetools) creates it in the first process that imports rclpy on
    a host and every rclpy process maps it; nothing removes it when they end.
    """
    return name.startswith('lttng-ust-wait-')


class ShmGuard:
    """Remembers /dev/shm at start; `clean()` removes what the run added that nobody uses.

    A process killed with SIGKILL (a test, the soak, a crash) cannot remove its Fast DDS
    segments; they would pile up. LTTng-UST's wait area outlives every rclpy process by
    design. Entries some live process still has open or mapped are kept, so a segment is
    never pulled from under a process that uses it; this process's own LTTng mapping does
    not count (it stays valid once unlinked, and the next rclpy process makes a new one).
    """

    def __init__(self) -> None:
        self.before = self._entries()

    @staticmethod
    def _entries() -> set[str]:
        try:
            return set(os.listdir('/dev/shm'))
        except OSError:
            return set()

    def clean(self) -> list[str]:
        """Remove the new, unused Fast DDS and LTTng entries; return their names."""
        new = self._entries() - self.before
        fastdds = {n for n in new if is_fastdds_file(n)}
        lttng = {n for n in new if is_lttng_wait_file(n)}
        if not fastdds and not lttng:
            return []
        unused = (fastdds - shm_in_use()) | (lttng - shm_in_use(but=os.getpid()))
        removed = []
        for name in sorted(unused):
            try:
                os.unlink(os.path.join('/dev/shm', name))
                removed.append(name)
            except OSError:
                pass
        return removed

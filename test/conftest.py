"""Test isolation for every test in this suite, set up before anything imports rclpy.

- A ROS_DOMAIN_ID of this run's own, so parallel runs (or a robot on the same host) never
  see each other's nodes; discovery limited to this machine.
- Every process a test starts goes through `processes` (see support.py) and is stopped.
- Fast DDS over loopback UDP; any shared-memory files this run created in /dev/shm
  are removed at the end all the same.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))



def _claim_domain() -> tuple[int, object]:
    """A ROS domain no other test run on this host holds (an flock per domain id).

    1..100: valid everywhere and away from the default domain 0 a robot may use. The lock is
    held for the whole run and freed by the kernel when this process ends.
    """
    import fcntl
    import random
    start = random.randrange(100)
    for offset in range(100):
        domain = 1 + (start + offset) % 100
        handle = open(f'/tmp/skill_lanes_test_domain_{domain}.lock', 'w')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except OSError:
            handle.close()
    raise RuntimeError('every ROS domain 1..100 is taken by other test runs')


if 'SKILL_LANES_TEST_DOMAIN' not in os.environ:
    _DOMAIN, _DOMAIN_LOCK = _claim_domain()
    os.environ['ROS_DOMAIN_ID'] = str(_DOMAIN)
    os.environ['SKILL_LANES_TEST_DOMAIN'] = str(_DOMAIN)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# Fast DDS's shared-memory transport lost service responses between processes here (about
# one run in three of test_lane_manager.py on 2 cores; never with UDP): loopback UDP only.
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.setdefault('PYTHONUNBUFFERED', '1')

from support import ProcessGroup, shm_entries  # noqa: E402

_SHM_AT_START = shm_entries()


@pytest.fixture
def processes():
    """Start OS processes for one test; all of them are stopped when the test ends."""
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope='session')
def rclpy_context():
    """One rclpy context for in-process nodes of the whole session."""
    rclpy = pytest.importorskip('rclpy')
    if not rclpy.ok():
        rclpy.init()
    yield rclpy
    if rclpy.ok():
        rclpy.shutdown()


def pytest_sessionfinish(session, exitstatus):
    """Remove the Fast DDS files this run left in /dev/shm (killed processes leave them)."""
    ProcessGroup.stop_every_group()
    for name in shm_entries() - _SHM_AT_START:
        if 'fastrtps' in name or 'fastdds' in name:
            try:
                os.unlink(os.path.join('/dev/shm', name))
            except OSError:
                pass

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

if 'SKILL_LANES_TEST_DOMAIN' not in os.environ:
    from lane_manager.runtime import claim_ros_domain
    _DOMAIN, _DOMAIN_LOCK = claim_ros_domain()
    os.environ['ROS_DOMAIN_ID'] = str(_DOMAIN)
    os.environ['SKILL_LANES_TEST_DOMAIN'] = str(_DOMAIN)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# Fast DDS's shared-memory transport lost service responses between processes here (about
# one run in three of test_lane_manager.py on 2 cores; never with UDP): loopback UDP only.
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.setdefault('PYTHONUNBUFFERED', '1')

from lane_manager.shm_guard import ShmGuard  # noqa: E402
from support import ProcessGroup  # noqa: E402

_SHM_GUARD = ShmGuard()


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
    _SHM_GUARD.clean()

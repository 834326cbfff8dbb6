"""Test isolation for every test in this suite, set up before anything imports rclpy.

- A ROS_DOMAIN_ID of this run's own, so parallel runs (or a robot on the same host) never
  see each other's nodes, and Fast DDS over loopback UDP only (no shared memory, nothing
  beyond this host): see skill_lanes_sim.isolation.
- Every process a test starts goes through `processes` (see support.py) and is stopped.
- Any Fast DDS files that killed processes left in /dev/shm, and the LTTng-UST wait area
  the ROS 2 wheels leave there, are removed at the end.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from skill_lanes_sim.isolation import ShmGuard, claim_ros_domain, isolate  # noqa: E402

if 'SKILL_LANES_TEST_DOMAIN' not in os.environ:
    _DOMAIN, _DOMAIN_LOCK = claim_ros_domain()
    os.environ['SKILL_LANES_TEST_DOMAIN'] = str(_DOMAIN)
isolate(int(os.environ['SKILL_LANES_TEST_DOMAIN']))

from support import ProcessGroup  # noqa: E402

_SHM_GUARD = ShmGuard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f'report_{report.when}', report)
    return report


@pytest.fixture
def processes(request):
    """Start OS processes for one test; all of them are stopped when the test ends.
    When the test failed, the end of each process's output goes into the test's report
    (a CI log is often all there is to go on).
    """
    group = ProcessGroup()
    try:
        yield group
    finally:
        report = getattr(request.node, 'report_call', None)
        if report is not None and report.failed:
            for proc in group.procs:
                print(f'\n--- {proc.name} (pid {proc.pid}) output, last 4000 characters ---\n'
                      f'{proc.output()[-4000:]}')
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

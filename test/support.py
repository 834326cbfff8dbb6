"""Helpers shared by the tests (kept under this name: test modules import from here).

The implementations live once in skill_lanes_testing (processes, isolation), shared with the
benches, the soak and the demo.
"""
from __future__ import annotations

from skill_lanes_testing.processes import (PYTHON, ROOT, ManagedProcess,  # noqa: F401
                                           ProcessGroup, wait_until)

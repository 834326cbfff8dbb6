"""Moved to skill_lanes_testing.isolation (a test/dev helper, not product code).

Kept only so imports written before the move keep working; import from
skill_lanes_testing.isolation instead. Remove once nothing imports it.
"""
from skill_lanes_testing.isolation import ShmGuard, shm_in_use  # noqa: F401

_shm_in_use = shm_in_use

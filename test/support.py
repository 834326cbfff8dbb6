"""Helpers shared by the tests (kept under this name: test modules import from here).

The implementations live once in skill_lanes_sim (processes, isolation), shared with the
benches, the soak and the demo.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from skill_lanes_sim.processes import (PYTHON, ROOT, ManagedProcess,  # noqa: F401
                                           ProcessGroup, wait_until)
from skill_lanes_sim.stack import start_sim_robot


@contextmanager
def sim_robot_client(config_file: str | Path, namespace: str, lane_manager_name: str,
                     skills: Sequence[str], stats_lane: Optional[str] = None,
                     group: Optional[ProcessGroup] = None,
                     all_lanes_free: bool = False) -> Iterator[Any]:
    """sim_driver + lane_manager as processes and a RosTestClient that sees both.

    The fixture several test modules need: the robot up, the lane manager's servers
    discovered by this process, every driver seen by the lane manager, and the simulated
    driver's counters arriving for `stats_lane` (so a test can judge at the drivers), and
    with `all_lanes_free` every lane free (every driver's status known). Yields the client;
    stops the processes (of `group`, if given) on the way out.
    """
    from ros_client import RosTestClient
    group = group if group is not None else ProcessGroup()
    client = None
    try:
        start_sim_robot(group, config_file,
                        lane_manager_args=('--ros-args', '-r', f'__node:={lane_manager_name}'))
        client = RosTestClient(namespace=namespace)
        client.wait_for_skills(*skills)
        client.wait_state(lambda s: all(v['driver_available'] for v in s['skills'].values()),
                          20, what='the lane manager to see every driver')
        if all_lanes_free:
            client.wait_state(lambda s: all(lane['holder'] is None and not lane.get('occupants')
                                            for lane in s['lanes'].values()),
                              20, what='every lane free (all drivers known)')
        if stats_lane is not None:
            client.wait_stats(lambda s: stats_lane in s['lanes'], what='sim driver stats')
        yield client
    finally:
        if client is not None:
            client.close()
        group.stop_all()

"""The simulated robot as processes: sim_driver + lane_manager, both up and ready.

One place for what the tests, the demo and the benches each started by hand. Readiness here
is each process's "ready" line; discovery by a particular client (its action clients seeing
the lane manager's servers) is that client's to wait for, since it depends on the client.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from skill_lanes_sim.processes import ManagedProcess, ProcessGroup

READY_TIMEOUT_S = 60.0  # process start on a busy 2-core machine, generous


def start_sim_robot(group: ProcessGroup, config_file: str | Path,
                    log_dir: Optional[Path] = None, env: Optional[dict] = None,
                    lane_manager_args: tuple[str, ...] = ()) -> tuple[ManagedProcess,
                                                                      ManagedProcess]:
    """Start sim_driver and lane_manager on `config_file`; return them once both are ready.

    Both are started before either is waited for, so their start-ups overlap. A process
    that exits early fails with its output (ManagedProcess.wait_for_output).
    """
    sim = group.python('skill_lanes_sim.sim_driver', '--config', str(config_file),
                       name='sim_driver', env=env, log_dir=log_dir)
    manager = group.python('lane_manager.node', '--config', str(config_file),
                           *lane_manager_args, name='lane_manager', env=env, log_dir=log_dir)
    sim.wait_for_output('sim_driver ready', timeout=READY_TIMEOUT_S)
    manager.wait_for_output('lane_manager ready', timeout=READY_TIMEOUT_S)
    return sim, manager

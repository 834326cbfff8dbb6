"""Drivers for a LaneKeeper without ROS: the samples the node would feed it (node._watchdog,
node._periodic_state), for tests that need drivers there, answering and known.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

from lane_manager.driver_presence import ProbeSample
from lane_manager.keeper import LaneKeeper


def answering(keeper: LaneKeeper, drivers: Iterable[str], now: float,
              status_matched: bool = True,
              writers: Optional[Mapping[str, frozenset[bytes]]] = None) -> list:
    """The drivers are on the graph and answer the probe at `now` (their status reader
    matched or not; `writers`: their status writers' gids, if sampled). Twice,
    STATUS_SETTLE_S apart, with the status matched: their status is known (no goals).
    """
    drivers = list(drivers)
    actions: list = []
    for driver in drivers:
        actions += keeper.driver_on_graph(driver, True, now)
    return actions + keeper.look({d: ProbeSample(True, status_matched,
                                                 writers=(writers or {}).get(d))
                                  for d in drivers}, now)

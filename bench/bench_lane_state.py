"""Benchmark: what reading one lane state message costs the gateway, and where it is paid.

The README's lane state example scaled to 3 and 12 lanes, each lane with an empty and with
full recent lists (16 refusals, 16 endings, 16 approval decisions, 8 queued goals: the lane
manager's RECENT_LIMIT). Side by side in one run, per message:
- the subscription callback before typed reading (json.loads on the ROS executor thread)
  and now (LatestLaneState.offer: keeps the text, parses nothing);
- the first read now (json.loads + skill_lanes.lane_state.parse, on the reader's thread: the
  asyncio loop), a read of the same message again (cached), and pydantic's
  model_validate_json alone for comparison.

Usage: python bench/bench_lane_state.py [--reps 200]
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_gateway.lane_state_reader import LatestLaneState  # noqa: E402
from skill_lanes.lane_state import LaneState, parse  # noqa: E402


def readme_example() -> dict:
    text = (ROOT / 'README.md').read_text()
    match = re.search(r'Lane state \(`/lane_manager/lane_state`\):\s*```json\n(.*?)```', text,
                      re.S)
    return json.loads(match.group(1))


def message(lanes: int, full: bool) -> str:
    state = readme_example()
    lane = state['lanes']['motion']
    if full:
        for key, count in (('last_refusals', 16), ('last_endings', 16), ('approvals', 16),
                           ('queue', 8)):
            lane[key] = [copy.deepcopy(lane[key][0]) for _ in range(count)]
    state['lanes'] = {f'lane{i}': copy.deepcopy(lane) for i in range(lanes)}
    return json.dumps(state, separators=(',', ':'))


def median_ms(action: Callable[[], object], reps: int) -> float:
    action()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--reps', type=int, default=200)
    reps = parser.parse_args().reps
    latest = LatestLaneState(lambda text: None, lambda text: None)

    def first_read(text: str) -> None:
        latest.offer(text)
        latest.latest()

    print('| lanes | lists | bytes | callback before (json.loads) | callback now (offer) '
          '| first read now (loads + parse) | read again | model_validate_json |')
    print('|---|---|---|---|---|---|---|---|')
    for lanes in (3, 12):
        for full in (False, True):
            text = message(lanes, full)
            before = median_ms(lambda: json.loads(text), reps)
            offer = median_ms(lambda: latest.offer(text), reps)
            first = median_ms(lambda: first_read(text), reps)
            again = median_ms(latest.latest, reps)
            pydantic_json = median_ms(lambda: LaneState.model_validate_json(text), reps)
            assert parse(json.loads(text)).seq == 42
            print(f"| {lanes} | {'full' if full else 'README'} | {len(text)} | {before:.3f} ms "
                  f'| {offer * 1e3:.1f} µs | {first:.3f} ms | {again * 1e3:.1f} µs '
                  f'| {pydantic_json:.3f} ms |')


if __name__ == '__main__':
    main()

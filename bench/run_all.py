"""Run every skill_lanes benchmark one after another and print all their tables (`make bench`).

Each bench is its own process (own ROS domain, every process it starts is stopped, Fast DDS
files it leaves in /dev/shm removed). A bench that fails or overruns its time budget is
reported and the others still run. Total: about 4 minutes on 2 cores.

Usage: python bench/run_all.py [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    # (script, normal args, --quick args, time budget s)
    ('bench_lease.py', [], ['--rounds', '5000', '--seconds', '1'], 90),
    ('bench_lane_manager.py', [], ['--rounds', '60', '--handoffs', '20', '--reps', '3',
                                   '--bursts', '2'], 170),
    ('bench_gateway.py', [], ['--rounds', '60', '--seconds', '4'], 150),
    ('bench_lifecycle.py', [], ['--rounds', '2'], 120),
    ('bench_schemas.py', [], ['--reps', '2'], 90),
    ('bench_emergency_stop.py', [], ['--rounds', '3'], 60),
    ('bench_big_goal.py', [], ['--points', '50000', '--rounds', '20'], 150),
    ('bench_goal_limits.py', [], ['--points', '50000', '--reps', '3'], 150),
    ('bench_lane_state.py', [], [], 60),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples (about 1.5 min)')
    args = parser.parse_args()
    failures = []
    began = time.monotonic()
    for script, normal, quick, budget in BENCHES:
        print(f'## {script}\n', flush=True)
        started = time.monotonic()
        command = [sys.executable, str(HERE / script), *(quick if args.quick else normal)]
        try:
            # SIGTERM on overrun: the benches stop every process they started on SIGTERM.
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            try:
                out, err = proc.communicate(timeout=budget)
            except subprocess.TimeoutExpired:
                proc.terminate()
                out, err = proc.communicate(timeout=30)
                failures.append(script)
                print(out + f'\n**{script} overran its {budget} s budget and was stopped**\n'
                      + err[-2000:], flush=True)
                continue
        except OSError as exc:
            failures.append(script)
            print(f'**could not run {script}: {exc}**\n', flush=True)
            continue
        print(out.rstrip() + '\n', flush=True)
        if proc.returncode != 0:
            failures.append(script)
            print(f'**{script} failed (exit {proc.returncode})**\n```\n{err[-3000:]}\n```\n',
                  flush=True)
        elif err.strip():
            print('<details><summary>stderr</summary>\n\n```\n' + err[-1500:] + '\n```\n'
                  '</details>\n', flush=True)
        print(f'_{script}: {time.monotonic() - started:.0f} s_\n', flush=True)
    print(f'All benchmarks: {time.monotonic() - began:.0f} s'
          + (f'; FAILED: {", ".join(failures)}' if failures else ''))
    return 1 if failures else 0


if __name__ == '__main__':
    raise SystemExit(main())

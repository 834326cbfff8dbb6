"""Benchmark: our flock lease vs the O_EXCL marker lease of unity-mcp PR #1184.

Same run, same folder type, same payload. Prints a markdown table:
- uncontended acquire+release (median, p99) and the ratio ours / baseline (target <= 1.5);
- 8 processes contending for one instance: throughput and the longest wait for the lease.

The baseline is re-implemented here from the PR's description: create the lease file with
O_CREAT|O_EXCL, write the JSON payload, unlink it on release; an expired file is unlinked
and the create retried.

Usage: python bench/bench_lease.py [--seconds 3] [--rounds 20000] [--processes 8]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_gateway.unity.lease import LeaseManager, lease_file_stem  # noqa: E402

INSTANCE = 'BenchProject@0123abcd'
TTL_S = 120.0


class Held(Protocol):
    def release(self) -> None: ...


class ExclusiveFileLease:
    """The PR #1184 algorithm: an O_EXCL JSON marker per instance, unlinked on release."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def try_acquire(self, instance_id: str, owner: str, operation: str) -> Optional[Held]:
        path = self.directory / f'{lease_file_stem(instance_id)}.json'
        for _ in range(2):
            now_ms = int(time.time() * 1000)
            payload = json.dumps({
                'instance_id': instance_id, 'operation': operation, 'owner': owner,
                'pid': os.getpid(), 'token': secrets.token_hex(8),
                'started_unix_ms': now_ms, 'expires_unix_ms': now_ms + int(TTL_S * 1000),
            }).encode()
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                try:
                    current = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    return None
                if current.get('expires_unix_ms', 0) < now_ms:
                    path.unlink(missing_ok=True)  # the racy stale-unlink of the PR
                    continue
                return None
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
            return _Marker(path)
        return None


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _lease_under_test(algorithm: str, directory: Path):
    return LeaseManager(directory, ttl_s=TTL_S) if algorithm == 'ours' \
        else ExclusiveFileLease(directory)


def uncontended(rounds: int, base: Path) -> dict[str, list[float]]:
    """Alternate blocks of both algorithms so drift in machine load hits both alike."""
    leases = {name: _lease_under_test(name, base / name) for name in ('ours', 'baseline')}
    samples: dict[str, list[float]] = {name: [] for name in leases}
    block = 500
    clock = time.perf_counter_ns
    for _ in range(max(1, rounds // block)):
        for name, lease in leases.items():
            timings = samples[name]
            for _ in range(block):
                started = clock()
                held = lease.try_acquire(INSTANCE, 'bench', 'refresh_unity')
                held.release()  # type: ignore[union-attr]
                timings.append((clock() - started) / 1000)
    return samples


def worker(algorithm: str, directory: Path, seconds: float, out: Path) -> None:
    """One contending process: take the lease, check exclusion, release, repeat."""
    lease = _lease_under_test(algorithm, directory)
    marker = directory.parent / f'{algorithm}.inside'
    acquired = overlaps = 0
    longest_wait = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asked = time.monotonic()
        held = None
        while held is None and time.monotonic() < end:
            held = lease.try_acquire(INSTANCE, f'worker-{os.getpid()}', 'refresh_unity')
            if held is None:
                time.sleep(0.0003)
        if held is None:
            break
        longest_wait = max(longest_wait, time.monotonic() - asked)
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.unlink(marker)
        except FileExistsError:
            overlaps += 1
        acquired += 1
        held.release()
    out.write_text(json.dumps({'acquired': acquired, 'overlaps': overlaps,
                               'longest_wait_s': longest_wait}))


def contended(algorithm: str, processes: int, seconds: float, base: Path) -> dict[str, float]:
    directory = base / f'contended-{algorithm}'
    outputs = [base / f'{algorithm}-{i}.json' for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, __file__, '--worker', algorithm, str(directory),
                               str(seconds), str(out)]) for out in outputs]
    try:
        for proc in procs:
            proc.wait(timeout=seconds + 30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = [json.loads(out.read_text()) for out in outputs]
    return {
        'throughput': sum(r['acquired'] for r in results) / seconds,
        'longest_wait_ms': max(r['longest_wait_s'] for r in results) * 1000,
        'overlaps': sum(r['overlaps'] for r in results),
        'slowest_process_share': min(r['acquired'] for r in results)
        / max(1, max(r['acquired'] for r in results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=20_000)
    parser.add_argument('--seconds', type=float, default=3.0)
    parser.add_argument('--processes', type=int, default=8)
    parser.add_argument('--worker', nargs=4, metavar=('ALGO', 'DIR', 'SECONDS', 'OUT'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        algorithm, directory, seconds, out = args.worker
        worker(algorithm, Path(directory), float(seconds), Path(out))
        return

    with tempfile.TemporaryDirectory(prefix='bench_lease_') as tmp:
        base = Path(tmp)
        samples = uncontended(args.rounds, base)
        median = {name: statistics.median(values) for name, values in samples.items()}
        p99 = {name: statistics.quantiles(values, n=100)[98] for name, values in samples.items()}
        busy = {name: contended(name, args.processes, args.seconds, base)
                for name in ('ours', 'baseline')}

    ratio = median['ours'] / median['baseline']
    print(f'Lease benchmark ({os.cpu_count()} CPUs, {args.rounds} uncontended rounds, '
          f'{args.processes} processes x {args.seconds:.0f} s contended)\n')
    print('| algorithm | uncontended median (us) | p99 (us) | contended acquisitions/s '
          '| longest wait (ms) | slowest/fastest process | overlaps |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, label in (('ours', 'flock lease (ours)'), ('baseline', 'O_EXCL marker (#1184)')):
        stats = busy[name]
        print(f'| {label} | {median[name]:.1f} | {p99[name]:.1f} | '
              f'{stats["throughput"]:.0f} | {stats["longest_wait_ms"]:.1f} | '
              f'{stats["slowest_process_share"]:.2f} | {stats["overlaps"]} |')
    verdict = 'OK' if ratio <= 1.5 else 'ABOVE TARGET'
    print(f'\nmedian ratio ours / baseline: {ratio:.2f} (target <= 1.5: {verdict})')


if __name__ == '__main__':
    main()

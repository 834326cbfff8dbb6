"""The cross-process Unity lease: exclusion, crash and hang recovery, fencing, hygiene."""
from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from mcp_gateway.unity.lease import (
    LEASE_DIR_ENV,
    Lease,
    LeaseBusy,
    LeaseError,
    LeaseManager,
    busy_answer,
    default_lease_dir,
    lease_file_stem,
)
from support import PYTHON, wait_until

INSTANCE = 'Game@0123abcd'

# Holds the lease until killed or until it finds out it lost it.
HOLDER = r"""
import sys, time
from mcp_gateway.unity.lease import LeaseManager
directory, ttl = sys.argv[1], float(sys.argv[2])
lease = LeaseManager(directory, ttl_s=ttl).acquire('Game@0123abcd', 'holder', 'run_tests')
print('HELD', lease.token, flush=True)
while lease.check():
    time.sleep(0.02)
print('LOST', flush=True)
"""

# Acquires and releases in a loop. Inside the lease it creates a marker file with O_EXCL:
# if that fails, two processes were inside at once. Writes its counters as JSON.
HAMMER = r"""
import json, os, sys, time
from mcp_gateway.unity.lease import LeaseManager
directory, marker, out, rounds, seconds, hold_s, ttl = sys.argv[1:8]
rounds, seconds, hold_s = int(rounds), float(seconds), float(hold_s)
manager = LeaseManager(directory, ttl_s=float(ttl))
stats = {'acquired': 0, 'overlaps': 0, 'lost': 0, 'busy': 0, 'tokens': [], 'max_wait_s': 0.0}
end = time.monotonic() + seconds if seconds > 0 else None
while (stats['acquired'] < rounds) if end is None else (time.monotonic() < end):
    asked = time.monotonic()
    while True:
        lease = manager.try_acquire('Game@0123abcd', f'hammer-{os.getpid()}', 'refresh_unity')
        if lease is not None:
            break
        stats['busy'] += 1
        if end is not None and time.monotonic() > end:
            break
        time.sleep(0.0003)
    if lease is None:
        break
    stats['max_wait_s'] = max(stats['max_wait_s'], time.monotonic() - asked)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        inside = True
    except FileExistsError:
        stats['overlaps'] += 1
        inside = False
    if hold_s:
        time.sleep(hold_s)
    if not lease.check():
        stats['lost'] += 1
    if inside:
        os.unlink(marker)
    stats['tokens'].append(lease.token)
    stats['acquired'] += 1
    lease.release()
with open(out, 'w') as f:
    json.dump(stats, f)
print('DONE', flush=True)
"""


@pytest.fixture
def lease_dir(tmp_path: Path) -> Path:
    return tmp_path / 'leases'


def _start_holder(processes, lease_dir: Path, ttl_s: float):
    holder = processes.start([PYTHON, '-c', HOLDER, str(lease_dir), str(ttl_s)], name='holder')
    holder.wait_for_output('HELD')
    return holder


def _start_hammers(processes, lease_dir: Path, count: int, *, rounds: int = 0,
                   seconds: float = 0.0, hold_s: float = 0.0, ttl_s: float = 30.0):
    marker = lease_dir.parent / 'inside.marker'
    outputs = [lease_dir.parent / f'hammer-{i}.json' for i in range(count)]
    procs = [processes.start([PYTHON, '-c', HAMMER, str(lease_dir), str(marker), str(out),
                              str(rounds), str(seconds), str(hold_s), str(ttl_s)],
                             name=f'hammer{i}') for i, out in enumerate(outputs)]
    return procs, outputs


def _collect(procs, outputs, timeout: float = 45.0) -> list[dict]:
    for proc in procs:
        proc.wait_for_output('DONE', timeout=timeout)
    return [json.loads(out.read_text()) for out in outputs]


def test_concurrent_acquire_has_exactly_one_winner(lease_dir: Path) -> None:
    managers = [LeaseManager(lease_dir) for _ in range(8)]
    for round_number in range(30):
        barrier = threading.Barrier(len(managers))
        won: list[Lease] = []

        def contend(manager: LeaseManager, index: int) -> None:
            barrier.wait()
            lease = manager.try_acquire(INSTANCE, f'owner-{index}', 'refresh_unity')
            if lease is not None:
                won.append(lease)

        threads = [threading.Thread(target=contend, args=(m, i)) for i, m in enumerate(managers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, f'round {round_number}: {len(won)} holders'
        won[0].release()
    for manager in managers:
        manager.close()


def test_eight_processes_500_rounds_never_overlap(processes, lease_dir: Path) -> None:
    procs, outputs = _start_hammers(processes, lease_dir, 8, rounds=500)
    stats = _collect(procs, outputs)
    assert sum(s['overlaps'] for s in stats) == 0
    assert sum(s['lost'] for s in stats) == 0
    assert all(s['acquired'] == 500 for s in stats)
    # Every holder got its own token: 4000 distinct tokens.
    tokens = [token for s in stats for token in s['tokens']]
    assert len(set(tokens)) == 8 * 500


def test_sigkilled_holder_frees_the_lease_at_once(processes, lease_dir: Path) -> None:
    holder = _start_holder(processes, lease_dir, ttl_s=60.0)
    manager = LeaseManager(lease_dir)
    with pytest.raises(LeaseBusy) as busy:
        manager.acquire(INSTANCE, 'me', 'refresh_unity')
    assert busy.value.answer['data']['pid'] == holder.pid
    holder.kill()
    # Well within the holder's 60 s TTL: the kernel dropped the dead holder's flock.
    lease = wait_until(lambda: manager.try_acquire(INSTANCE, 'me', 'refresh_unity'),
                       timeout=10, interval=0.001, what='the lease after SIGKILL')
    assert lease.token > busy.value.answer['data']['token']
    lease.release()


def test_hung_holder_loses_after_ttl_and_breakers_never_break_a_fresh_lease(
        processes, lease_dir: Path) -> None:
    ttl_s = 0.6
    holder = _start_holder(processes, lease_dir, ttl_s=ttl_s)
    manager = LeaseManager(lease_dir, ttl_s=ttl_s)
    holder.signal(signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        assert manager.try_acquire(INSTANCE, 'me', 'refresh_unity') is None
        # Four processes race to break the stale lease and then keep taking it for a while,
        # each hold longer than the TTL (so renewal matters) and checked for overlaps.
        procs, outputs = _start_hammers(processes, lease_dir, 4, seconds=2.5, hold_s=0.7,
                                        ttl_s=ttl_s)
        stats = _collect(procs, outputs)
        assert sum(s['overlaps'] for s in stats) == 0
        assert sum(s['lost'] for s in stats) == 0, 'a breaker broke a live holder'
        assert sum(s['acquired'] for s in stats) >= 2
        held_token = int(holder.output().split('HELD', 1)[1].split()[0])
        assert min(token for s in stats for token in s['tokens']) > held_token
        assert time.monotonic() - stopped_at >= ttl_s
    finally:
        holder.signal(signal.SIGCONT)
    holder.wait_for_output('LOST', timeout=10)


def test_renewal_keeps_a_long_holder(lease_dir: Path) -> None:
    holder_manager = LeaseManager(lease_dir, ttl_s=0.3)
    other = LeaseManager(lease_dir, ttl_s=0.3)
    lease = holder_manager.acquire(INSTANCE, 'long', 'run_tests')
    deadline = time.monotonic() + 1.5  # five TTLs
    while time.monotonic() < deadline:
        assert other.try_acquire(INSTANCE, 'other', 'refresh_unity') is None
        time.sleep(0.05)
    assert lease.check() and not lease.lost
    holder = other.who_holds(INSTANCE)
    assert holder is not None and holder['owner'] == 'long' and not holder['expired']
    lease.release()
    assert other.acquire(INSTANCE, 'other', 'refresh_unity').token > lease.token
    holder_manager.close()
    other.close()


def test_reentrant_for_the_same_owner_only(lease_dir: Path) -> None:
    manager, other = LeaseManager(lease_dir), LeaseManager(lease_dir)
    outer = manager.acquire(INSTANCE, 'agent-1', 'run_tests')
    with manager.acquire(INSTANCE, 'agent-1', 'refresh_unity') as inner:
        assert inner.token == outer.token
        with pytest.raises(LeaseBusy) as busy:
            manager.acquire(INSTANCE, 'agent-2', 'refresh_unity')
        assert busy.value.answer['data']['owner'] == 'agent-1'
    # The inner release kept the outer hold.
    assert other.try_acquire(INSTANCE, 'agent-3', 'refresh_unity') is None
    assert outer.check()
    outer.release()
    outer.release()  # idempotent
    assert other.try_acquire(INSTANCE, 'agent-3', 'refresh_unity') is not None


def test_fencing_token_increases_and_persists(lease_dir: Path) -> None:
    tokens, others = [], []
    for _ in range(3):
        manager = LeaseManager(lease_dir)  # a fresh process-like manager every time
        with manager.acquire(INSTANCE, 'a', 'refresh_unity') as lease:
            tokens.append(lease.token)
        with manager.acquire('Other@ffff0000', 'a', 'refresh_unity') as lease:
            others.append(lease.token)  # per instance, growing on its own
        manager.close()
    assert tokens == sorted(set(tokens)) and others == sorted(set(others))


def test_busy_answer_shape_and_retry_after(lease_dir: Path) -> None:
    manager, other = LeaseManager(lease_dir), LeaseManager(lease_dir)
    lease = manager.acquire(INSTANCE, 'agent-1', 'run_tests', expected_duration_s=5.0)
    with pytest.raises(LeaseBusy) as busy:
        other.acquire(INSTANCE, 'agent-2', 'refresh_unity')
    answer = busy.value.answer
    assert answer['success'] is False and answer['error'] == 'operation_busy'
    assert answer['hint'] == 'retry' and 'agent-1' in answer['message']
    data = answer['data']
    assert data['reason'] == 'operation_busy' and data['instance_id'] == INSTANCE
    assert (data['operation'], data['owner'], data['pid']) == ('run_tests', 'agent-1',
                                                              os.getpid())
    assert 4000 <= data['retry_after_ms'] <= 5000
    assert data['expires_unix_ms'] > data['started_unix_ms']
    json.dumps(answer)
    lease.expect_end_in(600)
    assert other.who_holds(INSTANCE)['expected_end_unix_ms'] > data['expected_end_unix_ms']
    with pytest.raises(LeaseBusy) as busy:
        other.acquire(INSTANCE, 'agent-2', 'refresh_unity')
    assert busy.value.answer['data']['retry_after_ms'] == 30_000  # clamped
    lease.release()
    now = 1_000_000
    assert busy_answer('x', None, now)['data']['retry_after_ms'] == 2000
    assert busy_answer('x', {'expected_end_unix_ms': now + 10}, now)['data'][
        'retry_after_ms'] == 250


def test_corrupt_empty_and_foreign_files_never_crash(lease_dir: Path) -> None:
    manager = LeaseManager(lease_dir)
    stem = lease_file_stem(INSTANCE)
    lock_path, guard_path = lease_dir / f'{stem}.lock', lease_dir / f'{stem}.guard'
    (lease_dir / 'README').write_text('not ours')
    (lease_dir / 'unity-mcp-status-x.json').write_text('{')
    for content in (b'', b'\x00\xff garbage', b'{"token": "nope"}', b'[1, 2]',
                    b'{"owner": "x", "operation": "y", "pid": 1, "token": 5, '
                    b'"started_unix_ms": 0, "expires_unix_ms": 99999999999999}'):
        lock_path.write_bytes(content)
        assert manager.who_holds(INSTANCE) is None  # nobody holds the flock
        with manager.acquire(INSTANCE, 'a', 'refresh_unity'):
            pass
    guard_path.write_bytes(b'corrupt counter')
    with manager.acquire(INSTANCE, 'a', 'refresh_unity') as lease:
        assert lease.token > 5  # still increasing after a corrupt counter
        lock_path.write_bytes(b'scribbled over by someone')
        assert LeaseManager(lease_dir).who_holds(INSTANCE) is None
    manager.close()

    # A directory or a planted symlink where a lock file belongs: a clear LeaseError.
    odd = LeaseManager(lease_dir)
    (lease_dir / f'{lease_file_stem("Dir@1")}.lock').mkdir()
    with pytest.raises(LeaseError):
        odd.acquire('Dir@1', 'a', 'refresh_unity')
    assert odd.who_holds('Dir@1') is None
    target = lease_dir.parent / 'elsewhere'
    target.write_text('')
    (lease_dir / f'{lease_file_stem("Link@1")}.lock').symlink_to(target)
    with pytest.raises(LeaseError):
        odd.acquire('Link@1', 'a', 'refresh_unity')


def test_folder_and_file_permissions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.delenv(LEASE_DIR_ENV, raising=False)
    assert default_lease_dir() == tmp_path / 'home' / '.skill_lanes' / 'leases'
    manager = LeaseManager()
    assert manager.directory == default_lease_dir()
    with manager.acquire(INSTANCE, 'a', 'refresh_unity'):
        pass
    assert stat.S_IMODE(manager.directory.stat().st_mode) == 0o700
    files = list(manager.directory.iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    monkeypatch.setenv(LEASE_DIR_ENV, str(tmp_path / 'override'))
    loose = tmp_path / 'override'
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert LeaseManager().directory == loose
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_instance_ids_become_safe_distinct_file_names() -> None:
    ids = ['a/b', 'a_b', '../../etc/passwd', 'Proj@12ab', 'Ünïcode proj@1', '', '.', 'x' * 500]
    stems = [lease_file_stem(i) for i in ids]
    assert len(set(stems)) == len(ids)
    for stem in stems:
        assert '/' not in stem and not stem.startswith('.') and len(stem) <= 64
        assert all(c.isalnum() or c in '._-' for c in stem)


def test_a_descriptor_on_a_broken_lock_file_never_makes_a_second_holder(
        processes, lease_dir: Path) -> None:
    holder = _start_holder(processes, lease_dir, ttl_s=0.3)
    holder.signal(signal.SIGSTOP)
    late = LeaseManager(lease_dir, ttl_s=0.3)
    assert late.try_acquire(INSTANCE, 'late', 'refresh_unity') is None  # opened the old file
    time.sleep(0.4)
    breaker = LeaseManager(lease_dir, ttl_s=5)
    lease = breaker.acquire(INSTANCE, 'breaker', 'refresh_unity')  # breaks the stale lease
    holder.kill()  # frees the flock on the old, replaced file
    assert late.try_acquire(INSTANCE, 'late', 'refresh_unity') is None
    assert lease.check()
    lease.release()
    assert late.try_acquire(INSTANCE, 'late', 'refresh_unity') is not None


def test_a_breaker_with_an_outdated_view_never_breaks_a_renewed_lease(lease_dir: Path) -> None:
    """A breaker reads expired metadata, then the holder renews before the breaker acts.

    Simulated by handing the breaker an expired copy of the metadata: the decision must be
    taken again under the guard, where it sees the renewed expiry.
    """
    holder = LeaseManager(lease_dir, ttl_s=30)
    lease = holder.acquire(INSTANCE, 'holder', 'run_tests')
    breaker = LeaseManager(lease_dir, ttl_s=30)
    assert breaker.try_acquire(INSTANCE, 'breaker', 'refresh_unity') is None
    files = breaker._files_for(INSTANCE)
    outdated = {**holder.who_holds(INSTANCE), 'expires_unix_ms': 0}
    assert breaker._break_if_stale(files, files.lock_fd, outdated, 30) is False
    assert lease.check()
    assert breaker.try_acquire(INSTANCE, 'breaker', 'refresh_unity') is None
    lease.release()

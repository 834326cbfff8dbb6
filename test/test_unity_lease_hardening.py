"""Lease hardening: a hostile or damaged lease folder never hangs the gateway, is never
trusted through a symlink or another user, and never sends fencing tokens backwards.
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from mcp_gateway.unity.lease import LeaseError, LeaseManager, lease_file_stem

INSTANCE = 'Game@0123abcd'


@pytest.fixture
def lease_dir(tmp_path: Path) -> Path:
    return tmp_path / 'leases'


def test_tokens_never_go_backwards_when_the_guard_is_emptied_replaced_or_corrupt(
        lease_dir: Path) -> None:
    guard_path = lease_dir / f'{lease_file_stem(INSTANCE)}.guard'
    last = 0
    for damage in (None, b'', b'garbage\n', b'00000000000000000001\n', None, b'-5'):
        manager = LeaseManager(lease_dir)
        if damage is not None:
            guard_path.unlink()
            guard_path.write_bytes(damage)
        with manager.acquire(INSTANCE, 'a', 'refresh_unity') as lease:
            assert lease.token > last, (damage, lease.token, last)
            last = lease.token
        manager.close()


def test_a_symlinked_or_foreign_lease_folder_is_refused_and_left_alone(
        tmp_path: Path) -> None:
    target = tmp_path / 'someone_elses'
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    link = tmp_path / 'leases'
    link.symlink_to(target)
    with pytest.raises(LeaseError, match='symlink'):
        LeaseManager(link)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # never chmod'ed through the link
    assert list(target.iterdir()) == []
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    with pytest.raises(LeaseError):
        LeaseManager(a_file)
    if os.getuid() == 0:  # only root can give a folder to another user
        foreign = tmp_path / 'foreign'
        foreign.mkdir()
        os.chmod(foreign, 0o777)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(LeaseError, match='another user'):
            LeaseManager(foreign)
        assert stat.S_IMODE(foreign.stat().st_mode) == 0o777  # left alone


def test_a_fifo_in_the_folder_never_blocks_readers_or_acquirers(lease_dir: Path) -> None:
    stem = lease_file_stem(INSTANCE)
    manager = LeaseManager(lease_dir)
    os.mkfifo(lease_dir / f'{stem}.lock')
    outcome: list = []

    def read_and_acquire() -> None:
        outcome.append(manager.who_holds(INSTANCE))
        try:
            manager.acquire(INSTANCE, 'a', 'refresh_unity')
        except LeaseError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=read_and_acquire, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), 'a FIFO in the lease folder blocked the lease'
    assert outcome[0] is None and 'not a regular file' in outcome[1]
    (lease_dir / f'{stem}.lock').unlink()
    os.mkfifo(lease_dir / f'{stem}.guard')
    fresh = LeaseManager(lease_dir)
    with pytest.raises(LeaseError, match='not a regular file'):
        fresh.acquire(INSTANCE, 'a', 'refresh_unity')


def test_a_bad_lease_folder_fails_unity_calls_clearly_not_the_gateway(tmp_path: Path) -> None:
    import anyio

    from mcp_gateway.unity.config import UnityConfig
    from mcp_gateway.unity.tools import UnityTools
    target = tmp_path / 'elsewhere'
    target.mkdir()
    (tmp_path / 'leases').symlink_to(target)
    tools = UnityTools(UnityConfig(enabled=True, lease_dir=str(tmp_path / 'leases'),
                                   status_dir=str(tmp_path / 'status'),
                                   server_url='http://127.0.0.1:9/mcp'), 'gw')
    assert {tool.name for tool in tools.tools()} >= {'unity_refresh'}  # the gateway starts

    async def ignore(*_: object) -> None:
        pass

    async def call(name: str):
        return await tools.call(name, {}, ignore)
    for name in ('unity_instances', 'unity_refresh'):
        result = anyio.run(call, name)
        assert result.is_error, name
        body = result.structured_content
        assert body['error'] in ('lease_unavailable', 'unity_unavailable'), body
    listing = anyio.run(call, 'unity_instances').structured_content
    assert listing['error'] == 'lease_unavailable' and 'symlink' in listing['message']

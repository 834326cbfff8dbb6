"""Finding Editors in stdio mode: status files as the Editor writes them (in place, deleted
at a reload, sometimes stale), and where they live.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fake_unity_editor import FakeUnityEditor
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.discovery import STATUS_DIR_ENV, UnityInstance, resolve_status_dir
from mcp_gateway.unity.instances import Finder


@pytest.fixture
def editor(tmp_path: Path):
    with FakeUnityEditor(tmp_path / 'status', 'Game', status_interval_s=0.05) as fake:
        yield fake


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


async def discover_instances(status_dir: Path) -> list[UnityInstance]:
    return await Finder(UnityConfig(status_dir=str(status_dir), transport='stdio')).instances()


def write_status(directory: Path, project_hash: str, *, port: int, age_s: float = 0.0,
                 reloading: bool = False, name: str = 'Game') -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    beat = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    path = directory / f'unity-mcp-status-{project_hash}.json'
    path.write_text(json.dumps({
        'unity_port': port, 'reloading': reloading,
        'reason': 'reloading' if reloading else 'ready', 'seq': 1,
        'project_path': f'/home/u/{name}/Assets', 'project_name': name,
        'unity_version': '6000.0.0f1', 'last_heartbeat': beat.isoformat()}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_discovery_reads_status_files_and_drops_stale_or_corrupt_ones(tmp_path: Path,
                                                                       editor) -> None:
    status = tmp_path / 'discovery'
    dead_port = _free_port()
    write_status(status, 'aaaa0001', port=40001, name='Fresh')
    write_status(status, 'aaaa0002', port=dead_port, age_s=120, name='Crashed')
    write_status(status, 'aaaa0003', port=40003, age_s=40, reloading=True, name='Reloading')
    write_status(status, 'aaaa0004', port=40004, age_s=90, reloading=True, name='LongGone')
    write_status(status, 'aaaa0005', port=editor.port, age_s=120, name='Busy')  # answers ping
    write_status(status, 'aaaa0006', port=40001, age_s=5, name='OlderSamePort')
    (status / 'unity-mcp-status-bad00001.json').write_text('{"unity_port": ')
    (status / 'unity-mcp-status-bad00002.json').write_text('')
    (status / 'unity-mcp-status-bad00003.json').write_text('[1, 2]')
    (status / 'unity-mcp-status-bad00004.json').write_text('{"unity_port": "6400"}')
    (status / 'unity-mcp-status-bad00005.json').write_bytes(b'\xff\xfe')
    (status / 'unrelated.json').write_text('{}')

    found = {i.instance_id: i for i in asyncio.run(discover_instances(status))}
    assert set(found) == {'Fresh@aaaa0001', 'Reloading@aaaa0003', 'Busy@aaaa0005'}
    assert found['Reloading@aaaa0003'].state == 'reloading'
    assert found['Fresh@aaaa0001'].summary()['state'] == 'ready'
    assert found['Fresh@aaaa0001'].project_name == 'Fresh'
    assert asyncio.run(discover_instances(tmp_path / 'missing')) == []


def test_status_dir_resolution(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(STATUS_DIR_ENV, str(tmp_path / 'env'))
    assert resolve_status_dir() == tmp_path / 'env'
    assert resolve_status_dir(str(tmp_path / 'cfg')) == tmp_path / 'cfg'
    monkeypatch.delenv(STATUS_DIR_ENV)
    monkeypatch.setenv('HOME', str(tmp_path))
    assert resolve_status_dir() == tmp_path / '.unity-mcp'


def test_status_reads_ride_out_in_place_writes_and_never_block(tmp_path: Path) -> None:
    from mcp_gateway.unity.discovery import read_status_file
    status = tmp_path / 'status'
    write_status(status, 'abcd1234', port=6400)
    path = status / 'unity-mcp-status-abcd1234.json'
    good = read_status_file(path)
    assert good is not None and good.port == 6400
    path.write_text('{"unity_port": 64')  # caught mid-write
    assert read_status_file(path) == good  # the last good read stands in, briefly
    path.unlink()  # deleted at a reload
    assert read_status_file(path) == good
    fifo = status / 'unity-mcp-status-fifo0000.json'
    os.mkfifo(fifo)
    assert read_status_file(fifo) is None  # a FIFO is skipped, not opened blocking
    never_seen = status / 'unity-mcp-status-00000000.json'
    never_seen.write_text('{"unity_port": 64')
    assert read_status_file(never_seen) is None

"""The robot build path: colcon builds the package into an install space, and it runs from there.

A robot gets skill_lanes with `colcon build` (Debian/Ubuntu packages `colcon` and
`python3-colcon-ros`), then `source install/setup.bash` and `ros2 run` / `ros2 launch`. This
module does that with the real tools: colcon builds a copy of this checkout (build/, install/
and log/ go to a temporary folder, never into the checkout), and the checks run against the
install space only:

- colcon sees an `ros.ament_python` package (package.xml's build type, read by colcon-ros);
- the four executables are in `lib/skill_lanes/` (where `ros2 run skill_lanes X` looks),
  answer `--help`, and the robot's three nodes start from there on the installed sim config,
  serve one skill call over MCP (the official SDK client on the installed gateway's stdio)
  and stop cleanly on Ctrl-C;
- `share/skill_lanes` has `launch/*.launch.py`, `config/*.yaml` and package.xml, and the ament
  index finds the package (`get_package_share_directory`, as `ros2 launch` does).

What stands in for ROS here: a robot has ROS in /opt/ros/<distro> and its setup.bash puts
its Python packages on PYTHONPATH, its libraries on LD_LIBRARY_PATH and its prefix on
AMENT_PREFIX_PATH. This machine has ROS only as PyPI wheels in the test virtualenv, so that
virtualenv is the underlay: the same three variables point into it (what the wheels'
bootstrapper would set), and then the workspace's own `install/setup.bash` is sourced on top,
as on a robot. The build and the executables run with the interpreter colcon runs with (the
system python3, as on a robot), not the virtualenv's; the ROS wheels are built for CPython
3.11, so a system python of another version skips with that reason. Without colcon (not root,
no apt) the module skips and says why; `make test` installs it with apt-get when it can.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from support import ROOT, ProcessGroup
from test_gateway import assert_succeeded

PACKAGE = 'skill_lanes'
EXECUTABLES = ('lane_manager', 'sim_driver', 'mcp_gateway', 'skill_lanes_demo')
BUILD_TIMEOUT_S = 300.0  # a pure Python package builds in seconds; generous for 2 busy cores
READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 60.0
# Everything that is not the package's sources: virtualenvs, git, caches, node_modules.
NOT_SOURCES = shutil.ignore_patterns('.*', 'node_modules', '__pycache__', '*.egg-info',
                                     'build', 'install', 'log')
# What the test run's environment must not hand to the build or the installed executables:
# they get the underlay below instead, and their own interpreter.
NOT_INHERITED = ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', 'LD_LIBRARY_PATH',
                 'AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'CMAKE_PREFIX_PATH',
                 '_ROS_WHEELS_BOOTSTRAP_COMPLETE', 'PYTEST_CURRENT_TEST')


def _colcon_python() -> str:
    """The interpreter colcon runs with (its script's shebang): it writes the executables'."""
    colcon = shutil.which('colcon')
    if colcon is None:
        pytest.skip('colcon is not installed: `make test` installs it (Debian packages colcon '
                    'and python3-colcon-ros) when run as root where apt-get exists')
    first = Path(colcon).read_text(errors='replace').splitlines()[0]
    if not first.startswith('#!'):
        pytest.skip(f'{colcon} is not a Python script; cannot tell its interpreter')
    return first[2:].strip().split()[0]


def _clean_env() -> dict[str, str]:
    """This run's environment (its ROS domain and discovery) without the virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    venv_bin = str(Path(sys.executable).parent)
    env['PATH'] = os.pathsep.join(p for p in env.get('PATH', '').split(os.pathsep)
                                  if p and Path(p) != Path(venv_bin))
    return env


def _underlay() -> dict[str, str]:
    """What a ROS install's setup.bash sets, pointing at the wheels' virtualenv."""
    site = sysconfig.get_paths()['purelib']
    libs = [str(p) for p in sorted(Path(site).glob('ros_*.libs')) if p.is_dir()]
    return {'PYTHONPATH': site,
            'LD_LIBRARY_PATH': os.pathsep.join(libs + [os.path.join(sys.prefix, 'lib')]),
            'AMENT_PREFIX_PATH': sys.prefix}


def _sourced(setup_bash: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment after `source install/setup.bash`, as a robot's shell has it."""
    out = subprocess.run(['bash', '-c', f'source "{setup_bash}" && env -0'], env=env,
                         capture_output=True, check=True, timeout=60).stdout
    return dict(item.split('=', 1) for item in out.decode().split('\0') if '=' in item)


class Workspace:
    """A colcon workspace with this checkout's package built and installed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.install = root / 'install'
        self.prefix = self.install / PACKAGE
        self.share = self.prefix / 'share' / PACKAGE
        self.lib = self.prefix / 'lib' / PACKAGE
        self.env: dict[str, str] = {}

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """A command in the robot's shell environment, from outside any checkout."""
        return subprocess.run(list(args), env=self.env, cwd=str(self.root), text=True,
                              capture_output=True, timeout=timeout)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Workspace:
    python = _colcon_python()
    build_env = _clean_env()
    version = subprocess.run([python, '-c', 'import sys; print(*sys.version_info[:2])'],
                             env=build_env, capture_output=True, text=True, timeout=60)
    theirs = tuple(int(n) for n in version.stdout.split()) if version.returncode == 0 else ()
    if theirs != tuple(sys.version_info[:2]):
        pytest.skip(f"colcon's python ({python}: {theirs or version.stderr.strip()}) is not "
                    f"CPython {sys.version_info[0]}.{sys.version_info[1]}, the ROS wheels' "
                    'version: the installed executables could not import rclpy')
    ws = Workspace(tmp_path_factory.mktemp('colcon_ws'))
    shutil.copytree(ROOT, ws.root / 'src' / PACKAGE, ignore=NOT_SOURCES)
    listing = subprocess.run(['colcon', 'list', '--base-paths', 'src'], env=build_env,
                             cwd=str(ws.root), capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    if '(ros.' not in listing.stdout:
        pytest.skip(f'colcon does not read package.xml (python3-colcon-ros missing): '
                    f'{listing.stdout.strip()}')
    assert '(ros.ament_python)' in listing.stdout, listing.stdout
    build = subprocess.run(
        ['colcon', '--log-base', str(ws.root / 'log'), 'build', '--base-paths', 'src',
         '--build-base', str(ws.root / 'build'), '--install-base', str(ws.install),
         '--event-handlers', 'console_direct-'],
        env=build_env, cwd=str(ws.root), capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, f'colcon build failed:\n{build.stdout}\n{build.stderr}'
    ws.env = _sourced(ws.install / 'setup.bash', {**build_env, **_underlay()})
    return ws


def test_colcon_sees_an_ament_python_package_and_installs_its_files(workspace):
    for name in EXECUTABLES:
        path = workspace.lib / name
        assert path.is_file() and os.access(path, os.X_OK), f'{path} missing or not executable'
    launch_files = sorted(p.name for p in (workspace.share / 'launch').glob('*.launch.py'))
    configs = sorted(p.name for p in (workspace.share / 'config').glob('*.yaml'))
    assert 'bringup.launch.py' in launch_files, launch_files
    assert 'sim_robot.yaml' in configs and 'robot_example.yaml' in configs, configs
    assert (workspace.share / 'package.xml').is_file()
    marker = workspace.prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    assert marker.is_file(), 'the ament index marker (resource/skill_lanes) is not installed'


def test_the_ament_index_finds_the_installed_package(workspace):
    probe = workspace.run(
        _colcon_python(), '-c',
        'from ament_index_python.packages import get_package_prefix, '
        'get_package_share_directory as share\n'
        'import lane_manager, mcp_gateway\n'
        f'print(get_package_prefix("{PACKAGE}")); print(share("{PACKAGE}"))\n'
        'print(lane_manager.__file__); print(mcp_gateway.__file__)')
    assert probe.returncode == 0, probe.stderr
    prefix, share, lane_manager, mcp_gateway = probe.stdout.split()
    assert Path(prefix) == workspace.prefix
    assert Path(share) == workspace.share
    for module in (lane_manager, mcp_gateway):  # the installed copy, not this checkout
        assert Path(module).is_relative_to(workspace.prefix), module


@pytest.mark.parametrize('name', EXECUTABLES)
def test_each_installed_executable_answers_help(workspace, name):
    answer = workspace.run(str(workspace.lib / name), '--help')
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert answer.stdout.startswith(f'usage: {name}'), answer.stdout + answer.stderr
    assert 'Traceback' not in answer.stderr, answer.stderr


def _free(lane: dict) -> bool:
    return lane['holder'] is None and not lane.get('occupants') and \
        not lane.get('held_because')


def test_the_installed_robot_starts_serves_a_skill_and_stops(workspace, rclpy_context):
    """sim_driver + lane_manager + a stdio gateway, all from the install space."""
    from ros_client import RosTestClient
    config = str(workspace.share / 'config' / 'sim_robot.yaml')
    group = ProcessGroup()
    watcher = None
    try:
        sim = group.start([str(workspace.lib / 'sim_driver'), '--config', config],
                          env=workspace.env, name='installed_sim_driver', cwd=workspace.root)
        manager = group.start([str(workspace.lib / 'lane_manager'), '--config', config],
                              env=workspace.env, name='installed_lane_manager',
                              cwd=workspace.root)
        sim.wait_for_output('sim_driver ready', timeout=READY_TIMEOUT_S)
        manager.wait_for_output('lane_manager ready', timeout=READY_TIMEOUT_S)
        # A lane is held until its driver's goal status is known (README, the status-match
        # rule): call once the lane manager reports `grasp`'s lane free.
        watcher = RosTestClient()
        watcher.wait_state(lambda s: s['skills']['grasp']['driver_available']
                           and _free(s['lanes']['manipulation']),
                           READY_TIMEOUT_S, what='lane manipulation free, driver known')

        async def one_call() -> dict:
            server = StdioServerParameters(
                command=str(workspace.lib / 'mcp_gateway'),
                args=['--config', config, '--transport', 'stdio'],
                env=workspace.env, cwd=str(workspace.root))
            with anyio.fail_after(CALL_TIMEOUT_S):
                async with Client(server) as client:
                    tools = {tool.name for tool in (await client.list_tools()).tools}
                    assert {'navigate', 'grasp', 'inspect'} <= tools, tools
                    return assert_succeeded(await client.call_tool('grasp', {'order': 1}),
                                            'grasp', {'grasp': 'manipulation'})

        answer = anyio.run(one_call)
        assert answer['lane'] == 'manipulation'
        for proc in (manager, sim):
            assert proc.stop() == 0, f'{proc.name} did not stop cleanly:\n{proc.output()}'
    except BaseException:
        for proc in group.procs:
            print(f'--- {proc.name} ---\n{proc.output()[-3000:]}')
        raise
    finally:
        if watcher is not None:
            watcher.close()
        group.stop_all()

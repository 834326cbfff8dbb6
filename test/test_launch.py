"""Launch tests: the stack brought up from launch/bringup.launch.py, used over MCP on HTTP.

They need ROS 2 launch, launch_ros and launch_pytest, which come with a ROS 2 install and are
not on PyPI: where those cannot be imported the whole module is skipped, so the plain
`make test` (wheels-only virtualenv) stays green. launch_pytest needs pytest < 8.4.

The executables are found through the ament index (package skill_lanes, lib/skill_lanes/),
as `ros2 launch` finds them on a robot: build and source the workspace first (colcon), then
`python3 -m pytest test/test_launch.py` here, or `colcon test --packages-select skill_lanes`.
The launch file itself is the one in this checkout. The launched processes inherit this test
run's ROS_DOMAIN_ID and localhost-only discovery from conftest.py.
"""
from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

launch = pytest.importorskip('launch')
if not hasattr(launch, 'LaunchDescription'):
    # Only this checkout's launch/ folder was found (an implicit namespace package).
    pytest.skip('ROS 2 launch is not installed', allow_module_level=True)
pytest.importorskip('launch_ros')
launch_pytest = pytest.importorskip('launch_pytest')
if 'launch_pytest.plugin' not in sys.modules:
    # Importable but not registered as a pytest plugin (e.g. sources only on PYTHONPATH).
    pytest.skip('the launch_pytest pytest plugin is not loaded (try -p launch_pytest.plugin)',
                allow_module_level=True)

from launch import LaunchDescription, LaunchService  # noqa: E402
from launch.actions import (GroupAction, IncludeLaunchDescription,  # noqa: E402
                            RegisterEventHandler, SetLaunchConfiguration)
from launch.event_handlers import OnProcessExit, OnProcessIO, OnProcessStart  # noqa: E402
from launch.launch_description_sources import (  # noqa: E402
    PythonLaunchDescriptionSource, get_launch_description_from_python_launch_file)
from launch_pytest.actions import ReadyToTest  # noqa: E402
from mcp import Client  # noqa: E402

from skill_lanes_sim.isolation import is_fastdds_file, shm_in_use, shm_of_process  # noqa: E402

pytestmark = pytest.mark.launch_test

LAUNCH_FILE = Path(__file__).resolve().parent.parent / 'launch' / 'bringup.launch.py'
READY_TIMEOUT_S = 30.0  # process start + cross-process discovery, on a slow 2-core machine
CALL_TIMEOUT_S = 30.0


class StackLog:
    """Output and exit codes of every process the launch starts, keyed by executable name."""

    def __init__(self) -> None:
        self.output: dict[str, str] = {}
        self.exit_codes: dict[str, int] = {}
        self.param_files: set[str] = set()
        self.pids: dict[str, int] = {}
        self.shm: set[str] = set()

    @staticmethod
    def _name(event) -> str:
        """The executable, after its ROS namespace if it has one: `robot1/lane_manager`."""
        name = os.path.basename(event.cmd[0])
        namespace = next((arg.split(':=', 1)[1].strip('/') for arg in event.cmd
                          if arg.startswith('__ns:=')), '')
        return f'{namespace}/{name}' if namespace else name

    def on_start(self, event, _context) -> None:
        self.pids[self._name(event)] = event.pid
        # launch_ros writes each Node's `parameters` dict to a temp file it never deletes.
        self.param_files.update(arg for prev, arg in zip(event.cmd, event.cmd[1:])
                                if prev == '--params-file' and '/launch_params_' in arg)

    def remove_param_files(self) -> None:
        for path in self.param_files:
            try:
                os.unlink(path)
            except OSError:
                pass

    def on_output(self, event) -> None:
        name = self._name(event)
        self.output[name] = self.output.get(name, '') + event.text.decode(errors='replace')

    def on_exit(self, event, _context) -> None:
        self.exit_codes[self._name(event)] = event.returncode

    def dump(self) -> str:
        return '\n'.join(f'--- {name} (exit {self.exit_codes.get(name, "-")}) ---\n{text[-2000:]}'
                         for name, text in self.output.items())

    async def wait_for_port(self, port: int, timeout: float = READY_TIMEOUT_S) -> None:
        """A "ready" line may come just before the socket listens: wait for a connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection('127.0.0.1', port)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f'nothing listens on 127.0.0.1:{port} after {timeout:.0f} s\n'
                                f'{self.dump()}')
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def wait_for(self, name: str, text: str, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output.get(name, ''):
            if name in self.exit_codes:
                pytest.fail(f'{name} exited ({self.exit_codes[name]}) before printing '
                            f'{text!r}\n{self.dump()}')
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {timeout:.0f} s waiting for {name} to print '
                            f'{text!r}\n{self.dump()}')
            await asyncio.sleep(0.05)


@pytest.fixture
def gateway_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def stack_log():
    log = StackLog()
    yield log
    log.remove_param_files()


@pytest.fixture
def installed_package() -> str:
    """The executables and the default config come from the installed package."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        return get_package_prefix('skill_lanes')
    except PackageNotFoundError:
        pytest.skip('package skill_lanes is not installed where ament_index looks '
                    '(AMENT_PREFIX_PATH): build and source the workspace first')


def include(**arguments: str) -> GroupAction:
    """bringup.launch.py with these arguments, its launch configurations scoped to it."""
    return GroupAction([IncludeLaunchDescription(PythonLaunchDescriptionSource(
        str(LAUNCH_FILE)), launch_arguments=arguments.items())], scoped=True)


def recorded(stack_log: StackLog, *stacks: GroupAction) -> LaunchDescription:
    """These bring-ups, every process's output and exit recorded."""
    return LaunchDescription([
        RegisterEventHandler(OnProcessIO(on_stdout=stack_log.on_output,
                                         on_stderr=stack_log.on_output)),
        RegisterEventHandler(OnProcessStart(on_start=stack_log.on_start)),
        RegisterEventHandler(OnProcessExit(on_exit=stack_log.on_exit)),
        *stacks,
    ])


def bringup(stack_log: StackLog, **arguments: str) -> LaunchDescription:
    """bringup.launch.py with these arguments, every process's output and exit recorded."""
    return recorded(stack_log, include(**arguments))


def run_launch(stack_log: StackLog, **arguments: str) -> int:
    """Run bringup.launch.py to its end; return what `ros2 launch` would exit with."""
    service = LaunchService(argv=[])
    service.include_launch_description(bringup(stack_log, **arguments))
    return service.run(shutdown_when_idle=True)


def action_servers(expected: set[str]) -> set[str]:
    """Every action server on the graph, once `expected` are among them (or after a timeout)."""
    import rclpy
    from rclpy.action import get_action_names_and_types
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('launch_test_probe', context=context)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            names = {name for name, _ in get_action_names_and_types(node)}
            if expected <= names or time.monotonic() > deadline:
                return names
            time.sleep(0.1)
    finally:
        rclpy.shutdown(context=context)


async def call_navigate(port: int, stack_log: StackLog) -> dict:
    """A navigate call over MCP on HTTP; the answer's structured content."""
    await stack_log.wait_for_port(port)
    async with Client(f'http://127.0.0.1:{port}/mcp') as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert 'navigate' in tools, f'tools: {sorted(tools)}'
        assert (tools['navigate'].meta or {}).get('lane') == 'motion'
        result = await asyncio.wait_for(
            client.call_tool('navigate', {'order': 2}), CALL_TIMEOUT_S)
        assert not result.is_error, f'{result}\n{stack_log.dump()}'
        answer = result.structured_content
        assert answer['status'] == 'succeeded' and answer['skill'] == 'navigate', answer
        assert isinstance(answer['result'], dict) and 'sequence' in answer['result'], answer
        return answer


def assert_stopped_cleanly(stack_log: StackLog, names: set[str]) -> None:
    """Each process stopped by itself on the launch's SIGINT, none left running."""
    import psutil
    assert set(stack_log.exit_codes) == names, stack_log.dump()
    for name, code in stack_log.exit_codes.items():
        assert code == 0, f'{name} exited {code}\n{stack_log.dump()}'
    for name, pid in stack_log.pids.items():
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != 'zombie'
        assert not alive, f'{name} (pid {pid}) outlived the launch'
    left = {n for n in stack_log.shm if os.path.exists(f'/dev/shm/{n}')} - shm_in_use()
    assert not left, f'left in /dev/shm: {sorted(left)}'


def record_shm(stack_log: StackLog) -> None:
    """The Fast DDS files the running processes use (none under the suite's UDP profile)."""
    for pid in stack_log.pids.values():
        stack_log.shm |= {n for n in shm_of_process(pid) if is_fastdds_file(n)}
STACK = {'lane_manager', 'sim_driver', 'mcp_gateway'}


@launch_pytest.fixture
def sim_bringup(installed_package, gateway_port, stack_log):
    """bringup.launch.py with sim:=true (default config: the installed sim_robot.yaml)."""
    description = bringup(stack_log, sim='true', port=str(gateway_port))
    return LaunchDescription([description, ReadyToTest()])


@pytest.mark.launch(fixture=sim_bringup)
async def test_sim_bringup_serves_skills_over_http(gateway_port, stack_log):
    for name in sorted(STACK):
        await stack_log.wait_for(name, f'{name} ready')
    await call_navigate(gateway_port, stack_log)
    assert not stack_log.exit_codes, f'a process exited while serving\n{stack_log.dump()}'
    record_shm(stack_log)
    yield
    assert_stopped_cleanly(stack_log, STACK)


@launch_pytest.fixture
def namespaced_bringup(installed_package, gateway_port, stack_log):
    """Two arguments a robot engineer uses: a namespace and a relative config name."""
    description = bringup(stack_log, sim='true', namespace='robot1',
                          config='sim_robot.yaml', log_level='warn', port=str(gateway_port))
    return LaunchDescription([description, ReadyToTest()])


@pytest.mark.launch(fixture=namespaced_bringup)
async def test_namespace_moves_every_interface(gateway_port, stack_log):
    for name in sorted(STACK):
        await stack_log.wait_for(f'robot1/{name}', f'{name} ready')
    expected = {'/robot1/lane_manager/skills/navigate', '/robot1/sim/navigate'}
    names = await asyncio.to_thread(action_servers, expected)
    assert expected <= names, names
    assert not [n for n in names if not n.startswith('/robot1/')], names
    await call_navigate(gateway_port, stack_log)
    record_shm(stack_log)
    yield
    assert_stopped_cleanly(stack_log, {f'robot1/{name}' for name in STACK})


# Both stacks from one config, the same lane and skill names; goals long enough for the other
# robot's goal to be running when a stop button is pressed.
TWO_STACKS_CONFIG = """\
lanes:
  motion: {policy: queue}
skills:
  navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: sim/navigate}
sim:
  default: {duration_s: 6.0, feedback_hz: 5}
"""
ROBOT1, PLAIN = '/robot1', ''
STOP_TIMEOUT_S = 20


@pytest.fixture
def second_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@launch_pytest.fixture
def two_stacks(installed_package, tmp_path, gateway_port, second_port, stack_log):
    """bringup.launch.py twice on one ROS domain: namespace:=robot1, and no namespace."""
    config = tmp_path / 'two_stacks.yaml'
    config.write_text(TWO_STACKS_CONFIG)
    return LaunchDescription([
        # Six processes stopping at once on a loaded 2-core machine: each still has to stop
        # by itself on SIGINT (assert_stopped_cleanly), but gets more than launch's default
        # 5 s before SIGTERM (seen on Jazzy under load: the gateways needed longer).
        SetLaunchConfiguration('sigterm_timeout', str(STOP_TIMEOUT_S)),
        recorded(stack_log,
                 include(sim='true', config=str(config), namespace='robot1',
                         log_level='warn', port=str(gateway_port)),
                 include(sim='true', config=str(config), namespace='',
                         log_level='warn', port=str(second_port))),
        ReadyToTest()])


class SimStats:
    """Each stack's simulated drivers' own counters (`<ns>/sim_driver/stats`): the judge."""

    def __init__(self, namespaces: tuple[str, ...]) -> None:
        import threading
        from functools import partial

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from skill_lanes.interfaces import LANE_STATE_QOS, SIM_STATS_TOPIC
        self.latest: dict[str, dict] = {}
        self._rclpy = rclpy
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node('launch_test_sim_stats', context=self._context)
        for namespace in namespaces:
            self._node.create_subscription(
                String, f'{namespace}/{SIM_STATS_TOPIC}',
                partial(self._on_stats, namespace), LANE_STATE_QOS)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_stats(self, namespace: str, msg) -> None:
        import json
        self.latest[namespace] = json.loads(msg.data)

    def motion(self, namespace: str) -> dict:
        return self.latest.get(namespace, {}).get('lanes', {}).get('motion', {})

    async def wait_for(self, namespace: str, predicate, what: str,
                       timeout: float = CALL_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while not predicate(self.motion(namespace)):
            if time.monotonic() > deadline:
                pytest.fail(f'timed out waiting for {what}: {self.latest}')
            await asyncio.sleep(0.05)
        return self.motion(namespace)

    def close(self) -> None:
        self._executor.shutdown()
        self._node.destroy_node()
        self._rclpy.shutdown(context=self._context)
        self._thread.join(5)


def press_stop(port: int) -> tuple[int, dict]:
    """The lane view's stop button of the gateway on `port`: (HTTP status, answer)."""
    import http.client
    import json
    headers = {'Content-Type': 'application/json', 'X-Skill-Lanes': '1'}
    token = os.environ.get('SKILL_LANES_TOKEN')
    if token:
        headers['Authorization'] = f'Bearer {token}'
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=CALL_TIMEOUT_S)
    try:
        conn.request('POST', '/lanes/motion/stop', body=b'{}', headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


async def navigate(port: int) -> dict:
    """A navigate call over MCP on HTTP, to its end: the answer's structured content."""
    async with Client(f'http://127.0.0.1:{port}/mcp') as client:
        result = await asyncio.wait_for(client.call_tool('navigate', {'order': 2}),
                                        CALL_TIMEOUT_S)
        return result.structured_content or {}


@pytest.mark.launch(fixture=two_stacks)
async def test_each_stop_button_stops_its_own_robot_only(gateway_port, second_port,
                                                         stack_log):
    """Issue #20: robot1's gateway once called `/lane_manager/lanes/motion/stop`, the other
    robot's. Judged at the simulated drivers of each stack.
    """
    ports = {ROBOT1: gateway_port, PLAIN: second_port}
    for prefix in ('robot1/', ''):
        for name in sorted(STACK):
            await stack_log.wait_for(prefix + name, f'{name} ready')
    for port in ports.values():
        await stack_log.wait_for_port(port)
    stats = SimStats(tuple(ports))
    try:
        for namespace in ports:
            await stats.wait_for(namespace, lambda s: s.get('goals') == 0,
                                 f'{namespace or "/"}: sim driver stats')
            # Until a gateway has discovered the stop service its button uses the gateway's
            # own lane_stop tool: press (nothing runs yet) until it reaches a service.
            deadline = time.monotonic() + READY_TIMEOUT_S
            while (await asyncio.to_thread(press_stop, ports[namespace]))[1].get(
                    'via') != 'lane_manager':
                assert time.monotonic() < deadline, f'{namespace}: no stop service reached'
                await asyncio.sleep(0.2)
        canceled = {ROBOT1: 0, PLAIN: 0}
        for turn, (pressed, other) in enumerate(((ROBOT1, PLAIN), (PLAIN, ROBOT1)), start=1):
            calls = {ns: asyncio.create_task(navigate(port)) for ns, port in ports.items()}
            for namespace in ports:
                await stats.wait_for(namespace, lambda s: s.get('goals') == turn and
                                     s.get('active') == 1,
                                     f'{namespace or "/"}: goal {turn} running at its driver')
            status, answer = await asyncio.to_thread(press_stop, ports[pressed])
            assert status == 200 and answer['ok'] and answer['via'] == 'lane_manager', answer
            answers = {ns: await call for ns, call in calls.items()}
            canceled[pressed] += 1
            assert answers[other].get('status') == 'succeeded', (answers, stack_log.dump())
            assert answers[pressed].get('status') != 'succeeded', answers
            assert 'stopped by lane_stop' in str(answers[pressed]), answers
            for namespace in ports:
                counts = await stats.wait_for(namespace, lambda s: s.get('active') == 0,
                                              f'{namespace or "/"}: goal {turn} ended')
                assert counts['goals'] == turn, (namespace, counts)
                assert counts['canceled'] == canceled[namespace], (namespace, counts, answers)
    finally:
        stats.close()
    assert not stack_log.exit_codes, f'a process exited while serving\n{stack_log.dump()}'
    record_shm(stack_log)
    yield
    assert_stopped_cleanly(stack_log, {prefix + name for prefix in ('robot1/', '')
                                       for name in STACK})


def test_launch_arguments_and_defaults():
    description = get_launch_description_from_python_launch_file(str(LAUNCH_FILE))
    defaults = {arg.name: ''.join(s.perform(None) for s in arg.default_value)
                for arg in description.get_launch_arguments()}
    assert defaults == {'config': '', 'sim': 'false', 'namespace': '', 'log_level': 'info',
                        'respawn': 'false', 'respawn_delay': '2.0', 'transport': 'http',
                        'host': '127.0.0.1', 'port': '8765'}


@pytest.mark.parametrize('arguments', [{}, {'config': '/nonexistent/robot.yaml'},
                                       {'config': 'nonexistent.yaml'},
                                       {'sim': 'true', 'transport': 'stdio'}])
def test_unusable_arguments_fail_at_once(arguments, stack_log):
    """No config, a missing file, stdio: an error, and no process is started."""
    assert run_launch(stack_log, **arguments) != 0
    assert not stack_log.output


def test_a_relative_config_is_looked_up_in_the_share_folder(installed_package):
    module = _launch_module()
    share = os.path.join(installed_package, 'share', 'skill_lanes')
    assert module.find_config('sim_robot.yaml', False) == \
        os.path.join(share, 'config', 'sim_robot.yaml')
    with pytest.raises(module.BringupError) as error:
        module.find_config('no_such_robot.yaml', False)
    assert os.path.join(share, 'config', 'no_such_robot.yaml') in str(error.value)
    assert os.path.abspath('no_such_robot.yaml') in str(error.value)


def test_a_required_node_failing_its_config_fails_the_launch(installed_package, tmp_path,
                                                              stack_log):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lanes: {motion: {policy: sometimes}}\nskills: {}\n')
    assert run_launch(stack_log, config=str(bad)) != 0
    assert 'config error' in stack_log.output.get('lane_manager', ''), stack_log.dump()
    assert 'Traceback' not in stack_log.dump(), stack_log.dump()


def _launch_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('bringup_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""The rclpy internals this package relies on (skill_lanes/rclpy_compat.py), checked against
the installed rclpy: run on both distributions (rclpy 7.1 on Jazzy, 9.1 on Kilted).

One test per override asserts that what it needs exists and works with real nodes; others
show that the guard fails loudly when an internal is missing, and that a goal whose id rclpy
does not show is rejected by the lane manager instead of getting a made-up id.
"""
from __future__ import annotations

import textwrap
import threading
import uuid

import pytest
from rclpy.action import ActionClient, ActionServer, GoalResponse
from rclpy.node import Node
from test_msgs.action import Fibonacci

from skill_lanes import rclpy_compat
from skill_lanes.goal_ids import goal_id_msg
from skill_lanes.rclpy_compat import (CLIENT_INSTANCE_INTERNALS, CLIENT_INTERNALS,
                                       SERVER_INTERNALS, SUPPORTED_RCLPY, GoalIdActionServer,
                                       RaceFreeActionClient, RclpyCompatError, check_rclpy,
                                       goal_request_of, missing)
from skill_lanes.runtime import BackgroundExecutor
from support import wait_until


@pytest.fixture
def nodes(rclpy_context):
    """A server node and a client node, spun by one multi-threaded executor."""
    server_node = Node(f'compat_server_{uuid.uuid4().hex[:8]}')
    client_node = Node(f'compat_client_{uuid.uuid4().hex[:8]}')
    spin = BackgroundExecutor(server_node, num_threads=4)
    spin.executor.add_node(client_node)
    try:
        yield server_node, client_node
    finally:
        spin.shutdown()
        client_node.destroy_node()
        server_node.destroy_node()


def send_and_wait(client: ActionClient, goal_id: uuid.UUID):
    wait_until(client.server_is_ready, 20, what='the action server')
    future = client.send_goal_async(Fibonacci.Goal(order=1), goal_uuid=goal_id_msg(goal_id))
    wait_until(future.done, 20, interval=0.005, what='the goal response')
    return future.result()


def test_the_installed_rclpy_is_one_this_was_written_for():
    check = check_rclpy()
    assert check.version is not None, 'no rclpy version in the package metadata'
    assert check.supported, f'rclpy {check.version} is not one of {SUPPORTED_RCLPY}'
    assert check.client_missing == ()


def test_goal_id_server_internals_exist_and_show_the_goal_id(nodes):
    """GoalIdActionServer: the ActionServer methods it overrides and calls exist, and the goal
    callback learns the id the client sent (the (header, request) shape of take_data).
    """
    assert missing(ActionServer, SERVER_INTERNALS) == ()
    server_node, client_node = nodes
    seen: list = []

    def on_goal(goal) -> GoalResponse:
        seen.append(server.goal_id_of(goal))
        return GoalResponse.REJECT

    server = GoalIdActionServer(server_node, Fibonacci, 'compat/goal_ids',
                                execute_callback=lambda handle: Fibonacci.Result(),
                                goal_callback=on_goal)
    client = RaceFreeActionClient(client_node, Fibonacci, 'compat/goal_ids')
    goal_id = uuid.uuid4()
    assert not send_and_wait(client, goal_id).accepted
    assert seen == [str(goal_id)]
    assert server.goal_ids == {}, 'an id outlived its goal request'


def test_race_free_client_internals_exist_and_it_gets_its_answer(nodes):
    """RaceFreeActionClient: the ActionClient methods and instance attributes it touches
    exist, so it uses its own send_goal_async, whose future gets the goal handle.
    """
    assert missing(ActionClient, CLIENT_INTERNALS) == ()
    server_node, client_node = nodes
    ActionServer(server_node, Fibonacci, 'compat/client',
                 execute_callback=lambda handle: (handle.succeed(), Fibonacci.Result())[1])
    client = RaceFreeActionClient(client_node, Fibonacci, 'compat/client')
    assert missing(client, CLIENT_INSTANCE_INTERNALS) == ()
    assert client.race_free
    handle = send_and_wait(client, uuid.uuid4())
    assert handle.accepted


def delete_from_rclpy(monkeypatch, cls: type, name: str) -> None:
    """Remove `name` where the installed rclpy defines it for `cls` (restored afterwards)."""
    owner = next(k for k in cls.__mro__ if name in vars(k))
    monkeypatch.delattr(owner, name)


@pytest.mark.parametrize('name', SERVER_INTERNALS)
def test_a_missing_server_internal_fails_loudly(monkeypatch, name):
    delete_from_rclpy(monkeypatch, ActionServer, name)
    with pytest.raises(RclpyCompatError) as raised:
        check_rclpy()
    message = str(raised.value)
    assert name in message and '7.1 and 9.1' in message


@pytest.mark.parametrize('name', CLIENT_INTERNALS)
def test_a_missing_client_internal_is_reported(monkeypatch, name):
    delete_from_rclpy(monkeypatch, ActionClient, name)
    assert check_rclpy().client_missing == (name,)


def test_a_client_lacking_an_internal_falls_back_to_rclpys_method(nodes, monkeypatch):
    """A missing instance attribute (simulated by asking for one rclpy never had): the client
    says it is not race free and still sends goals, with rclpy's own method.
    """
    monkeypatch.setattr(rclpy_compat, 'CLIENT_INSTANCE_INTERNALS',
                        CLIENT_INSTANCE_INTERNALS + ('_not_in_any_rclpy',))
    server_node, client_node = nodes
    ActionServer(server_node, Fibonacci, 'compat/fallback',
                 execute_callback=lambda handle: (handle.succeed(), Fibonacci.Result())[1])
    client = RaceFreeActionClient(client_node, Fibonacci, 'compat/fallback')
    assert not client.race_free
    assert send_and_wait(client, uuid.uuid4()).accepted


def test_a_goal_request_of_unknown_shape_has_no_id():
    request = Fibonacci.Impl.SendGoalService.Request()
    assert goal_request_of({'goal': (object(), request)}) is request
    assert goal_request_of({'cancel': (object(), object())}) is None
    assert goal_request_of({'goal': request}) is None          # no header: unknown shape
    assert goal_request_of({'goal': (object(), object())}) is None
    assert goal_request_of(None) is None


LANE_CONFIG = textwrap.dedent("""
    lanes:
      motion: {policy: queue, max_queue: 3}
    skills:
      navigate: {lane: motion, action_type: test_msgs/action/Fibonacci, driver: /nobody/home}
    lane_manager: {driver_wait_s: 30.0, driver_lost_s: 3.0}
""")


def test_the_lane_manager_rejects_a_goal_whose_id_rclpy_does_not_show(
        rclpy_context, tmp_path, monkeypatch):
    """If rclpy changed what the server's execute gets, the goal id is unknown: the goal is
    rejected, and nothing is recorded under an id nobody sent (formerly: a random id, and the
    goal queued under it).
    """
    from lane_manager.node import LaneManager
    from ros_client import RosTestClient
    path = tmp_path / 'compat.yaml'
    path.write_text(LANE_CONFIG)
    shapes_seen = threading.Event()

    def unknown_shape(taken_data):
        if 'goal' in taken_data:
            shapes_seen.set()
        return None
    monkeypatch.setattr(rclpy_compat, 'goal_request_of', unknown_shape)
    manager = LaneManager(str(path))
    spin = BackgroundExecutor(manager, num_threads=1)
    client = None
    try:
        client = RosTestClient()
        client.wait_for_skills('navigate', drivers=False)
        call = client.send('navigate')
        assert not call.accepted(), 'a goal was accepted under an id nobody sent'
        assert shapes_seen.is_set()
        state = client.wait_state(lambda s: 'motion' in s['lanes'])
        lane = state['lanes']['motion']
        assert lane['holder'] is None and not lane.get('occupants') and not lane.get('queue')
        assert not lane.get('last_refusals')
    finally:
        if client is not None:
            client.close()
        spin.shutdown()
        manager.cancel_everything()
        manager.destroy_node()

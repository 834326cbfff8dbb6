"""Each lane's goals come in on a thread of the lane's own (lane_manager/goal_intake.py).

The lane manager runs in this process, so that a test can hold one lane's intake thread (as
rclpy converting a big goal does for over a second); the simulated drivers are a separate
process. While lane `busy`'s thread is held, goals of lane `free` must go on, and `busy`'s
goal must wait and then run.
"""
from __future__ import annotations

import textwrap
import threading
import time

import pytest
from action_msgs.msg import GoalStatus
from rclpy.node import Node

from skill_lanes import interfaces
from lane_manager.goal_intake import GoalIntake
from lane_manager.node import LaneManager
from skill_lanes.runtime import BackgroundExecutor
from ros_client import RosTestClient
from support import ProcessGroup, wait_until

CONFIG = textwrap.dedent("""
    lanes:
      busy: {policy: queue, max_queue: 4}
      free: {policy: queue, max_queue: 4}
    skills:
      slow:  {lane: busy, action_type: test_msgs/action/Fibonacci, driver: /sim/slow}
      quick: {lane: free, action_type: test_msgs/action/Fibonacci, driver: /sim/quick}
    lane_manager: {driver_wait_s: 5.0, driver_lost_s: 3.0}
    sim:
      default: {duration_s: 0.2, feedback_hz: 10}
      skills:
        slow: {duration_s: 1.0}
""")
HOLD_LIMIT_S = 60.0  # a held thread lets go by itself, so no test can hang on it


@pytest.fixture(scope='module')
def stack(tmp_path_factory, rclpy_context):
    """sim_driver process; the lane manager and a client in this process."""
    path = tmp_path_factory.mktemp('cfg') / 'intake.yaml'
    path.write_text(CONFIG)
    group = ProcessGroup()
    manager = spin = client = None
    try:
        sim = group.python('skill_lanes_sim.sim_driver', '--config', str(path), name='sim_driver')
        sim.wait_for_output('sim_driver ready')
        manager = LaneManager(str(path))
        spin = BackgroundExecutor(manager, num_threads=1)
        client = RosTestClient()
        client.wait_for_skills('slow', 'quick')
        yield manager, client
    finally:
        if client is not None:
            client.close()
        if spin is not None:
            spin.shutdown()
        if manager is not None:
            manager.cancel_everything()
            manager.destroy_node()
        group.stop_all()


def hold_thread_of(node: Node) -> tuple[threading.Event, threading.Event]:
    """Hold the executor thread spinning `node` until the second event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        timer.cancel()
        held.set()
        release.wait(HOLD_LIMIT_S)
    timer = node.create_timer(0.01, hold)
    assert held.wait(10), 'the timer never ran on that thread'
    return held, release


def test_a_held_lane_intake_stops_only_its_own_lane(stack):
    manager, client = stack
    _, release = hold_thread_of(manager.intake_node('busy'))
    try:
        waiting = client.send('slow')
        for _ in range(3):  # the other lane goes on, goal after goal
            status, _ = client.send('quick').result(timeout=30)
            assert status == GoalStatus.STATUS_SUCCEEDED
        assert not release.is_set()
        assert not waiting._send.done(), 'lane busy took a goal while its thread was held'
    finally:
        release.set()
    status, _ = waiting.result(timeout=30)
    assert status == GoalStatus.STATUS_SUCCEEDED


@pytest.mark.parametrize('big', [True, False], ids=['big goal', 'small goal'])
def test_a_queued_big_goal_is_sent_from_its_lane_thread(stack, monkeypatch, big):
    """A goal queued behind another starts when the driver reports the first one ended,
    told on another thread. A big goal is sent from its lane's thread (the send converts it
    to its wire form), so while that thread is held the driver does not get it; a small one
    goes at once (test_msgs has no big goal type: the threshold is lowered instead).
    """
    if big:
        monkeypatch.setattr(interfaces, 'BIG_GOAL_ELEMENTS', 1)
    manager, client = stack
    first = client.send('slow')
    second = client.send('slow')
    assert first.accepted() and second.accepted()
    _, release = hold_thread_of(manager.intake_node('busy'))
    try:
        running = client.wait_stats(lambda s: s['drivers']['slow']['active'] == 1, 10)
        goals_at_driver = running['drivers']['slow']['goals']
        # (The callers hear nothing meanwhile: the lane's skill server is on that thread.)
        if big:
            client.wait_stats(lambda s: s['drivers']['slow']['active'] == 0, 30)
            client.wait_state(lambda s: (s['lanes']['busy']['holder'] or {}).get('goal_id')
                              == second.id, 10, what='the second goal to hold lane busy')
            time.sleep(0.5)  # had it been sent from another thread, the driver would have it
            assert client.sim_stats['drivers']['slow']['goals'] == goals_at_driver
        else:
            client.wait_stats(lambda s: s['drivers']['slow']['goals'] == goals_at_driver + 1,
                              30)
        assert not release.is_set()
    finally:
        release.set()
    assert first.result(timeout=30)[0] == GoalStatus.STATUS_SUCCEEDED
    assert second.result(timeout=30)[0] == GoalStatus.STATUS_SUCCEEDED
    assert client.sim_stats['drivers']['slow']['goals'] == goals_at_driver + 1


def test_goal_elements_counts_sequences_without_looking_into_them():
    from builtin_interfaces.msg import Duration
    from test_msgs.action import Fibonacci
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    assert interfaces.goal_elements(Fibonacci.Goal(order=3)) == 1
    trajectory = JointTrajectory(joint_names=['a', 'b'])
    header_fields = interfaces.goal_elements(trajectory.header)
    assert header_fields == 3  # stamp.sec, stamp.nanosec, frame_id (empty: one field)
    trajectory.points = [JointTrajectoryPoint(positions=[0.0, 1.0],
                                              time_from_start=Duration(sec=k))
                         for k in range(1500)]
    # header, joint_names (2 entries), points (1500 entries, each not looked into)
    assert interfaces.goal_elements(trajectory) == header_fields + 2 + 1500
    assert interfaces.is_big_goal(trajectory)
    trajectory.points = trajectory.points[:10]
    assert not interfaces.is_big_goal(trajectory)


def test_run_here_runs_work_on_the_intake_thread_in_call_order(rclpy_context):
    parent = Node('intake_parent')
    intake = GoalIntake(parent, 'extra')
    try:
        ran: list[tuple[int, int]] = []
        inline: list[bool] = []
        intake.start()

        def nested() -> None:  # called from the intake's own thread: runs at once
            done = []
            intake.run_here(lambda: done.append(True))
            inline.append(bool(done))

        for k in range(50):
            intake.run_here(lambda k=k: ran.append((k, threading.get_ident())))
        intake.run_here(nested)
        wait_until(lambda: len(ran) == 50 and inline, 10, what='the work to run')
        assert [k for k, _ in ran] == list(range(50))
        threads = {ident for _, ident in ran}
        assert len(threads) == 1 and threading.get_ident() not in threads
        assert inline == [True]
    finally:
        intake.destroy()
        parent.destroy_node()

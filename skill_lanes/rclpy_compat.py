"""Every use of rclpy's private internals, in one place, checked against the installed rclpy.

Two rclpy classes are overridden, each because rclpy's public API cannot do what is needed
(see README "ROS 2 behaviour this package works around"):

- `GoalIdActionServer`: rclpy hands an action server's goal callback only the goal message,
  but the lane manager must key a refusal by goal id (a ROS rejection carries no reason).
  It reads the id from the request that `ActionServer.execute` receives
  (`taken_data['goal'] == (request header, SendGoal request)`).
- `RaceFreeActionClient`: rclpy's `ActionClient.send_goal_async` can lose the goal response
  under a multi-threaded executor; the override sends and registers through the client's
  private handle and tables.

Written for rclpy 7.1 (Jazzy) and 9.1 (Kilted). What each override needs is listed in
`SERVER_INTERNALS` / `CLIENT_INTERNALS` / `CLIENT_INSTANCE_INTERNALS` and checked when this
module is imported (`check_rclpy`), and per client when one is made. The decision per
override, when an internal is missing:

- the server: importing fails with `RclpyCompatError` naming what is missing and the
  versions this was written for. There is no public way to learn a goal's id in the goal
  callback, and a made-up id would record refusals under an id nobody asked for. At run
  time, a goal request whose shape is not the known one gets no id, and the lane manager
  rejects that goal with a logged error (`goal_id_of` returns None): an id is never invented.
- the client: rclpy's own `send_goal_async` is used, with a warning. That is rclpy's public
  API and correct except for the race; the gateway cancels by id any goal whose answer does
  not come, so a lost answer costs a retry, never a goal running unseen.

An rclpy version other than 7.1 / 9.1 with every internal present is used with a warning:
the checks here, not the version number, decide whether the overrides can work.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import rclpy.logging
from rclpy.action import ActionClient, ActionServer
from rclpy.task import Future
from rclpy.waitable import Waitable

SUPPORTED_RCLPY = ('7.1', '9.1')

# What GoalIdActionServer relies on, on the ActionServer class: `execute` is the Waitable
# entry point that gets `take_data`'s dict, and `_execute_goal_request` takes the
# (header, request) pair and calls the goal callback with `request.goal` itself.
SERVER_INTERNALS = ('execute', 'take_data', '_execute_goal_request')

# What RaceFreeActionClient.send_goal_async touches: methods on the ActionClient class ...
CLIENT_INTERNALS = ('execute', 'add_future', '_remove_pending_goal_request',
                    '_generate_random_uuid')
# ... and attributes every ActionClient instance gets in its __init__.
CLIENT_INSTANCE_INTERNALS = ('_action_type', '_client_handle', '_pending_goal_requests',
                             '_goal_sequence_number_to_goal_id', '_feedback_callbacks')

_WAITABLE_STUBS = ('execute', 'take_data')
_LOGGER = 'skill_lanes.rclpy_compat'


class RclpyCompatError(ImportError):
    """The installed rclpy lacks an internal an override needs: this package cannot run."""


@dataclass(frozen=True)
class RclpyCheck:
    """What `check_rclpy` found."""

    version: Optional[str]          # the installed rclpy's version, None: unknown
    supported: bool                 # its major.minor is one of SUPPORTED_RCLPY
    client_missing: tuple[str, ...]  # CLIENT_INTERNALS the installed ActionClient lacks


def installed_rclpy_version() -> Optional[str]:
    """The installed rclpy's version: the `rclpy` distribution (colcon, apt, PyPI wheels),
    else the PyPI wheel's own name `ros-rclpy`; None when neither has metadata.
    """
    for name in ('rclpy', 'ros-rclpy'):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return None


def missing(owner: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names of `names` that `owner` (a class or an instance) does not have. `execute`
    and `take_data` count as missing when only Waitable's abstract stubs are there: the
    overrides rely on what ActionServer's and ActionClient's own versions do.
    """
    cls = owner if isinstance(owner, type) else type(owner)

    def has(name: str) -> bool:
        if not hasattr(owner, name):
            return False
        return name not in _WAITABLE_STUBS or getattr(cls, name) is not getattr(Waitable, name)
    return tuple(name for name in names if not has(name))


def _written_for(version: Optional[str]) -> str:
    return (f'written for rclpy {" and ".join(SUPPORTED_RCLPY)}, installed: '
            f'{version or "unknown version"}')


def check_rclpy(server_cls: type = ActionServer, client_cls: type = ActionClient,
                version: Optional[str] = None) -> RclpyCheck:
    """Check the installed rclpy (or the classes given) for what the overrides need.

    Raises RclpyCompatError when the server lacks an internal (see the module docstring);
    logs a warning for an unsupported version or a client lacking an internal.
    """
    version = version or installed_rclpy_version()
    supported = version is not None and '.'.join(version.split('.')[:2]) in SUPPORTED_RCLPY
    logger = rclpy.logging.get_logger(_LOGGER)
    server_missing = missing(server_cls, SERVER_INTERNALS)
    if server_missing:
        raise RclpyCompatError(
            f'rclpy ActionServer lacks {", ".join(server_missing)}, which the lane manager '
            f"needs to learn a goal's id ({_written_for(version)})")
    if not supported:
        logger.warning(f'skill_lanes was {_written_for(version)}: its rclpy overrides found '
                       'the internals they need, but are untested with this version')
    client_missing = missing(client_cls, CLIENT_INTERNALS)
    if client_missing:
        logger.warning(f'rclpy ActionClient lacks {", ".join(client_missing)} '
                       f"({_written_for(version)}): RaceFreeActionClient uses rclpy's own "
                       'send_goal_async, whose goal response can be lost under a '
                       'multi-threaded executor')
    return RclpyCheck(version, supported, client_missing)


CHECK = check_rclpy()


class GoalIdActionServer(ActionServer):
    """An ActionServer whose goal callback can learn the goal id (`goal_id_of`).

    `execute` sees the whole request, so it records which id each goal message belongs to
    while rclpy runs the goal callback on that very message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.goal_ids: dict[int, str] = {}
        super().__init__(*args, **kwargs)

    def goal_id_of(self, goal: Any) -> Optional[str]:
        """The id of the goal message the goal callback was given, None (logged as an error)
        when rclpy did not show it: the caller must then reject the goal, never invent one.
        """
        goal_id = self.goal_ids.get(id(goal))
        if goal_id is None:
            rclpy.logging.get_logger(_LOGGER).error(
                f'rejecting a goal whose id rclpy did not show ({_written_for(CHECK.version)})')
        return goal_id

    async def execute(self, taken_data: Any) -> None:
        request = goal_request_of(taken_data)
        if request is None:
            await super().execute(taken_data)
            return
        self.goal_ids[id(request.goal)] = str(uuid.UUID(bytes=bytes(request.goal_id.uuid)))
        try:
            await super().execute(taken_data)
        finally:
            self.goal_ids.pop(id(request.goal), None)


def goal_request_of(taken_data: Any) -> Optional[Any]:
    """The SendGoal request in what `ActionServer.take_data` returned, or None: there is none,
    or it does not have the shape rclpy 7.1 and 9.1 give it (logged as an error).
    """
    if not isinstance(taken_data, dict) or 'goal' not in taken_data:
        return None
    taken = taken_data['goal']
    request = taken[1] if isinstance(taken, tuple) and len(taken) == 2 else None
    if request is None or not hasattr(request, 'goal') or not hasattr(request, 'goal_id'):
        rclpy.logging.get_logger(_LOGGER).error(
            f'a goal request arrived as {type(taken).__name__}, not (header, request): its '
            f'goal id is unknown and the goal will be rejected ({_written_for(CHECK.version)})')
        return None
    return request


class RaceFreeActionClient(ActionClient):
    """rclpy's ActionClient whose goal response always reaches the returned future.

    rclpy 9.1 (Kilted) registers the goal-response future under its lock, then replaces it,
    outside the lock, with a second future that it returns (ros2/rclpy#1123); rclpy 7.1
    (Jazzy) has no lock and registers the future only after sending. Either way, when another
    executor thread takes the response first, it is dropped or set on the wrong future: the
    goal runs but its sender never learns it was accepted. Feedback registered after sending
    can be lost the same way.

    Here the feedback callback and the one future are registered before anyone can handle the
    response: sending and registering happen under `_send_lock`, and `execute` passes that
    lock before it handles a goal response. rclpy's own `_lock` is taken too where the
    installed rclpy has one. If the installed rclpy lacks an internal this relies on
    (`CLIENT_INTERNALS`, `CLIENT_INSTANCE_INTERNALS`), the stock `send_goal_async` is used and
    a warning says so (see the module docstring).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # rclpy 9.1 adds the client to its node's waitables before it creates `_lock`, which
        # `get_num_entities` takes: an executor spinning in another thread meanwhile raises
        # AttributeError (seen in the benchmark). A lock from the start closes that window.
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        lacking = CHECK.client_missing or missing(self, CLIENT_INSTANCE_INTERNALS)
        self.race_free = not lacking
        if lacking and not CHECK.client_missing:
            rclpy.logging.get_logger(_LOGGER).warning(
                f'this rclpy ActionClient lacks {", ".join(lacking)} '
                f'({_written_for(CHECK.version)}): using its own send_goal_async, whose goal '
                'response can be lost under a multi-threaded executor')

    def send_goal_async(self, goal: Any, feedback_callback: Any = None,
                        goal_uuid: Any = None) -> Future:
        """Send a goal; the returned future gets the goal handle (see the class docstring)."""
        if not self.race_free:
            return super().send_goal_async(goal, feedback_callback, goal_uuid)
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError(f'expected {self._action_type.Goal}, got {type(goal)}')
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = self._generate_random_uuid() if goal_uuid is None else goal_uuid
        request.goal = goal
        if feedback_callback is not None:
            self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
        future: Future = Future()
        rclpy_lock = getattr(self, '_lock', None) or contextlib.nullcontext()
        with self._send_lock, rclpy_lock:
            sequence_number = self._client_handle.send_goal_request(request)
            if sequence_number in self._pending_goal_requests:
                raise RuntimeError(f'sequence {sequence_number} conflicts with a pending goal')
            self._pending_goal_requests[sequence_number] = future
            self._goal_sequence_number_to_goal_id[sequence_number] = request.goal_id
            future.add_done_callback(self._remove_pending_goal_request)
            self.add_future(future)
        return future

    async def execute(self, taken_data: Any) -> None:
        """Handle what the executor took; a goal response only once its sender registered."""
        if self.race_free and 'goal' in taken_data:
            with self._send_lock:
                pass  # the send that this response answers has registered its future
        await super().execute(taken_data)

"""The typed lane state (skill_lanes/lane_state.py) against what is really published.

- Every lane the keeper's state machine reaches (queues, preemptions, adopted and external
  goals, unknown drivers, unhonoured cancels, releases) snapshots into a `Lane` with no key
  the model does not declare.
- Every message a real lane manager process publishes while goals run, queue, are refused,
  preempted and cancelled validates the same way.
- The README's lane-state example is a valid message, and the `lanes_status` tool declares
  the model's schema as its output.
"""
from __future__ import annotations

import json
import re
import textwrap
import threading
import types
import typing
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant
from pydantic import BaseModel

from lane_manager.agents import AgentBook
from skill_lanes.lane_state import (Lane, LaneState, Occupant, Refusal, UndeclaredKey,
                                     _no_undeclared, json_schema, parse, validate_published)
from test_keeper import KeeperMachine

ROOT = Path(__file__).resolve().parent.parent


class SnapshotMachine(KeeperMachine):
    """The keeper's adversarial machine, checking every snapshot against the model."""

    @invariant()
    def snapshot_is_typed(self):
        if not hasattr(self, 'keeper'):
            return
        lanes = AgentBook().join(self.keeper.snapshot(self.now, 1.7e9))
        for name, lane in lanes.items():
            _no_undeclared(Lane.model_validate(lane), f'lanes.{name}')


SnapshotMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_keeper_snapshots_are_typed = SnapshotMachine.TestCase


def test_an_undeclared_or_mistyped_key_is_named():
    state = json.loads(_readme_example())
    state['lanes']['motion']['holder']['colour'] = 'blue'
    with pytest.raises(UndeclaredKey, match=r'lanes\.motion\.holder: .*colour'):
        validate_published(state)
    assert parse(state).lanes['motion'].holder.model_extra == {'colour': 'blue'}  # readers
    state['lanes']['motion']['holder'].pop('colour')
    state['lanes']['motion']['counters']['started'] = 'six'
    with pytest.raises(ValueError, match='started'):
        validate_published(state)


def _readme_example() -> str:
    text = (ROOT / 'README.md').read_text()
    match = re.search(r'Lane state \(`/lane_manager/lane_state`\):\s*```json\n(.*?)```', text,
                      re.S)
    assert match, 'README: the lane state example is gone'
    return match.group(1)


def test_readme_example_is_a_valid_lane_state():
    validate_published(json.loads(_readme_example()))


def _readme_empty_records() -> dict:
    """The README's second lane-state block: the records its example leaves empty."""
    text = (ROOT / 'README.md').read_text()
    match = re.search(r'The records the example leaves empty:.*?```json\n(.*?)```', text, re.S)
    assert match, 'README: the block of records the lane state example leaves empty is gone'
    return json.loads(match.group(1))


def _records(annotation: Any) -> list[type[BaseModel]]:
    """The record classes an annotation holds (Optional[X], list[X], dict[str, X], X)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict:
        args = args[1:]
    return [record for arg in args for record in _records(arg)]


def _keys_shown(value: Any, annotation: Any, shown: dict[type, set[str]]) -> None:
    """Every key the JSON `value` shows, by the record class the model reads it as."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:  # Optional[X]
        _keys_shown(value, args[0], shown)
    elif origin is list and isinstance(value, list):
        for item in value:
            _keys_shown(item, args[0], shown)
    elif origin is dict and isinstance(value, dict):  # a map: its keys are names
        for item in value.values():
            _keys_shown(item, args[1], shown)
    elif (isinstance(annotation, type) and issubclass(annotation, BaseModel)
          and isinstance(value, dict)):
        shown.setdefault(annotation, set()).update(value)
        for key, item in value.items():
            if key in annotation.model_fields:
                _keys_shown(item, annotation.model_fields[key].annotation, shown)


def _all_records(record: type[BaseModel], seen: Optional[set] = None) -> set[type]:
    seen = set() if seen is None else seen
    seen.add(record)
    for field in record.model_fields.values():
        for inner in _records(field.annotation):
            if inner not in seen:
                _all_records(inner, seen)
    return seen


def test_the_readme_documents_every_declared_key_and_no_other():
    """The README's lane-state reference (its example, and the block of records the example
    leaves empty) against the model, both ways: every key it shows is declared where it
    shows it, and every key the model declares, of every record, is shown somewhere.
    """
    empty = _readme_empty_records()
    for occupant in empty['occupants']:
        _no_undeclared(Occupant.model_validate(occupant), 'occupants[]')
    for refusal in empty['last_refusals']:
        _no_undeclared(Refusal.model_validate(refusal), 'last_refusals[]')
    shown: dict[type, set[str]] = {}
    _keys_shown(json.loads(_readme_example()), LaneState, shown)
    _keys_shown(empty, Lane, shown)
    undeclared = {f'{record.__name__}.{key}' for record, keys in shown.items()
                  for key in keys - set(record.model_fields)}
    assert not undeclared, f'README shows keys the model does not declare: {sorted(undeclared)}'
    undocumented = {f'{record.__name__}.{name}' for record in _all_records(LaneState)
                    for name in record.model_fields if name not in shown.get(record, ())}
    assert not undocumented, ('keys the README lane-state reference does not show: '
                              f'{sorted(undocumented)}')


def test_lanes_status_declares_the_lane_state_schema():
    from mcp_gateway.tool_defs import builtin_tools
    tool = next(t for t in builtin_tools(['navigate'], ['motion']) if t.name == 'lanes_status')
    schema = tool.output_schema
    body = json_schema()
    for key in body['required']:
        assert key in schema['properties'] or any(
            key in alt.get('properties', {}) for alt in schema.get('oneOf', [])
            + schema.get('anyOf', [])), key


CONFIG = textwrap.dedent("""
    lanes:
      base:  {policy: queue, max_queue: 1}
      arm:   {policy: preempt}
      tools: {policy: reject}
    skills:
      drive:   {lane: base, action_type: test_msgs/action/Fibonacci, driver: /lsm/drive}
      reach:   {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /lsm/reach}
      retract: {lane: arm, action_type: test_msgs/action/Fibonacci, driver: /lsm/retract,
                priority: 5}
      probe:   {lane: tools, action_type: test_msgs/action/Fibonacci, driver: /lsm/probe,
                limits: {order: {max: 10}}}
      fetch:   {lanes: [base, arm], action_type: test_msgs/action/Fibonacci,
                driver: /lsm/fetch}
      look:    {action_type: test_msgs/action/Fibonacci, driver: /lsm/look}
    sim:
      default: {duration_s: 1.5, feedback_hz: 10}
""")


def test_every_published_lane_state_is_typed(tmp_path, rclpy_context):
    from std_msgs.msg import String
    from test_msgs.action import Fibonacci

    from skill_lanes.interfaces import LANE_STATE_QOS
    from support import sim_robot_client
    path = tmp_path / 'robot.yaml'
    path.write_text(CONFIG)
    seen: list[str] = []
    lock = threading.Lock()

    def keep(msg: String) -> None:
        with lock:
            seen.append(msg.data)
    with sim_robot_client(path, '/lane_manager', 'lane_manager',
                          ('drive', 'reach', 'retract', 'probe', 'fetch', 'look'),
                          all_lanes_free=True) as client:
        sub = client.node.create_subscription(String, '/lane_manager/lane_state', keep,
                                              LANE_STATE_QOS)
        drive, queued, full = client.send('drive'), client.send('drive'), client.send('drive')
        reach = client.send('reach')
        assert reach.accepted()
        retract = client.send('retract')  # preempts reach
        probe, busy = client.send('probe'), client.send('probe')
        look = client.send('look')
        too_far = client.send('probe', Fibonacci.Goal(order=11))
        assert not full.accepted() and not busy.accepted() and not too_far.accepted()
        queued.cancel()
        fetch = client.send('fetch')  # waits for both lanes
        for call in (drive, retract, probe, look, fetch, reach):
            call.result(timeout=60)
        client.wait_state(lambda s: all(lane['holder'] is None for lane in s['lanes'].values())
                          and s['lanes']['arm']['last_endings'], what='every lane free')
        client.node.destroy_subscription(sub)
    with lock:
        messages = list(seen)
    import os
    if os.environ.get('DUMP_LANE_STATE'):
        Path(os.environ['DUMP_LANE_STATE']).write_text('\n'.join(messages))
    assert len(messages) > 5
    kinds = set()
    for data in messages:
        state = validate_published(json.loads(data))
        for lane in state.lanes.values():
            kinds |= {'holder'} if lane.holder else set()
            kinds |= {'queue'} if lane.queue else set()
            kinds |= {'refusal'} if lane.last_refusals else set()
            kinds |= {'limits'} if any(r.limit for r in lane.last_refusals) else set()
            kinds |= {e.outcome for e in lane.last_endings}
    assert {'holder', 'queue', 'refusal', 'limits', 'succeeded', 'canceled'} <= kinds, kinds

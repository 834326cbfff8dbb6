"""The raw GoalStatusArray decoder agrees with rclpy's own serialization, for any list."""
from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from lane_manager.status_wire import decode_status_array

entries = st.lists(st.tuples(st.binary(min_size=16, max_size=16), st.integers(0, 2**31 - 1),
                             st.integers(0, 10**9 - 1), st.integers(0, 6)),
                   max_size=40, unique_by=lambda e: e[0])


@settings(max_examples=200, deadline=None)
@given(entries)
def test_decoder_matches_rclpy_serialization(items):
    from action_msgs.msg import GoalStatus, GoalStatusArray
    from rclpy.serialization import serialize_message
    msg = GoalStatusArray()
    for raw_id, sec, nanosec, code in items:
        status = GoalStatus(status=code)
        status.goal_info.goal_id.uuid = list(raw_id)
        status.goal_info.stamp.sec, status.goal_info.stamp.nanosec = sec, nanosec
        msg.status_list.append(status)
    expected = {str(uuid.UUID(bytes=raw_id)): code for raw_id, _, _, code in items}
    assert decode_status_array(serialize_message(msg)) == expected


def test_decoder_keeps_active_and_wanted_entries_only():
    from action_msgs.msg import GoalStatus, GoalStatusArray
    from rclpy.serialization import serialize_message
    msg = GoalStatusArray()
    ids = [uuid.uuid4() for _ in range(4)]
    for goal_id, code in zip(ids, (2, 4, 5, 3)):
        status = GoalStatus(status=code)
        status.goal_info.goal_id.uuid = list(goal_id.bytes)
        msg.status_list.append(status)
    decoded = decode_status_array(serialize_message(msg), wanted={ids[2].bytes})
    assert decoded == {str(ids[0]): 2, str(ids[2]): 5, str(ids[3]): 3}

"""Decode a serialized action_msgs/GoalStatusArray without building Python messages.

Why: an action server keeps finished goals in its status list until their results expire
(rclpy: 15 min), so each status message of a busy driver carries hundreds of entries, three
messages per goal. Deserializing them into Python objects on the lane manager's one executor
thread cost more than the goal relay itself; reading the CDR bytes directly costs a fraction.
Checked against rclpy's own serialization in test/test_status_wire.py.

Layout (XCDR1, little or big endian, alignment relative to the byte after the 4-byte
encapsulation header): uint32 count; per entry: uint8[16] uuid, int32 sec + uint32 nanosec
(4-aligned), int8 status.
"""
from __future__ import annotations

import struct
import uuid
from typing import Container, Optional

from lane_manager.goal_lifecycle import ACTIVE_STATUSES

_HEADER = 4


def decode_status_array(data: bytes, wanted: Optional[Container[bytes]] = None,
                        active: Container[int] = ACTIVE_STATUSES) -> dict[str, int]:
    """{goal id (canonical UUID text): status code} of a serialized GoalStatusArray.

    With `wanted` (raw 16-byte ids), only active entries and wanted ones are decoded: a busy
    driver's list is mostly finished goals nobody asks about any more.
    """
    if len(data) < _HEADER + 4:
        return {}
    endian = '<' if data[1] & 1 else '>'
    (count,) = struct.unpack_from(endian + 'I', data, _HEADER)
    offset = 4  # relative to _HEADER
    out: dict[str, int] = {}
    for _ in range(count):
        start = _HEADER + offset
        offset += 16
        offset += (-offset) % 4      # Time is 4-aligned
        offset += 8
        status = data[_HEADER + offset]
        offset += 1
        status = status if status < 128 else status - 256
        goal_id = bytes(data[start:start + 16])
        if wanted is None or status in active or goal_id in wanted:
            out[str(uuid.UUID(bytes=goal_id))] = status
    return out

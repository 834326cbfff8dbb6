"""Goal ids as every process of the stack spells them: the canonical UUID string, and the
unique_identifier_msgs/UUID the action protocol carries. One helper pair, so the lane
manager, the gateway, the simulated driver and the tests never disagree on an id.
"""
from __future__ import annotations

import uuid
from typing import Any

from unique_identifier_msgs.msg import UUID

__all__ = ['goal_id_msg', 'goal_id_text']


def goal_id_text(uuid_msg: Any) -> str:
    """The goal id as the canonical UUID string, the same in every process."""
    return str(uuid.UUID(bytes=bytes(uuid_msg.uuid)))


def goal_id_msg(goal_id: str | uuid.UUID) -> UUID:
    """The goal id (text or uuid.UUID) as the unique_identifier_msgs/UUID the action
    protocol carries: the inverse of goal_id_text.
    """
    value = goal_id if isinstance(goal_id, uuid.UUID) else uuid.UUID(goal_id)
    return UUID(uuid=list(value.bytes))

"""The gateway's copy of the lane manager's lane state: the newest valid message, typed.

The lane manager publishes its lane state (std_msgs/String JSON, `<ns>/lane_state`) on every
change. Every reader in the gateway (refusal and ending lookups, approvals, `lanes_status`,
the lane-state resource, the lane view) reads one `LaneStateMessage`: the message as
published (`body`, what `lanes_status`, the resource and the lane view answer, unknown keys
of a newer lane manager included) and the same message typed (`model`,
skill_lanes.lane_state.LaneState, what the lookups read by attribute).

Parsed lazily, once per message, by its first reader; never in the subscription callback.
Decoding and validating a message costs 0.1-0.5 ms with 3 lanes and up to 2.5 ms with 12
lanes of full refusal/ending/approval lists (bench/bench_lane_state.py: the README's lane
state example scaled; the JSON decoding alone is a third of it). The callback runs on the
gateway's one-thread ROS executor, which also relays every goal answer and feedback: there it
only keeps the text.
The lane manager publishes on every change (a burst of goals: hundreds a second), while
readers read far less often (a lookup every 20 ms while a refused or ended call waits for
its record, one keep-alive per progress interval, the lane view every poll): a message
superseded before anyone reads it is never parsed.

A message that does not parse (not JSON, or a wrong type: an incompatible lane manager) is
kept out: the last valid message stays the state, and with none yet, readers see no state.
It is logged once (the first of a run of refused messages, naming the key path and the
problem), then counted until a valid one arrives, so a lane manager publishing every second
does not flood the log. Unknown keys are no error (skill_lanes.lane_state.parse keeps them).

Pure Python, no ROS import.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydantic import ValidationError

from skill_lanes.lane_state import LaneState, parse


@dataclass(frozen=True)
class LaneStateMessage:
    """One valid lane state message: as published, and typed."""

    body: dict[str, Any]
    model: LaneState


def refusal_text(exc: Exception) -> str:
    """One line saying why a lane state message was refused (`lanes.arm.queue: ...`)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        first = errors[0]
        where = '.'.join(str(part) for part in first['loc']) or 'the message'
        more = f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''
        return f"{where}: {first['msg']}{more}"
    if isinstance(exc, RecursionError):
        return 'nested too deeply to decode'
    return f'not JSON: {exc}'[:200]


class LatestLaneState:
    """The newest valid lane state message; `offer` from the subscription, `latest` to read.

    Thread-safe: `offer` (the ROS executor's thread) only swaps a reference under a lock;
    `latest` parses outside that lock, one reader at a time, so a parse never blocks the
    executor and messages are taken in the order they arrived.
    """

    def __init__(self, warn: Callable[[str], None], info: Callable[[str], None]) -> None:
        self._warn = warn
        self._info = info
        self._lock = threading.Lock()        # offer vs. take: held for a swap only
        self._parse_lock = threading.Lock()  # one parse at a time, in arrival order
        self._pending: Optional[str] = None  # received, not parsed yet
        self._current: Optional[LaneStateMessage] = None
        self._heard = False
        self._refused_run = 0                # refused messages since the last valid one
        self.refused = 0                     # refused messages in all

    def offer(self, text: str) -> None:
        """A message arrived (the subscription callback): kept, not parsed."""
        with self._lock:
            self._pending = text
            self._heard = True

    @property
    def heard(self) -> bool:
        """Whether any message arrived, valid or not (the lane manager sees our readers)."""
        with self._lock:
            return self._heard

    def latest(self) -> Optional[LaneStateMessage]:
        """The newest valid message (parsing the newest arrival first), or None."""
        with self._parse_lock:
            with self._lock:
                text, self._pending = self._pending, None
                current = self._current
            if text is None:
                return current
            try:
                body = json.loads(text)
                message = LaneStateMessage(body, parse(body))
            except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
                self._refuse(text, exc, current)
                return current
            if self._refused_run:
                self._info(f'lane state: a valid message again, after {self._refused_run} '
                           'refused one(s)')
                self._refused_run = 0
            with self._lock:
                self._current = message
            return message

    def _refuse(self, text: str, exc: Exception, current: Optional[LaneStateMessage]) -> None:
        self.refused += 1
        self._refused_run += 1
        if self._refused_run > 1:
            return
        kept = (f'keeping the last valid one (seq {current.model.seq})' if current is not None
                else 'no lane state until a valid one arrives')
        self._warn(f'lane state message refused ({refusal_text(exc)}; from '
                   f'{_sender(text)}): {kept}; refused messages are not logged again until a '
                   'valid one arrives (an incompatible lane manager?)')


def _sender(text: str) -> str:
    """The `node` and `seq` a refused message names, if it says (it may be anything)."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return 'unknown sender'
    if not isinstance(body, dict):
        return 'unknown sender'
    return f"node {str(body.get('node'))[:100]!r}, seq {str(body.get('seq'))[:20]}"

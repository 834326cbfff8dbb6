"""MCP progress for a running goal: every feedback, and a keep-alive while none comes."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Optional

from mcp_gateway.ros_json import to_json

ReportProgress = Callable[[float, Optional[float], Optional[str]], Awaitable[None]]


def describe_feedback(feedback: Any, limit: int = 160) -> str:
    text = json.dumps(to_json(feedback), separators=(',', ':'))
    return text if len(text) <= limit else text[:limit - 3] + '...'


class ProgressPump:
    """MCP progress for one call: every feedback, and a keep-alive while none comes.

    Progress must increase, so it counts reports; clients time out silent calls (often after
    60 s), so a quiet goal still reports every `interval_s`, saying why it waits when it does
    (`waiting`: a goal awaiting an operator's approval).
    """

    def __init__(self, report: ReportProgress, skill: str, interval_s: float,
                 waiting: Callable[[], Optional[str]] = lambda: None) -> None:
        self._report = report
        self._waiting = waiting  # why the goal waits, if it does (awaiting approval)
        self._skill = skill
        self._interval = interval_s
        self._count = 0
        self._pending: asyncio.Queue = asyncio.Queue()
        self._started = time.monotonic()

    def feedback(self, feedback: Any) -> None:
        self._pending.put_nowait((False, f'{self._skill}: {describe_feedback(feedback)}'))

    def note(self, message: str) -> None:
        self._pending.put_nowait((True, message))

    async def run(self) -> None:
        while True:
            try:
                is_note, message = await asyncio.wait_for(self._pending.get(), self._interval)
            except asyncio.TimeoutError:
                why = self._waiting()
                is_note, message = False, (f'{self._skill}: {why}' if why else (
                    f'{self._skill}: still running '
                    f'({time.monotonic() - self._started:.0f} s)'))
            # Coalesce a burst of feedback into one notification; a note (such as the
            # acceptance, which names the goal id) is never replaced by later feedback.
            while not is_note and not self._pending.empty():
                is_note, message = self._pending.get_nowait()
            self._count += 1
            try:
                await self._report(float(self._count), None, message)
            except Exception:  # the client went away: the call itself will be cancelled
                return

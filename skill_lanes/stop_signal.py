"""Ctrl-C and SIGTERM as one orderly stop, for every skill_lanes executable.

A signal only records the request (and wakes whoever waits for it); no exception is ever
raised at a random place. The lane manager and the simulated driver wait for it on their
main thread (`wait`, skill_lanes/runtime.py); the gateway `arm`s it with what a stop does
on its event loop (mcp_gateway/main.py), and a request that came earlier (during start-up)
then takes effect at once: asyncio's own Ctrl-C handling could lose a stop that came during
start-up, and SIGTERM's default would kill the process without any clean-up.

No ROS import: the gateway installs it on the first line of main, before the slow imports.
"""
from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Callable, Optional


class StopSignal:
    """SIGINT and SIGTERM, from construction on: both request the same orderly stop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._stop: Optional[Callable[[], None]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal API
        self.event.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a stop was requested (True) or `timeout` passed (False)."""
        return self.event.wait(timeout)

    def arm(self, stop: Callable[[], None]) -> None:
        """From now on a signal calls `stop` on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        if self.requested:
            stop()

    def disarm(self) -> None:
        """Clean-up has begun: later signals change nothing."""
        self._stop = None

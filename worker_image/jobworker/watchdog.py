"""The event-loop watchdog: a handler that blocks the loop stalls claims, heartbeats and results alike."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("jobworker.worker")
STEP = 0.25
UNHEALTHY_FOR = 30.0
"""Seconds /healthz stays unhealthy after a lag over the bound."""


class LoopWatchdog:
    """Measures how late the event loop wakes a sleeper; ``lagging`` for 30 s after a lag over ``max_lag``."""

    def __init__(self, max_lag: float) -> None:
        self.max_lag = max_lag
        self.loop_lag = 0.0
        self._lagging_until = 0.0

    @property
    def lagging(self) -> bool:
        return time.monotonic() < self._lagging_until

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(STEP)
            self.loop_lag = time.monotonic() - before - STEP
            if self.loop_lag > self.max_lag:
                log.error("event loop blocked for %.1fs (a handler blocking it?); /healthz is unhealthy", self.loop_lag)
                self._lagging_until = time.monotonic() + UNHEALTHY_FOR

"""Shutdown: stop claiming, let running jobs finish within the grace period, return what never started,
keep writing results until the grace period ends, then deregister.

Results are kept (and retried, e.g. while the database is down) until the grace period ends. What is still
unwritten then is lost: its jobs stay locked until the stale-worker sweep recovers them, and run again
(at-least-once). A second stop (a second SIGTERM) cuts every wait to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobworker.finisher import Finisher
    from jobworker.local_queue import LocalQueue
    from jobworker.runner import JobRunner

log = logging.getLogger("jobworker.worker")
FORCED_GRACE = 2.0
"""Seconds a forced stop still gives results to be written."""


class Shutdown:
    """Owns the stop request: ``stopping``, and ``forced`` once a second stop (or ``force``) came."""

    def __init__(self) -> None:
        self.stopping = False
        self.forced = asyncio.Event()
        self.forced_at = 0.0

    def request(self, *, force: bool = False) -> None:
        """Ask to stop; a second request forces it."""
        if self.stopping:
            force = True
        self.stopping = True
        if force:
            self.forced_at = time.monotonic()
            self.forced.set()

    async def run(
        self,
        *,
        grace: float,
        runner: JobRunner,
        local: LocalQueue | None,
        finisher: Finisher,
        background: list[asyncio.Task[None]],
        farewell: Callable[[list[int]], Awaitable[None]] | None,
    ) -> None:
        """The sequence; ``farewell(unstarted ids)`` returns those jobs and deregisters (None: never opened)."""
        grace_ends = time.monotonic() + grace
        self.stopping = True
        runner.fire_all("worker is shutting down")
        if local is not None:
            await local.settle()
        await runner.stop(grace, self.forced)
        unstarted = [row.id for row in local.take_all()] if local is not None else []
        if self.forced.is_set():
            deadline = time.monotonic() + FORCED_GRACE
        else:
            deadline = max(grace_ends, time.monotonic() + FORCED_GRACE)
        await finisher.drain(deadline, self.forced, lambda: self.forced_at)
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if farewell is not None:
            await farewell(unstarted)

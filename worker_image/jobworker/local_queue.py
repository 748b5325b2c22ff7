"""The local queue of batch mode: jobs claimed ``batch_size`` at a time and started from memory, the next
batch claimed ahead while this one runs so that slots never wait on a claim round trip."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from jobworker import errors
from jobworker.finisher import UNREACHABLE
from jobworker.queries import ClaimedJob

log = logging.getLogger("jobworker.worker")
Row = ClaimedJob


class LocalQueue:
    """Owns the claimed jobs not started yet; they stay locked to this worker until started or returned."""

    def __init__(
        self,
        claim: Callable[[int], Awaitable[list[Row]]],
        batch_size: int,
        *,
        wake: Callable[[], None],
        stopping: Callable[[], bool],
        stray_locks: Callable[[], None],
    ) -> None:
        self.claim = claim
        self.batch_size = batch_size
        self.wake = wake
        self.stopping = stopping
        self.stray_locks = stray_locks
        self.rows: deque[Row] = deque()
        self.refill: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def held_ids(self) -> set[int]:
        return {row.id for row in self.rows}

    def take_all(self) -> list[Row]:
        """Empty the queue: the caller returns these jobs."""
        rows = list(self.rows)
        self.rows.clear()
        return rows

    async def fill(self, free: int, start: Callable[[Row], None]) -> int:
        """Start up to ``free`` jobs from the queue, claiming a batch first when it is empty."""
        if not self.rows:
            if self.refill is not None:
                await self.refill
            if not self.rows:
                await self._refill()
        started = 0
        while self.rows and started < free:
            start(self.rows.popleft())
            started += 1
        if len(self.rows) <= self.batch_size // 2 and self.refill is None and not self.stopping():
            self.refill = asyncio.create_task(self._refill_ahead(), name="jobworker-refill")
        return started

    async def settle(self) -> None:
        """Let a claim ahead finish (at shutdown), whatever its result."""
        if self.refill is not None:
            try:
                await self.refill
            except (asyncio.CancelledError, Exception):  # its own handler logged it
                pass

    async def _refill(self) -> None:
        want = self.batch_size - len(self.rows)
        if want > 0:
            self.rows.extend(await self.claim(want))

    async def _refill_ahead(self) -> None:
        try:
            before = len(self.rows)
            await self._refill()
            if len(self.rows) > before:
                self.wake()
        except UNREACHABLE as exc:
            self.stray_locks()
            log.warning("claim failed (%s)", errors.describe(exc))
        except Exception:
            self.stray_locks()
            log.exception("unexpected error while claiming ahead")
        finally:
            self.refill = None

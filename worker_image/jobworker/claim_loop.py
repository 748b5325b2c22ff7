"""The claim loop: take as many jobs as there are free slots, in one statement (or from the local queue
in batch mode), and start them; sleep until woken (a NOTIFY, a freed slot) or the poll interval passes.

It never dies: a failed claim is retried with a backoff capped at 1 s, and an unexpected error is logged
and backed off too, since crashing after a claim committed would crash-loop on the same jobs. A claim that
may have committed with its reply lost leaves *stray locks*: jobs locked to us that run nowhere. The next
claim releases them (release_stray_locks.sql).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from jobworker import errors, queries
from jobworker.backoff import Backoff
from jobworker.finisher import UNREACHABLE

if TYPE_CHECKING:
    from jobworker.finisher import Finisher
    from jobworker.local_queue import LocalQueue
    from jobworker.queries import ClaimedJob
    from jobworker.runner import JobRunner
    from jobworker.settings import WorkerSettings
    from jobworker.store import JobStore

log = logging.getLogger("jobworker.worker")


class ClaimLoop:
    """Owns claiming: the wake-up event, the stray-lock flag and the loop's liveness (``last_loop_at``)."""

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        settings: WorkerSettings,
        *,
        task_ids: Mapping[str, int],
        runner: JobRunner,
        finisher: Finisher,
        local: LocalQueue | None,
        stopping: Callable[[], bool],
        fenced: Callable[[], bool],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.settings = settings
        self.task_ids = task_ids
        self.runner = runner
        self.finisher = finisher
        self.local = local
        self.stopping = stopping
        self.fenced = fenced
        self.woken = asyncio.Event()
        # Set when a lock of ours may be held by no running job: a claim or result write that failed
        # mid-way (the claim may have committed with its reply lost), or a result the database refused.
        self.stray_locks = False
        self.last_loop_at = time.monotonic()

    def wake(self) -> None:
        self.woken.set()

    def mark_stray_locks(self) -> None:
        self.stray_locks = True

    def start(self, row: ClaimedJob) -> None:
        self.runner.start(row, stopping=self.stopping())

    async def run(self, *, drain: bool) -> None:
        """Claim and start jobs until stopping; with ``drain``, return once nothing is left to run now."""
        backoff = Backoff()
        while not self.stopping():
            self.last_loop_at = time.monotonic()
            self.woken.clear()
            if self.fenced():
                # Not claiming: whatever we claimed could be swept from under us. The heartbeat lifts this.
                await self.sleep(self.settings.poll_interval)
                continue
            free = self.settings.concurrency - len(self.runner)
            claimed = 0
            writes_before = self.finisher.writes_done
            if free > 0:
                try:
                    if self.stray_locks and (self.local is None or self.local.refill is None):
                        await self.release_stray_locks()
                    claimed = await self._fill(free)
                    backoff.reset()
                except UNREACHABLE as exc:
                    # The claim may have committed and only its reply been lost: its jobs would stay locked
                    # to us, running nowhere, for as long as we heartbeat. The next claim releases them.
                    self.stray_locks = True
                    pause = backoff.next()
                    log.warning("claim failed (%s); retrying in %.1fs", errors.describe(exc), pause)
                    await self.sleep(pause)
                    continue
                except Exception:
                    self.stray_locks = True
                    # A bug or a surprise must not kill the worker after a claim committed: that would crash
                    # loop on the same jobs, burning an attempt of each one every time.
                    pause = backoff.next()
                    log.exception("unexpected error while claiming; retrying in %.1fs", pause)
                    await self.sleep(pause)
                    continue
            if drain and not len(self.runner) and not (self.local is not None and len(self.local)) and claimed == 0:
                # Done only if no result landed during the claim: one may have freed a named queue whose
                # next job the claim could not see yet.
                if not self.finisher.busy and self.finisher.writes_done == writes_before:
                    return
            if claimed and claimed < free:
                # Claim again for the slots still free (one job per named queue may have left runnable jobs
                # past the claim's limit), but let the jobs just started begin first: the next claim's own
                # Python work otherwise ran before them (commit->start latency).
                await asyncio.sleep(0)
                continue
            # Slots full (the next wake comes from a finishing job), or nothing to claim.
            await self.sleep(self.settings.poll_interval)

    async def sleep(self, seconds: float) -> None:
        # Not asyncio.wait_for: it wraps the wait in a new task on every call, and in batch mode this loop
        # turns once per finished job (a freed slot wakes it). A timer that sets the event costs one handle.
        if self.woken.is_set():
            return
        timer = asyncio.get_running_loop().call_later(seconds, self.woken.set)
        try:
            await self.woken.wait()
        finally:
            timer.cancel()

    async def _fill(self, free: int) -> int:
        if self.local is not None:
            return await self.local.fill(free, self.start)
        rows = await self.claim(free)
        for row in rows:
            self.start(row)
        return len(rows)

    async def claim(self, limit: int) -> list[ClaimedJob]:
        if limit <= 0 or not self.task_ids:
            return []
        return await self.store.all(
            queries.GET_JOBS,
            {
                "worker_id": self.worker_id,
                "task_ids": list(self.task_ids.values()),
                "limit": limit,
                "queue_names": list(self.settings.queues) if self.settings.queues else None,
                "forbidden_flags": list(self.settings.forbidden_flags) if self.settings.forbidden_flags else None,
            },
        )

    async def release_stray_locks(self) -> None:
        """Give back the jobs locked to us that run nowhere here (see release_stray_locks.sql)."""
        held = set(self.runner.running) | self.finisher.held_ids()
        if self.local is not None:
            held |= self.local.held_ids()
        rows = await self.store.all(queries.RELEASE_STRAY_LOCKS, {"worker_id": self.worker_id, "held": list(held)})
        self.stray_locks = False
        if rows:
            log.warning(
                "released %d job(s) locked to this worker but running nowhere (a claim reply or a result was lost): %s",
                len(rows),
                ", ".join(str(r.id) for r in rows),
            )

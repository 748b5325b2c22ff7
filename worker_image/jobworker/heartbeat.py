"""Heartbeats and the fence they keep.

The worker records a heartbeat every ``heartbeat_interval``. Once no heartbeat has been recorded for half
the sweep threshold, the stale-worker sweep may soon hand our jobs to another worker, so the worker is
*fenced*: it stops claiming, signals its running jobs and writes none of their results (their jobs are only
returned, fenced by ``locked_by``). The next recorded heartbeat lifts the fence.

What a beat does is ``beat()``: one place to add a per-beat call (a throughput sample, say).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Json

from jobworker import errors, metrics, queries, throughput
from jobworker.finisher import UNREACHABLE

if TYPE_CHECKING:
    from jobworker.settings import WorkerSettings
    from jobworker.store import JobStore

log = logging.getLogger("jobworker.worker")


class Heartbeat:
    """Owns the worker's heartbeat row and the fence.

    ``on_fenced()`` is called once when the fence goes up, and returns how many running jobs it signalled;
    ``on_restored()`` when a heartbeat is recorded again.
    """

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        settings: WorkerSettings,
        tasks: Sequence[str],
        *,
        on_fenced: Callable[[], int],
        on_restored: Callable[[], None],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.settings = settings
        self.tasks = list(tasks)
        self.on_fenced = on_fenced
        self.on_restored = on_restored
        self.ok_at = time.monotonic()
        self.fenced = False

    def metadata(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "concurrency": self.settings.concurrency,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "runtime": "jobworker",
            # Read by the sweep: it never takes a worker for dead under 3x its heartbeat interval.
            "heartbeat_interval": self.settings.heartbeat_interval,
        }

    async def beat(self) -> None:
        """Record one heartbeat (registers the worker on the first); raises when the database does not take it."""
        # The database stamps the beat with its now(), at or after this moment: the fence counts from here, not
        # from the reply, which a slow connection or a busy loop can deliver late (past the sweep's own clock).
        sent = time.monotonic()
        await self.store.execute(queries.HEARTBEAT, {"worker_id": self.worker_id, "metadata": Json(self.metadata())})
        self.ok_at = sent
        await throughput.record(self.store, self.worker_id)  # the dashboard's per-minute counts; never raises

    async def run(self) -> None:
        beat: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            # The beat runs on its own, so a hung connection cannot delay the fence check below.
            if beat is None or beat.done():
                beat = asyncio.create_task(self._beat(), name="jobworker-heartbeat-beat")
            self.check_fence()

    async def _beat(self) -> None:
        try:
            await self.beat()
        except UNREACHABLE as exc:
            log.warning("heartbeat failed: %s", errors.describe(exc))
            return
        if self.fenced:
            self.fenced = False
            log.warning("worker %s: heartbeat recorded again; claiming jobs again", self.worker_id)
            self.on_restored()

    def check_fence(self) -> None:
        lost_for = time.monotonic() - self.ok_at
        if self.fenced or lost_for <= self.settings.sweep_threshold / 2:
            return
        self.fenced = True
        metrics.WORKER_FENCED.inc()
        signalled = self.on_fenced()
        log.error(
            "worker %s: no heartbeat recorded for %.0fs (over half the %.0fs sweep threshold): the sweep may "
            "hand our jobs to other workers, so we stop claiming, signal the %d running job(s) and will write "
            "none of their results",
            self.worker_id,
            lost_for,
            self.settings.sweep_threshold,
            signalled,
        )

"""AbortSignal.wait() forgets a waiter that gave up: no per-call entry kept for the signal's whole life.

Before, each wait() appended a (loop, Event) pair to one worker-wide list and never removed it, so a handler
that races its work against ``ctx.signal.wait()`` (the documented way to honour the signal) grew the
worker's memory by one entry per job, for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jobworker.jobs import JobContext, define_job
from jobworker.models import JobSpec
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import job_count, make_worker

JOBS = 50_000


async def test_racing_ctx_signal_wait_over_50k_jobs_keeps_the_waiter_list_bounded(
    utils: WorkerUtils, db_url: str
) -> None:
    listed: list[int] = []

    @define_job("racer", payload=dict)
    async def racer(payload: dict[str, Any], ctx: JobContext) -> None:
        waiter = asyncio.ensure_future(ctx.signal.wait())
        await asyncio.sleep(0)  # the work, which wins the race
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        listed.append(len(ctx.signal._waiters))

    for start in range(0, JOBS, 10_000):
        await utils.add_jobs([JobSpec(task="racer") for _ in range(start, start + 10_000)])

    ran = await make_worker(db_url, racer, concurrency=20, batch=True).run_once()

    assert ran == JOBS and len(listed) == JOBS
    assert await job_count(db_url) == 0
    # Every waiter that gave up is gone by the time its job ends; nothing accumulates across jobs.
    assert max(listed) == 0

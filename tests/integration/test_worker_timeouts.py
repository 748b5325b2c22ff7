"""Timeouts: a handler that never returns is no longer invisible.

Past its timeout (define_job(timeout=) or the worker's job_timeout) a job's ctx.signal fires; after the
grace period the attempt fails with a JobTimeout error and the slot is freed. /healthz turns unhealthy
when every slot is stuck past its timeout, and when the event loop lags past max_loop_lag.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, job_row, make_worker, running


async def failed_row(url: str, job_id: int) -> dict[str, Any]:
    row = await eventually(
        lambda: job_row(url, job_id),
        lambda r: r is not None and r["attempts"] == 1 and r["locked_by"] is None and r["last_error"],
        within=10,
        what=f"job {job_id} failed its attempt",
    )
    assert row is not None
    return row


async def test_a_job_past_its_timeout_is_signalled_then_failed_with_a_clear_error(
    utils: WorkerUtils, db_url: str
) -> None:
    reasons: list[str | None] = []

    @define_job("polite_timeout", payload=dict, timeout=0.3)
    async def polite(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.signal.wait()
        reasons.append(ctx.signal.reason)

    @define_job("deaf_timeout", payload=dict)
    async def deaf(payload: dict[str, Any], ctx: JobContext) -> None:
        await asyncio.sleep(3600)

    a = await utils.add_job("polite_timeout", max_attempts=3)
    b = await utils.add_job("deaf_timeout", max_attempts=3)
    # deaf has no timeout of its own: the worker's job_timeout applies.
    async with running(make_worker(db_url, polite, deaf, job_timeout=0.5, timeout_grace=0.3, concurrency=2)):
        polite_row = await failed_row(db_url, a.id)
        deaf_row = await failed_row(db_url, b.id)
    assert reasons == ["job timed out after 0.3s"]
    assert polite_row["last_error"] == "JobTimeout: ran past its timeout of 0.3s"
    assert deaf_row["last_error"] == (
        "JobTimeout: ran past its timeout of 0.5s and did not stop within the 0.3s grace period"
    )


async def test_a_stuck_sync_handler_frees_its_slot_and_makes_the_worker_unhealthy_until_its_thread_returns(
    utils: WorkerUtils, db_url: str
) -> None:
    release = threading.Event()
    ran: list[str] = []

    @define_job("stuck_sync", payload=dict, timeout=0.2)
    def stuck(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["name"])
        if payload["name"] == "stuck":
            release.wait(30)  # ignores ctx.signal: a thread nothing can interrupt

    stuck_job = await utils.add_job("stuck_sync", {"name": "stuck"}, max_attempts=1)
    worker = make_worker(db_url, stuck, concurrency=1, timeout_grace=0.2)
    try:
        async with running(worker):
            row = await failed_row(db_url, stuck_job.id)
            assert "did not stop within the 0.2s grace period" in row["last_error"]
            assert not worker.healthy  # its one slot's thread is still stuck
            # The slot itself is free: the next job runs while the thread still sleeps.
            after = await utils.add_job("stuck_sync", {"name": "next"})
            await eventually(lambda: job_row(db_url, after.id), lambda r: r is None, what="the next job ran")
            release.set()
            await eventually(lambda: asyncio.sleep(0, worker.healthy), lambda ok: ok, what="healthy again")
    finally:
        release.set()
    assert ran == ["stuck", "next"]


async def test_a_handler_blocking_the_event_loop_makes_the_worker_unhealthy(utils: WorkerUtils, db_url: str) -> None:
    @define_job("blocker", payload=dict)
    async def blocker(payload: dict[str, Any], ctx: JobContext) -> None:
        time.sleep(0.8)  # noqa: ASYNC251 - the bug under test: blocking the loop

    worker = make_worker(db_url, blocker, max_loop_lag=0.3)
    async with running(worker):
        assert worker.healthy
        job = await utils.add_job("blocker")
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, what="the blocking job ran")
        await eventually(lambda: asyncio.sleep(0, worker.healthy), lambda ok: not ok, what="unhealthy after the lag")
        assert worker.loop_lag > 0.3 or not worker.healthy

"""Stopping a worker: running jobs are signalled, finished or handed back without using an attempt."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from jobworker.errors import DatabaseError
from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_row, job_rows, make_worker, running, wait_event


async def workers_rows(url: str) -> list[dict[str, Any]]:
    return await fetch(url, "select * from graphile_worker._private_workers")


def assert_returned(row: dict[str, Any] | None) -> None:
    """Handed back as if never claimed: unlocked, the attempt given back, no error recorded."""
    assert row is not None, "the job was lost"
    assert (row["locked_at"], row["locked_by"], row["attempts"], row["last_error"]) == (None, None, 0, None)


async def test_stop_signals_a_running_job_and_returns_it_unused(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()
    reasons: list[str | None] = []

    @define_job("long", payload=dict)
    async def long(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await ctx.signal.wait()
        reasons.append(ctx.signal.reason)
        raise RuntimeError("aborted")

    job = await utils.add_job("long", {"keep": "me"})
    worker = make_worker(db_url, long, graceful_shutdown=10)
    async with running(worker) as task:
        await wait_event(started, what="job start")
        t0 = time.monotonic()
        worker.stop()
        await asyncio.wait_for(task, 10)
        assert time.monotonic() - t0 < 5, "a job that honours the signal must not wait out the grace period"

    assert reasons == ["worker is shutting down"]
    row = await job_row(db_url, job.id)
    assert_returned(row)
    assert row is not None and row["payload"] == {"keep": "me"}


async def test_a_job_finishing_within_the_grace_period_completes(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()

    @define_job("finishes", payload=dict)
    async def finishes(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await ctx.signal.wait()
        await asyncio.sleep(0.1)  # wrap up, then succeed

    await utils.add_job("finishes")
    worker = make_worker(db_url, finishes)
    async with running(worker):
        await wait_event(started, what="job start")
        worker.stop()
    assert await job_rows(db_url) == []


async def test_a_job_ignoring_the_signal_is_returned_after_the_grace_period(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()
    finished: list[bool] = []

    @define_job("stubborn", payload=dict)
    async def stubborn(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)
        finished.append(True)

    job = await utils.add_job("stubborn")
    worker = make_worker(db_url, stubborn, graceful_shutdown=0.3)
    async with running(worker):
        await wait_event(started, what="job start")
        worker.stop()
    assert finished == []
    assert_returned(await job_row(db_url, job.id))


async def test_a_second_stop_skips_the_grace_period(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()

    @define_job("stubborn", payload=dict)
    async def stubborn(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    job = await utils.add_job("stubborn")
    worker = make_worker(db_url, stubborn, graceful_shutdown=60)
    async with running(worker) as task:
        await wait_event(started, what="job start")
        worker.stop()
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert_returned(await job_row(db_url, job.id))


async def test_a_sync_job_stuck_past_the_grace_period_is_returned(utils: WorkerUtils, db_url: str) -> None:
    started = threading.Event()
    release = threading.Event()

    @define_job("sync_stuck", payload=dict)
    def sync_stuck(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        release.wait(10)

    job = await utils.add_job("sync_stuck")
    worker = make_worker(db_url, sync_stuck, graceful_shutdown=0.2)
    try:
        async with running(worker):
            await eventually(lambda: asyncio.sleep(0, started.is_set()), bool, what="sync job start")
            worker.stop()
    finally:
        release.set()
    assert_returned(await job_row(db_url, job.id))


async def test_a_sync_job_can_honour_the_signal(utils: WorkerUtils, db_url: str) -> None:
    started = threading.Event()

    @define_job("sync_polite", payload=dict)
    def sync_polite(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        if ctx.signal.wait_sync(10):
            raise RuntimeError("stopped")

    job = await utils.add_job("sync_polite")
    worker = make_worker(db_url, sync_polite, graceful_shutdown=10)
    async with running(worker) as task:
        await eventually(lambda: asyncio.sleep(0, started.is_set()), bool, what="sync job start")
        worker.stop()
        await asyncio.wait_for(task, 5)
    assert_returned(await job_row(db_url, job.id))


async def test_a_slow_result_write_during_shutdown_is_not_lost(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()

    @define_job("slow_return", payload=dict)
    async def slow_return(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await ctx.signal.wait()
        raise RuntimeError("aborted")

    job = await utils.add_job("slow_return")
    worker = make_worker(db_url, slow_return, graceful_shutdown=10)
    async with await psycopg.AsyncConnection.connect(db_url) as blocker, running(worker) as task:
        await wait_event(started, what="job start")
        # Hold the job's row so the worker's write of its result has to wait for us.
        await blocker.execute("select 1 from graphile_worker._private_jobs where id = %s for update", [job.id])
        worker.stop()
        await asyncio.sleep(0.5)
        assert not task.done(), "the worker exited while its last result was still being written"
        await blocker.rollback()
        await asyncio.wait_for(task, 10)
    assert_returned(await job_row(db_url, job.id))


async def test_batch_mode_returns_claimed_but_unstarted_jobs(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()
    ran: list[int] = []

    @define_job("batched", payload=dict)
    async def batched(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["i"])
        started.set()
        await ctx.signal.wait()
        raise RuntimeError("aborted")

    for i in range(5):
        await utils.add_job("batched", {"i": i})
    worker = make_worker(db_url, batched, batch=True, batch_size=10, concurrency=1)
    async with running(worker):
        await wait_event(started, what="first job start")
        locked = await job_rows(db_url)
        assert sum(1 for r in locked if r["locked_by"] == worker.worker_id) == 5, "batch mode claims ahead"
        worker.stop()

    assert ran == [0]
    rows = await job_rows(db_url)
    assert len(rows) == 5
    for row in rows:
        assert_returned(row)


async def test_heartbeat_row_lives_while_the_worker_runs(utils: WorkerUtils, db_url: str) -> None:
    @define_job("beating", payload=dict)
    async def beating(payload: dict[str, Any], ctx: JobContext) -> None:
        pass

    worker = make_worker(db_url, beating, heartbeat_interval=0.1)
    async with running(worker):
        [row] = await workers_rows(db_url)
        assert row["id"] == worker.worker_id
        assert row["metadata"]["tasks"] == ["beating"]
        first = row["last_heartbeat_at"]
        await eventually(
            lambda: workers_rows(db_url),
            lambda rows: bool(rows) and rows[0]["last_heartbeat_at"] > first,
            what="a later heartbeat",
        )
    assert await workers_rows(db_url) == [], "a clean exit must remove the worker's row"


async def test_run_once_returns_how_many_jobs_ran(utils: WorkerUtils, db_url: str) -> None:
    @define_job("counted", payload=dict)
    async def counted(payload: dict[str, Any], ctx: JobContext) -> None:
        if payload["i"] == 0:
            raise ValueError("fails but still ran")

    for i in range(3):
        await utils.add_job("counted", {"i": i})
    worker = make_worker(db_url, counted, concurrency=2)
    assert await worker.run_once() == 3
    assert await make_worker(db_url, counted).run_once() == 0, "the failed job waits for its backoff"
    assert await workers_rows(db_url) == []


async def test_a_failed_start_raises_one_database_error_and_closes_the_pool(db_url: str) -> None:
    await fetch(db_url, "drop function graphile_worker.worker_heartbeat(text, json)")

    @define_job("never_runs", payload=dict)
    async def never_runs(payload: dict[str, Any], ctx: JobContext) -> None:
        raise AssertionError("no job was added")

    worker = make_worker(db_url, never_runs)
    with pytest.raises(DatabaseError, match="jobworker migrate"):
        await worker.run()
    assert worker.store.closed, "the connection pool was left open"

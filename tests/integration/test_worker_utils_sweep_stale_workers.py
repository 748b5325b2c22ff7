"""list_active_workers and sweep_stale_workers: heartbeats, recovery of dead workers' jobs, orphan locks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from jobworker import errors
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_row, lock_job, register_worker

STALE = 600  # seconds since the last heartbeat; the default threshold is 5 minutes


async def worker_ids(url: str) -> list[str]:
    return [r["id"] for r in await fetch(url, "select id from graphile_worker._private_workers order by id")]


async def test_list_active_workers_leaves_out_stale_ones(utils: WorkerUtils, db_url: str) -> None:
    await register_worker(db_url, "fresh", tasks=["a"])
    await register_worker(db_url, "quiet", age_seconds=90)
    await register_worker(db_url, "stale", age_seconds=STALE)
    job = await utils.add_job("a")
    await lock_job(db_url, job.id, "fresh")

    active = await utils.list_active_workers()
    assert [(w.id, w.locked_jobs) for w in active] == [("quiet", 0), ("fresh", 1)]  # oldest first
    assert active[1].metadata == {"tasks": ["a"]}
    assert active[1].heartbeat_age_seconds < 5 < active[0].heartbeat_age_seconds

    assert [w.id for w in await utils.list_active_workers("1m")] == ["fresh"]
    with pytest.raises(errors.ConfigurationError, match="threshold"):
        await utils.list_active_workers("soon")


async def test_sweep_recovers_the_jobs_of_stale_workers(utils: WorkerUtils, db_url: str) -> None:
    await register_worker(db_url, "dead", age_seconds=STALE)
    await register_worker(db_url, "alive")
    lost = await utils.add_job("t", queue_name="dq", max_attempts=5)
    busy = await utils.add_job("t", max_attempts=5)
    await lock_job(db_url, lost.id, "dead", age_seconds=STALE)
    await lock_job(db_url, busy.id, "alive", age_seconds=STALE)

    result = await utils.sweep_stale_workers()

    assert (result.stale_workers, result.recovered_job_ids, result.dry_run, result.skipped) == (
        ["dead"],
        [lost.id],
        False,
        False,
    )
    row = await job_row(db_url, lost.id)
    assert row is not None
    assert (row["locked_at"], row["locked_by"], row["attempts"]) == (None, None, 1)
    assert "Recovered: worker dead stopped heartbeating" in row["last_error"]
    assert row["run_at"] <= datetime.now(UTC)
    queue = await fetch(db_url, "select locked_by from graphile_worker._private_job_queues")
    assert queue == [{"locked_by": None}]
    still = await job_row(db_url, busy.id)
    assert still is not None and still["locked_by"] == "alive"
    assert await worker_ids(db_url) == ["alive"]


async def test_dry_run_reports_without_changing_anything(utils: WorkerUtils, db_url: str) -> None:
    await register_worker(db_url, "dead", age_seconds=STALE)
    job = await utils.add_job("t")
    await lock_job(db_url, job.id, "dead", age_seconds=STALE)
    before = await job_row(db_url, job.id)

    result = await utils.sweep_stale_workers(dry_run=True)

    assert (result.stale_workers, result.recovered_job_ids, result.dry_run) == (["dead"], [job.id], True)
    assert await job_row(db_url, job.id) == before
    assert await worker_ids(db_url) == ["dead"]


async def test_orphan_locks_are_recovered_once_older_than_graphiles_4_hours(utils: WorkerUtils, db_url: str) -> None:
    # Node's graphile-worker never registers and keeps a job locked up to 4 hours by design: a lock past the
    # sweep threshold but under 4 hours is a Node job still running, not an orphan.
    old = await utils.add_job("t")
    recent = await utils.add_job("t")
    await lock_job(db_url, old.id, "node-worker-without-heartbeats", age_seconds=4 * 3600 + 60)
    await lock_job(db_url, recent.id, "node-worker-2", age_seconds=STALE)

    result = await utils.sweep_stale_workers("5m")

    assert result.orphan_lock_holders == ["node-worker-without-heartbeats"]
    assert result.recovered_job_ids == [old.id]
    assert result.stale_workers == []
    recovered, untouched = await job_row(db_url, old.id), await job_row(db_url, recent.id)
    assert recovered is not None and recovered["locked_by"] is None
    assert untouched is not None and untouched["locked_by"] == "node-worker-2"

    shorter = await utils.sweep_stale_workers("5m", orphan_threshold="5m")
    assert shorter.orphan_lock_holders == ["node-worker-2"] and shorter.recovered_job_ids == [recent.id]


async def test_recovery_delay_postpones_the_recovered_jobs(utils: WorkerUtils, db_url: str) -> None:
    await register_worker(db_url, "dead", age_seconds=STALE)
    job = await utils.add_job("t")
    await lock_job(db_url, job.id, "dead", age_seconds=STALE)

    await utils.sweep_stale_workers(recovery_delay="2m")

    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["run_at"] - row["updated_at"]).total_seconds() == pytest.approx(120, abs=0.001)
    assert [j.state for j in await utils.list_jobs()] == ["scheduled"]


async def test_only_one_sweeper_runs_at_a_time(utils: WorkerUtils, db_url: str) -> None:
    await register_worker(db_url, "dead", age_seconds=STALE)
    job = await utils.add_job("t")
    await lock_job(db_url, job.id, "dead", age_seconds=STALE)

    async with await psycopg.AsyncConnection.connect(db_url) as blocker, WorkerUtils(db_url) as second:
        # Hold the job's row so the first sweep stops midway, holding the sweep lock.
        await blocker.execute("select 1 from graphile_worker._private_jobs where id = %s for update", [job.id])
        first = asyncio.create_task(utils.sweep_stale_workers())
        await eventually(
            lambda: fetch(db_url, "select 1 from pg_locks where locktype = 'advisory' and granted"),
            lambda rows: len(rows) == 1,
            what="the first sweep holding the sweep lock",
        )
        concurrent = await second.sweep_stale_workers()
        await blocker.rollback()
        done = await asyncio.wait_for(first, 10)

    assert concurrent.skipped and concurrent.recovered_job_ids == []
    assert not done.skipped and done.recovered_job_ids == [job.id]


async def test_sweep_threshold_is_validated(utils: WorkerUtils) -> None:
    with pytest.raises(errors.ConfigurationError, match="sweep_threshold"):
        await utils.sweep_stale_workers("five minutes")
    with pytest.raises(errors.ConfigurationError, match="recovery_delay"):
        await utils.sweep_stale_workers(recovery_delay=timedelta(seconds=-1))

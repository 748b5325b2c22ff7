"""WorkerUtils.reschedule_jobs: move jobs (run_at defaults to now), leaving locked ones alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobworker import errors
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import fetch, job_row, lock_job


async def test_reschedule_defaults_run_at_to_now(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("moved", run_at=datetime.now(UTC) + timedelta(days=1))
    before = datetime.now(UTC)

    assert await utils.reschedule_jobs([job.id]) == [job.id]

    row = await job_row(db_url, job.id)
    assert row is not None
    assert before - timedelta(seconds=1) <= row["run_at"] <= datetime.now(UTC)
    assert [j.state for j in await utils.list_jobs()] == ["ready"]


async def test_reschedule_sets_every_given_field(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("moved", max_attempts=3)
    await fetch(db_url, "update graphile_worker._private_jobs set attempts = 3 where id = %s", [job.id])
    at = datetime.now(UTC) + timedelta(minutes=30)

    await utils.reschedule_jobs([job.id], run_at=at, priority=-2, attempts=0, max_attempts=8)

    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["run_at"], row["priority"], row["attempts"], row["max_attempts"]) == (at, -2, 0, 8)


async def test_reschedule_leaves_locked_jobs_untouched(utils: WorkerUtils, db_url: str) -> None:
    free = await utils.add_job("moved", priority=1)
    locked = await utils.add_job("moved", priority=1)
    await lock_job(db_url, locked.id)
    before = await job_row(db_url, locked.id)

    assert await utils.reschedule_jobs([free.id, locked.id], priority=7) == [free.id]

    assert await job_row(db_url, locked.id) == before
    row = await job_row(db_url, free.id)
    assert row is not None and row["priority"] == 7


async def test_reschedule_validates_before_touching_the_queue(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("moved")
    before = await job_row(db_url, job.id)
    with pytest.raises(errors.ConfigurationError, match="max_attempts"):
        await utils.reschedule_jobs([job.id], max_attempts=0)
    with pytest.raises(errors.ConfigurationError, match="priority"):
        await utils.reschedule_jobs([job.id], priority=40_000)
    with pytest.raises(errors.ConfigurationError, match="attempts"):
        await utils.reschedule_jobs([job.id], attempts=-1)
    assert await job_row(db_url, job.id) == before

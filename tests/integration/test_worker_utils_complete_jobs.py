"""WorkerUtils.complete_jobs and permanently_fail_jobs: admin actions that skip locked jobs."""

from __future__ import annotations

from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import job_row, job_rows, lock_job


async def test_complete_jobs_deletes_unlocked_jobs_only(utils: WorkerUtils, db_url: str) -> None:
    a = await utils.add_job("done")
    b = await utils.add_job("done")
    running = await utils.add_job("done")
    keep = await utils.add_job("done")
    await lock_job(db_url, running.id)

    completed = await utils.complete_jobs([a.id, b.id, running.id, 999_999])

    assert sorted(completed) == [a.id, b.id]
    assert sorted(r["id"] for r in await job_rows(db_url)) == [running.id, keep.id]


async def test_complete_jobs_takes_over_a_lock_older_than_four_hours(utils: WorkerUtils, db_url: str) -> None:
    stuck = await utils.add_job("done")
    await lock_job(db_url, stuck.id, age_seconds=5 * 3600)
    assert await utils.complete_jobs([stuck.id]) == [stuck.id]
    assert await job_rows(db_url) == []


async def test_permanently_fail_jobs_sets_attempts_to_max_attempts(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("doomed", max_attempts=9)
    running = await utils.add_job("doomed", max_attempts=9)
    await lock_job(db_url, running.id)

    assert await utils.permanently_fail_jobs([job.id, running.id], "operator gave up") == [job.id]

    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"], row["last_error"]) == (9, 9, "operator gave up")
    assert [j.state for j in await utils.list_jobs(state="failed")] == ["failed"]
    untouched = await job_row(db_url, running.id)
    assert untouched is not None and (untouched["attempts"], untouched["last_error"]) == (1, None)


async def test_permanently_fail_jobs_without_a_reason(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("doomed")
    await utils.permanently_fail_jobs([job.id])
    row = await job_row(db_url, job.id)
    assert row is not None and row["last_error"] == "Manually marked as failed"

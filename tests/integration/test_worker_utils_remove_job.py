"""WorkerUtils.remove_job: delete an unlocked job by key; for a running one, free the key and stop retries."""

from __future__ import annotations

import pytest

from jobworker import errors
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import job_row, job_rows, lock_job


async def test_remove_job_deletes_an_unlocked_job(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("removable", job_key="k")
    other = await utils.add_job("removable", job_key="other")

    assert await utils.remove_job("k") == job.id

    assert [r["id"] for r in await job_rows(db_url)] == [other.id]


async def test_remove_job_on_a_locked_job_frees_the_key_and_stops_retries(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("removable", job_key="k", max_attempts=5)
    await lock_job(db_url, job.id, "busy-worker")

    assert await utils.remove_job("k") == job.id

    row = await job_row(db_url, job.id)
    assert row is not None, "a running job must not be deleted under its worker"
    assert (row["key"], row["attempts"], row["max_attempts"], row["locked_by"]) == (None, 5, 5, "busy-worker")
    # The key is free again: a new job with it is a new row.
    again = await utils.add_job("removable", job_key="k")
    assert again.id != job.id


async def test_remove_job_with_an_unknown_key_returns_none(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("removable", job_key="k")
    assert await utils.remove_job("missing") is None
    assert len(await job_rows(db_url)) == 1


async def test_remove_job_refuses_an_oversize_key(utils: WorkerUtils) -> None:
    with pytest.raises(errors.ConfigurationError, match="job_key: 513 characters"):
        await utils.remove_job("k" * 513)


async def test_remove_job_leave_running_touches_no_running_job(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("removable", job_key="k", max_attempts=5)
    await lock_job(db_url, job.id, "busy-worker")

    assert await utils.remove_job("k", leave_running=True) is None

    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["key"], row["attempts"], row["max_attempts"], row["locked_by"]) == ("k", 1, 5, "busy-worker")
    free = await utils.add_job("removable", job_key="free")
    assert await utils.remove_job("free", leave_running=True) == free.id

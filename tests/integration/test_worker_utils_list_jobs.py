"""WorkerUtils.list_jobs, get_job and queue_stats: what `jobworker list/show/stats` and the operator read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobworker import errors
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import lock_job, register_worker


async def one_of_each_state(utils: WorkerUtils, url: str) -> dict[str, int]:
    ready = await utils.add_job("a", {"p": 1}, run_at=datetime.now(UTC) - timedelta(minutes=10))
    scheduled = await utils.add_job("a", run_at=datetime.now(UTC) + timedelta(hours=1), queue_name="q")
    locked = await utils.add_job("b")
    await lock_job(url, locked.id, "w1")
    failed = await utils.add_job("b", max_attempts=1)
    await utils.permanently_fail_jobs([failed.id], "gave up")
    return {"ready": ready.id, "scheduled": scheduled.id, "locked": locked.id, "failed": failed.id}


async def test_list_jobs_by_state(utils: WorkerUtils, db_url: str) -> None:
    ids = await one_of_each_state(utils, db_url)
    for state, job_id in ids.items():
        assert [(j.id, j.state) for j in await utils.list_jobs(state=state)] == [(job_id, state)]
    assert sorted(j.id for j in await utils.list_jobs()) == sorted(ids.values())
    assert sorted(j.id for j in await utils.list_jobs(state="all")) == sorted(ids.values())


async def test_list_jobs_filters_by_task_and_queue_and_limits(utils: WorkerUtils, db_url: str) -> None:
    ids = await one_of_each_state(utils, db_url)
    assert sorted(j.id for j in await utils.list_jobs(task="b")) == sorted([ids["locked"], ids["failed"]])
    assert [j.id for j in await utils.list_jobs(queue_name="q")] == [ids["scheduled"]]
    assert len(await utils.list_jobs(limit=2)) == 2
    with pytest.raises(errors.ConfigurationError, match="state: 'stuck' is not one of"):
        await utils.list_jobs(state="stuck")


async def test_list_jobs_rows_describe_the_job(utils: WorkerUtils, db_url: str) -> None:
    ids = await one_of_each_state(utils, db_url)
    [failed] = await utils.list_jobs(state="failed")
    assert (failed.task_identifier, failed.last_error, failed.attempts, failed.max_attempts) == ("b", "gave up", 1, 1)
    [locked] = await utils.list_jobs(state="locked")
    assert locked.locked_by == "w1" and locked.locked_at is not None
    assert locked.payload is None, "list leaves payloads out"
    job = await utils.get_job(ids["ready"])
    assert job is not None and job.payload == {"p": 1} and job.state == "ready"
    assert await utils.get_job(10**9) is None


async def test_queue_stats_counts_each_state(utils: WorkerUtils, db_url: str) -> None:
    await one_of_each_state(utils, db_url)
    await register_worker(db_url, "w1")
    await register_worker(db_url, "gone", age_seconds=3600)

    stats = await utils.queue_stats()

    assert (stats.ready, stats.scheduled, stats.locked, stats.failed) == (1, 1, 1, 1)
    assert stats.oldest_ready_seconds == pytest.approx(600, abs=30)
    assert (stats.workers_active, stats.workers_stale) == (1, 1)
    assert sorted((s.task, s.queue or "", s.state, s.count) for s in stats.by_task) == [
        ("a", "", "ready", 1),
        ("a", "q", "scheduled", 1),
        ("b", "", "failed", 1),
        ("b", "", "locked", 1),
    ]


async def test_queue_stats_of_an_empty_queue(utils: WorkerUtils) -> None:
    stats = await utils.queue_stats()
    assert (stats.ready, stats.scheduled, stats.locked, stats.failed, stats.oldest_ready_seconds) == (0, 0, 0, 0, None)
    assert stats.by_task == []

"""WorkerUtils.cleanup: GC_TASK_IDENTIFIERS, GC_JOB_QUEUES and DELETE_PERMAFAILED_JOBS."""

from __future__ import annotations

from typing import Any

import pytest

from jobworker import errors
from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import (
    eventually,
    fetch,
    job_count,
    job_rows,
    lock_job,
    make_worker,
    register_worker,
    running,
)


async def task_names(url: str) -> list[str]:
    return [
        r["identifier"] for r in await fetch(url, "select identifier from graphile_worker._private_tasks order by 1")
    ]


async def queue_names(url: str) -> list[str]:
    return [
        r["queue_name"]
        for r in await fetch(url, "select queue_name from graphile_worker._private_job_queues order by 1")
    ]


async def test_gc_task_identifiers_keeps_used_kept_and_live_workers_tasks(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("has_a_job")
    for name in ("unused", "kept_by_caller", "live_workers_task", "dead_workers_task"):
        await utils.add_job(name, job_key=name)
        await utils.remove_job(name)
    await register_worker(db_url, "live", tasks=["live_workers_task"])
    await register_worker(db_url, "dead", age_seconds=3600, tasks=["dead_workers_task"])

    removed = await utils.cleanup(["GC_TASK_IDENTIFIERS"], keep_task_identifiers=["kept_by_caller"])

    assert removed == {"gc-task-identifiers": 2}
    assert await task_names(db_url) == ["has_a_job", "kept_by_caller", "live_workers_task"]


async def test_a_live_worker_with_no_task_list_keeps_every_identifier(utils: WorkerUtils, db_url: str) -> None:
    """graphile_worker_rs registers with no metadata but caches its task ids: GC must not strand it."""
    for name in ("rust_task", "other"):
        await utils.add_job(name, job_key=name)
        await utils.remove_job(name)
    await fetch(db_url, "select graphile_worker.worker_heartbeat('graphile_worker_rust')")

    assert await utils.cleanup(["GC_TASK_IDENTIFIERS"]) == {"gc-task-identifiers": 0}
    assert await task_names(db_url) == ["other", "rust_task"]

    await fetch(db_url, "select graphile_worker.worker_deregister('graphile_worker_rust')")
    assert await utils.cleanup(["GC_TASK_IDENTIFIERS"]) == {"gc-task-identifiers": 2}


async def test_a_running_workers_idle_task_survives_cleanup_and_still_runs(utils: WorkerUtils, db_url: str) -> None:
    @define_job("idle_task", payload=dict)
    async def idle_task(payload: dict[str, Any], ctx: JobContext) -> None:
        pass

    async with running(make_worker(db_url, idle_task)):
        assert await task_names(db_url) == ["idle_task"]
        await utils.cleanup()
        assert await task_names(db_url) == ["idle_task"], "cleanup deleted a task id a live worker has cached"
        await utils.add_job("idle_task")
        await eventually(lambda: job_count(db_url), lambda n: n == 0, what="job for the idle task")


async def test_gc_job_queues_deletes_only_unused_unlocked_queues(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("q", queue_name="in_use")
    gone = await utils.add_job("q", queue_name="empty", job_key="gone")
    await utils.remove_job("gone")
    held = await utils.add_job("q", queue_name="locked_empty")
    await lock_job(db_url, held.id)
    await fetch(db_url, "delete from graphile_worker._private_jobs where id = %s", [held.id])
    assert gone.id != held.id

    assert await utils.cleanup(["gc-job-queues"]) == {"gc-job-queues": 1}
    assert await queue_names(db_url) == ["in_use", "locked_empty"]


async def test_delete_permanently_failed_jobs(utils: WorkerUtils, db_url: str) -> None:
    dead = await utils.add_job("f", max_attempts=1)
    await utils.permanently_fail_jobs([dead.id])
    retrying = await utils.add_job("f", max_attempts=3)
    await fetch(db_url, "update graphile_worker._private_jobs set attempts = 1 where id = %s", [retrying.id])
    last_try = await utils.add_job("f", max_attempts=1)
    await lock_job(db_url, last_try.id)  # attempts == max_attempts, but still running
    fresh = await utils.add_job("f")

    assert await utils.cleanup(["DELETE_PERMAFAILED_JOBS"]) == {"delete-permanently-failed-jobs": 1}
    assert sorted(r["id"] for r in await job_rows(db_url)) == [retrying.id, last_try.id, fresh.id]


async def test_cleanup_runs_all_three_by_default(utils: WorkerUtils, db_url: str) -> None:
    dead = await utils.add_job("only", queue_name="only_q", max_attempts=1)
    await utils.permanently_fail_jobs([dead.id])
    result = await utils.cleanup()
    # Jobs go first, so the task and queue they used are collected in the same run.
    assert result == {"delete-permanently-failed-jobs": 1, "gc-task-identifiers": 1, "gc-job-queues": 1}
    assert (await task_names(db_url), await queue_names(db_url), await job_count(db_url)) == ([], [], 0)


async def test_cleanup_refuses_an_unknown_task(utils: WorkerUtils) -> None:
    with pytest.raises(errors.ConfigurationError, match="'vacuum_everything' is not one of"):
        await utils.cleanup(["vacuum_everything"])

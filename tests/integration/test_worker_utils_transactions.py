"""Enqueue inside the caller's own transaction, sync (SyncWorkerUtils) and async (connection=)."""

from __future__ import annotations

import asyncio

import psycopg
import pydantic

from jobworker.jobs import JobContext, define_job
from jobworker.models import JobSpec
from jobworker.providers.graphile import GraphileJobQueue
from jobworker.worker_utils import SyncWorkerUtils, WorkerUtils
from tests.integration.runtime import job_count, job_rows


def count(url: str) -> int:
    return asyncio.run(job_count(url))


def test_sync_worker_utils_adds_and_administers(db_url: str) -> None:
    with SyncWorkerUtils(db_url) as utils:
        job = utils.add_job("sync_task", {"n": 1}, job_key="k", priority=2)
        bulk = utils.add_jobs([JobSpec(task="sync_task", payload={"n": i}) for i in range(3)])
        assert job.key == "k" and len(bulk) == 3
        assert sorted(j.id for j in utils.list_jobs()) == sorted([job.id, *(b.id for b in bulk)])
        assert utils.remove_job("k") == job.id
        assert sorted(utils.complete_jobs([b.id for b in bulk])) == sorted(b.id for b in bulk)
    assert count(db_url) == 0


def test_sync_enqueue_in_the_callers_transaction(db_url: str) -> None:
    with SyncWorkerUtils(db_url) as utils, psycopg.connect(db_url) as conn:
        utils.add_job("tx_task", {"n": 1}, connection=conn)
        utils.add_jobs([JobSpec(task="tx_task"), JobSpec(task="tx_task")], connection=conn)
        assert count(db_url) == 0, "the jobs are invisible until the caller commits"
        conn.rollback()
        assert count(db_url) == 0

        utils.add_job("tx_task", {"n": 2}, connection=conn)
        conn.commit()
        assert count(db_url) == 1


async def test_async_add_job_in_the_callers_transaction(utils: WorkerUtils, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        try:
            async with conn.transaction():
                await utils.add_job("tx_task", {"n": 1}, connection=conn)
                await utils.add_jobs([JobSpec(task="tx_task")], connection=conn)
                assert await job_count(db_url) == 0
                raise RuntimeError("the order could not be saved")
        except RuntimeError:
            pass
        assert await job_count(db_url) == 0

        async with conn.transaction():
            await utils.add_job("tx_task", {"n": 2}, connection=conn)
        assert [r["payload"] for r in await job_rows(db_url)] == [{"n": 2}]


class Cleanup(pydantic.BaseModel):
    older_than_days: int


@define_job("cleanup_typed", payload=Cleanup, max_attempts=4, priority=1)
async def cleanup_job(payload: Cleanup, ctx: JobContext) -> None:
    pass


async def test_graphile_job_queue_enqueues_typed_payloads_with_definition_defaults(db_url: str) -> None:
    queue = GraphileJobQueue(db_url)
    try:
        first = await queue.enqueue(cleanup_job, Cleanup(older_than_days=3), job_key="cleanup")
        again = await queue.enqueue(cleanup_job, Cleanup(older_than_days=5), job_key="cleanup")
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            async with conn.transaction(force_rollback=True):
                await queue.enqueue(cleanup_job, Cleanup(older_than_days=9), connection=conn)
    finally:
        await queue.close()

    assert (first.job_name, first.deduplicated) == ("cleanup_typed", False)
    assert (again.id, again.deduplicated) == (first.id, True)
    [row] = await job_rows(db_url)
    assert (row["payload"], row["max_attempts"], row["priority"]) == ({"older_than_days": 5}, 4, 1)

"""WorkerUtils.force_unlock_workers: release every job and queue lock of the given workers."""

from __future__ import annotations

from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import fetch, job_rows, lock_job


async def test_force_unlock_releases_jobs_and_queues_of_those_workers_only(utils: WorkerUtils, db_url: str) -> None:
    dead = await utils.add_job("locked", queue_name="q-dead")
    dead2 = await utils.add_job("locked")
    alive = await utils.add_job("locked", queue_name="q-alive")
    await lock_job(db_url, dead.id, "dead-worker")
    await lock_job(db_url, dead2.id, "dead-worker")
    await lock_job(db_url, alive.id, "alive-worker")

    await utils.force_unlock_workers(["dead-worker"])

    rows = {r["id"]: r for r in await job_rows(db_url)}
    assert rows[dead.id]["locked_by"] is None and rows[dead.id]["locked_at"] is None
    assert rows[dead2.id]["locked_by"] is None
    assert rows[alive.id]["locked_by"] == "alive-worker"
    queues = await fetch(db_url, "select queue_name, locked_by from graphile_worker._private_job_queues order by 1")
    assert queues == [
        {"queue_name": "q-alive", "locked_by": "alive-worker"},
        {"queue_name": "q-dead", "locked_by": None},
    ]

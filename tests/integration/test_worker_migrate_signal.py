"""A breaking ``worker:migrate`` (graphile-worker's signal) stops the worker gracefully (issue 14, item 6):
its running job finishes and is recorded, and ``breaking_migration`` names the migration, from which
``jobworker worker`` exits with code 57. A migration that is not breaking changes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_row, listening, make_worker, running

finished: list[str] = []


@define_job("held", payload=dict)
async def held(payload: dict[str, Any], ctx: JobContext) -> None:
    """Runs for ``hold`` seconds whatever its signal says, so a graceful stop must wait for it."""
    await asyncio.sleep(float(payload.get("hold", 0)))
    finished.append(ctx.job_id)


async def notify_migration(url: str, number: int, breaking: bool, *, twice: bool = False) -> None:
    """As migrate sends it; ``twice``: two migrations in one transaction (the second numbered ``number + 1``)."""
    payloads = [json.dumps({"migrationNumber": n, "breaking": breaking}) for n in (number, number + 1)]
    if twice:
        await fetch(url, "select pg_notify('worker:migrate', %s), pg_notify('worker:migrate', %s)", payloads)
    else:
        await fetch(url, "select pg_notify('worker:migrate', %s)", payloads[:1])


async def test_a_breaking_migration_stops_the_worker_after_its_running_job(utils: WorkerUtils, db_url: str) -> None:
    finished.clear()
    worker = make_worker(db_url, held, graceful_shutdown=30)
    async with running(worker) as task:
        await listening(db_url)
        await notify_migration(db_url, 20, breaking=False)
        first = await utils.add_job("held")
        await eventually(lambda: job_row(db_url, first.id), lambda r: r is None, within=10, what="a job after it")
        assert not task.done() and worker.breaking_migration is None

        running_job = await utils.add_job("held", {"hold": 1.0})
        await eventually(
            lambda: job_row(db_url, running_job.id),
            lambda r: r is not None and r["locked_by"] is not None,
            within=10,
            what="the job running",
        )
        # Two breaking migrations at once: still one graceful stop (a second stop() would force it).
        await notify_migration(db_url, 2, breaking=True, twice=True)
        await asyncio.wait_for(task, 20)
    assert worker.breaking_migration == 3
    assert str(running_job.id) in finished, "the running job was not let finish"
    assert await job_row(db_url, running_job.id) is None, "its completion was not recorded"

"""New jobs reach an idle worker through LISTEN/NOTIFY, long before its next poll."""

from __future__ import annotations

import time
from typing import Any

from jobworker.jobs import JobContext, define_job
from jobworker.models import JobSpec
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_count, listening, make_worker, running

SLOW_POLL = 60.0
DEADLINE = 5.0  # generous: far below the poll interval, far above any scheduling noise


@define_job("woken", payload=dict)
async def woken(payload: dict[str, Any], ctx: JobContext) -> None:
    pass


async def drained(url: str) -> None:
    await eventually(lambda: job_count(url), lambda n: n == 0, within=DEADLINE, what="job picked up via NOTIFY")


async def test_idle_worker_picks_up_a_new_job_without_polling(utils: WorkerUtils, db_url: str) -> None:
    async with running(make_worker(db_url, woken, poll_interval=SLOW_POLL)):
        await listening(db_url)
        for _ in range(3):  # each job arrives while the worker sleeps on its 60 s poll
            t0 = time.monotonic()
            await utils.add_job("woken")
            await drained(db_url)
            assert time.monotonic() - t0 < DEADLINE


async def test_bulk_add_and_plain_sql_add_wake_the_worker(utils: WorkerUtils, db_url: str) -> None:
    async with running(make_worker(db_url, woken, poll_interval=SLOW_POLL, concurrency=4)):
        await listening(db_url)
        await utils.add_jobs([JobSpec(task="woken") for _ in range(6)])
        await drained(db_url)
        # What a Node producer does: call the SQL function directly.
        await fetch(db_url, "select graphile_worker.add_job('woken')")
        await drained(db_url)


async def test_worker_relistens_after_losing_its_listen_connection(utils: WorkerUtils, db_url: str) -> None:
    async with running(make_worker(db_url, woken, poll_interval=SLOW_POLL)):
        await listening(db_url)
        killed = await fetch(
            db_url,
            "select pg_terminate_backend(pid) as ok from pg_stat_activity "
            "where datname = current_database() and query = 'listen \"jobs:insert\"'",
        )
        assert [r["ok"] for r in killed] == [True]
        await eventually(
            lambda: fetch(
                db_url,
                "select pid from pg_stat_activity where datname = current_database() "
                "and query = 'listen \"jobs:insert\"'",
            ),
            lambda rows: len(rows) == 1,
            what="a new LISTEN connection",
        )
        await utils.add_job("woken")
        await drained(db_url)

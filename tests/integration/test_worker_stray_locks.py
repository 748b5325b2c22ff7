"""No job stays locked for the whole life of a live worker.

The stale-worker sweep never recovers a live worker's jobs, so a lock that worker holds with nothing
running it must be released by the worker itself: a claim whose reply was lost after it committed
(the connection dropped in between), or a result the database refused twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobworker.jobs import JobContext, define_job
from jobworker.queries import ClaimedJob
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_row, make_worker, running
from tests.tcp_proxy import TcpProxy


async def test_a_claim_whose_reply_was_lost_after_commit_runs_while_the_worker_lives(
    utils: WorkerUtils, db_url: str
) -> None:
    ran: list[int] = []

    @define_job("lost_reply", payload=dict)
    async def lost_reply(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    proxy = await TcpProxy.to_database(db_url)
    try:
        worker = make_worker(proxy.url(db_url), lost_reply)
        async with running(worker):
            # The claim of this job commits, then its reply is lost with the connection.
            proxy.drop_reply_containing(b"lost-reply-marker")
            job = await utils.add_job("lost_reply", {"marker": "lost-reply-marker"})
            await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, within=15, what="the job ran")
        assert proxy.dropped == 1
        assert ran == [1]  # the lost claim's attempt was refunded
    finally:
        await proxy.close()


async def test_a_result_the_database_refuses_twice_does_not_leave_the_job_locked(
    utils: WorkerUtils, db_url: str
) -> None:
    # Any failure naming 'refuse-me' is refused by the table itself, alone or in a batch.
    await fetch(
        db_url,
        "alter table graphile_worker._private_jobs add constraint test_refuse "
        "check (last_error is null or last_error not like '%%refuse-me%%')",
    )

    @define_job("refused", payload=dict)
    async def refused(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError("refuse-me")

    job = await utils.add_job("refused", max_attempts=1)
    async with running(make_worker(db_url, refused)):
        row = await eventually(
            lambda: job_row(db_url, job.id),
            lambda r: r is not None and r["locked_by"] is None and r["attempts"] == 0,
            within=10,
            what="the job handed back",
        )
    assert row is not None and row["last_error"] is None


async def test_an_unexpected_error_after_a_claim_is_logged_and_backed_off_never_fatal(
    utils: WorkerUtils, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    @define_job("surprise", payload=dict)
    async def surprise(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    worker = make_worker(db_url, surprise)
    start = worker.claims.start
    failures = iter([RuntimeError("a bug between the claim and the start")])

    def flaky_start(row: ClaimedJob) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        start(row)

    worker.claims.start = flaky_start  # type: ignore[method-assign]
    async with running(worker) as task:
        job = await utils.add_job("surprise")
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, within=10, what="the job ran")
        assert not task.done()  # the worker survived
    assert "unexpected error while claiming" in caplog.text
    assert ran == [1]  # the claimed-but-never-started job was released with its attempt refunded

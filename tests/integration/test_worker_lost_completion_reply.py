"""A completion whose reply was lost after it committed is not reported as fenced.

The finisher sends a completion again when its connection dropped before the reply (it may or may not have
committed). When the first attempt had committed, the second matches nothing, exactly as a fenced one
would; the chaos suite saw such jobs logged as "no longer locked by this worker" and counted in
jobworker_results_fenced_total. A job that is gone was completed; only a job that still exists was taken.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from jobworker import queries
from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, job_row, make_worker, running
from tests.integration.test_worker_fencing import fenced_count


async def test_a_committed_completion_whose_reply_was_lost_is_counted_as_completed(
    utils: WorkerUtils, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    @define_job("lost_completion_reply", payload=dict)
    async def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    worker = make_worker(db_url, handler)
    store = worker.store
    real_all = store.all
    dropped: list[list[int]] = []
    completions: list[Any] = []

    async def all_(query: Any, params: Any = None) -> Any:
        rows = await real_all(query, params)
        if query is queries.COMPLETE_JOBS:
            completions.append(rows)
        if query is queries.COMPLETE_JOBS and not dropped:
            # The statement committed (autocommit); the reply never reaches the worker.
            dropped.append([row.id for row in rows])
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return rows

    store.all = all_  # type: ignore[method-assign]
    before = fenced_count("lost_completion_reply", "complete")
    job = await utils.add_job("lost_completion_reply", {"n": 1})
    with caplog.at_level(logging.INFO, logger="jobworker"):
        async with running(worker):
            await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, within=15, what="the job ran")
            await eventually(lambda: _async(len(completions)), lambda n: n >= 2, within=15, what="a second completion")
    assert dropped == [[int(job.id)]], "the first completion committed and its reply was dropped"
    assert completions[1] == [], "the completion sent again matched nothing"
    assert ran == [1]
    assert fenced_count("lost_completion_reply", "complete") == before
    assert not [r for r in caplog.records if "no longer locked by this worker" in r.getMessage()]
    assert [r for r in caplog.records if "most likely by the attempt whose reply was lost" in r.getMessage()]


async def _async(value: int) -> int:
    return value

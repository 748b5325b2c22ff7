"""Failures: backoff from run_at, last_error, max_attempts, PermanentJobError, RetryJob, batch items,
invalid payloads, unknown tasks, and what a handler sees (ctx, sync handlers in a thread)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from jobworker.errors import PermanentJobError, RetryJob
from jobworker.jobs import AbortSignal, JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_count, job_row, make_worker, running


def delay_of(row: dict[str, Any]) -> float:
    """Seconds between the failure (updated_at, the statement's now()) and the next run_at."""
    return (row["run_at"] - row["updated_at"]).total_seconds()


async def failed_attempts(url: str, job_id: int, attempts: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return await job_row(url, job_id)

    row = await eventually(
        probe,
        lambda r: r is not None and r["attempts"] == attempts and r["locked_at"] is None,
        what=f"job {job_id} failed {attempts} times",
    )
    assert row is not None
    return row


@define_job("always_fails", payload=dict)
async def always_fails(payload: dict[str, Any], ctx: JobContext) -> None:
    raise ValueError(f"boom on attempt {ctx.attempt}")


async def test_failure_records_last_error_and_backs_off_exponentially(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("always_fails", max_attempts=30)
    async with running(make_worker(db_url, always_fails)):
        first = await failed_attempts(db_url, job.id, 1)
        assert first["last_error"] == "ValueError: boom on attempt 1"
        assert delay_of(first) == pytest.approx(math.exp(1), abs=0.001)

        await utils.reschedule_jobs([job.id])  # run it again now instead of waiting 2.7 s
        second = await failed_attempts(db_url, job.id, 2)
        assert second["last_error"] == "ValueError: boom on attempt 2"
        assert delay_of(second) == pytest.approx(math.exp(2), abs=0.001)

        # The exponent stops growing at 10 attempts: about 6 h 7 m.
        await utils.reschedule_jobs([job.id], attempts=12)
        capped = await failed_attempts(db_url, job.id, 13)
        assert delay_of(capped) == pytest.approx(math.exp(10), abs=0.01)


async def test_a_job_is_permanently_failed_at_max_attempts(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("always_fails", max_attempts=2)
    async with running(make_worker(db_url, always_fails)):
        await failed_attempts(db_url, job.id, 1)
        await utils.reschedule_jobs([job.id])
        await failed_attempts(db_url, job.id, 2)

    await utils.reschedule_jobs([job.id])  # due now, yet never claimed again
    assert await make_worker(db_url, always_fails).run_once() == 0
    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"], row["last_error"]) == (2, 2, "ValueError: boom on attempt 2")
    assert [j.state for j in await utils.list_jobs()] == ["failed"]


async def test_permanent_job_error_fails_at_once(utils: WorkerUtils, db_url: str) -> None:
    calls = 0

    @define_job("gives_up", payload=dict)
    async def gives_up(payload: dict[str, Any], ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise PermanentJobError("the account was deleted")

    job = await utils.add_job("gives_up", max_attempts=25)
    assert await make_worker(db_url, gives_up).run_once() == 1
    await utils.reschedule_jobs([job.id])
    assert await make_worker(db_url, gives_up).run_once() == 0

    assert calls == 1
    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"]) == (25, 25)
    assert row["last_error"] == "PermanentJobError: the account was deleted"


async def test_retry_job_uses_its_delay_instead_of_the_backoff(utils: WorkerUtils, db_url: str) -> None:
    @define_job("later", payload=dict)
    async def later(payload: dict[str, Any], ctx: JobContext) -> None:
        raise RetryJob(delay=timedelta(minutes=10), message="rate limited")

    job = await utils.add_job("later")
    await make_worker(db_url, later).run_once()

    row = await job_row(db_url, job.id)
    assert row is not None
    assert row["attempts"] == 1 and row["last_error"] == "RetryJob: rate limited"
    assert delay_of(row) == pytest.approx(600, abs=0.001)


async def test_retry_job_without_delay_runs_again_with_the_next_attempt(utils: WorkerUtils, db_url: str) -> None:
    attempts: list[int] = []

    @define_job("twice", payload=dict)
    async def twice(payload: dict[str, Any], ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RetryJob(0)

    await utils.add_job("twice")
    async with running(make_worker(db_url, twice)):
        await eventually(lambda: job_count(db_url), lambda n: n == 0, what="job completion after one retry")
    assert attempts == [1, 2]


async def test_batch_partial_failure_keeps_only_the_failed_items(utils: WorkerUtils, db_url: str) -> None:
    seen: list[list[int]] = []

    @define_job("batch", payload=list[int])
    async def batch(payload: list[int], ctx: JobContext) -> list[Exception | None]:
        seen.append(payload)
        return [ValueError(f"item {i} is odd") if i % 2 else None for i in payload]

    job = await utils.add_job("batch", [1, 2, 3, 4], max_attempts=5)
    await make_worker(db_url, batch).run_once()

    row = await job_row(db_url, job.id)
    assert row is not None
    assert row["payload"] == [1, 3]
    assert row["attempts"] == 1
    assert row["last_error"] == "2 of 4 batch items failed: ValueError: item 1 is odd; ValueError: item 3 is odd"
    assert delay_of(row) == pytest.approx(math.exp(1), abs=0.001)


async def test_batch_with_every_item_succeeding_completes(utils: WorkerUtils, db_url: str) -> None:
    @define_job("batch_ok", payload=list[int])
    async def batch_ok(payload: list[int], ctx: JobContext) -> list[None]:
        return [None for _ in payload]

    await utils.add_job("batch_ok", [1, 2, 3])
    assert await make_worker(db_url, batch_ok).run_once() == 1
    assert await job_count(db_url) == 0


class Email(pydantic.BaseModel):
    to: str
    retries: int


async def test_invalid_payload_fails_permanently_naming_the_field(utils: WorkerUtils, db_url: str) -> None:
    calls = 0

    @define_job("send_email", payload=Email)
    async def send_email(payload: Email, ctx: JobContext) -> None:
        nonlocal calls
        calls += 1

    job = await utils.add_job("send_email", {"to": "a@example.com", "retries": "many"}, max_attempts=10)
    assert await make_worker(db_url, send_email).run_once() == 1
    await utils.reschedule_jobs([job.id])
    assert await make_worker(db_url, send_email).run_once() == 0, "an invalid payload must never be retried"

    assert calls == 0
    row = await job_row(db_url, job.id)
    assert row is not None
    assert row["last_error"].startswith("Invalid job payload:")
    assert "retries" in row["last_error"]
    assert (row["attempts"], row["max_attempts"]) == (10, 10)


async def test_a_job_whose_task_was_renamed_fails_as_unsupported_and_is_retried(
    utils: WorkerUtils, db_url: str
) -> None:
    ran: list[str] = []

    @define_job("known", payload=dict)
    async def known(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_name)

    worker = make_worker(db_url, known)
    async with running(worker):
        # The worker cached the id of "known"; the row now names a task it has no handler for.
        await fetch(
            db_url, "update graphile_worker._private_tasks set identifier = 'renamed' where identifier = 'known'"
        )
        job = await utils.add_job("renamed", max_attempts=5)
        row = await failed_attempts(db_url, job.id, 1)

    assert ran == [], "the handler of 'known' ran a 'renamed' job"
    assert row["last_error"] == "Unsupported task 'renamed': no handler in this worker"
    assert row["attempts"] < row["max_attempts"], "an unknown task must stay retryable for a worker that knows it"
    assert delay_of(row) == pytest.approx(math.exp(1), abs=0.001)


async def test_sync_handlers_run_in_a_thread(utils: WorkerUtils, db_url: str) -> None:
    threads: list[int] = []

    @define_job("blocking", payload=dict)
    def blocking(payload: dict[str, Any], ctx: JobContext) -> None:
        threads.append(threading.get_ident())
        if payload.get("fail"):
            raise RuntimeError("sync failure")

    await utils.add_job("blocking")
    failing = await utils.add_job("blocking", {"fail": True})
    assert await make_worker(db_url, blocking, concurrency=1).run_once() == 2

    assert len(threads) == 2
    assert threading.get_ident() not in threads, "a sync handler ran on the event loop's thread"
    row = await job_row(db_url, failing.id)
    assert row is not None and row["last_error"] == "RuntimeError: sync failure"
    assert await job_count(db_url) == 1


async def test_context_describes_the_job(utils: WorkerUtils, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[JobContext] = []
    signalled_while_running: list[bool] = []

    @define_job("introspect", payload=dict)
    async def introspect(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append(ctx)
        signalled_while_running.append(ctx.signal.is_set())
        ctx.logger.info("hello from the job")

    run_at = datetime.now(UTC) - timedelta(seconds=5)
    job = await utils.add_job(
        "introspect", job_key="ctx-key", max_attempts=7, priority=3, flags=["f1"], queue_name="ctxq", run_at=run_at
    )
    with caplog.at_level(logging.INFO, logger="jobworker.job.introspect"):
        await make_worker(db_url, introspect).run_once()

    [ctx] = seen
    assert (ctx.job_id, ctx.job_name, ctx.attempt, ctx.max_attempts) == (str(job.id), "introspect", 1, 7)
    assert (ctx.job_key, ctx.priority, ctx.flags, ctx.queue_name) == ("ctx-key", 3, frozenset({"f1"}), "ctxq")
    assert ctx.run_at == run_at
    assert ctx.provider == "graphile"
    assert isinstance(ctx.signal, AbortSignal) and signalled_while_running == [False]
    assert not ctx.is_last_attempt
    [record] = [r for r in caplog.records if r.getMessage() == "hello from the job"]
    assert record.name == "jobworker.job.introspect"
    assert record.job_id == str(job.id)  # type: ignore[attr-defined]


async def test_a_failing_job_does_not_stop_the_others(utils: WorkerUtils, db_url: str) -> None:
    ok: list[int] = []

    @define_job("mixed", payload=dict)
    async def mixed(payload: dict[str, Any], ctx: JobContext) -> None:
        if payload["i"] == 2:
            raise KeyError("two")
        await asyncio.sleep(0)
        ok.append(payload["i"])

    for i in range(5):
        await utils.add_job("mixed", {"i": i})
    assert await make_worker(db_url, mixed, concurrency=3).run_once() == 5
    assert sorted(ok) == [0, 1, 3, 4]
    assert await job_count(db_url) == 1


class Picky(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def check(cls, value: int) -> int:
        raise TypeError("validator bug")  # pydantic turns only ValueError/AssertionError into ValidationError


async def test_a_validator_raising_an_unexpected_error_fails_the_job_instead_of_completing_it(
    utils: WorkerUtils, db_url: str
) -> None:
    @define_job("picky", payload=Picky)
    async def picky(payload: Picky, ctx: JobContext) -> None:
        raise AssertionError("the handler must not run")

    job = await utils.add_job("picky", {"n": 1}, max_attempts=3)
    assert await make_worker(db_url, picky).run_once() == 1

    row = await job_row(db_url, job.id)
    assert row is not None, "the job was deleted as if it had succeeded"
    assert row["last_error"] == "TypeError: validator bug"
    assert (row["attempts"], row["locked_at"]) == (1, None)


async def test_an_error_message_with_a_nul_byte_is_recorded_and_does_not_block_other_results(
    utils: WorkerUtils, db_url: str
) -> None:
    @define_job("nul_error", payload=dict)
    async def nul_error(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError("bad byte \x00 in input")

    @define_job("fine", payload=dict)
    async def fine(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    bad = await utils.add_job("nul_error", max_attempts=5)
    async with running(make_worker(db_url, nul_error, fine)):
        row = await failed_attempts(db_url, bad.id, 1)
        good = await utils.add_job("fine")
        await eventually(lambda: job_row(db_url, good.id), lambda r: r is None, what="the other job completed")

    assert row["last_error"] == "ValueError: bad byte \\x00 in input"


async def test_an_error_message_with_a_lone_surrogate_is_recorded_and_the_finisher_survives(
    utils: WorkerUtils, db_url: str
) -> None:
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")  # an undecodable file name, as os.listdir gives

    @define_job("surrogate_error", payload=dict)
    async def surrogate_error(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError(f"cannot parse {name}")

    @define_job("fine", payload=dict)
    async def fine(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    bad = await utils.add_job("surrogate_error", max_attempts=5)
    async with running(make_worker(db_url, surrogate_error, fine)):
        row = await failed_attempts(db_url, bad.id, 1)
        good = await utils.add_job("fine")
        await eventually(lambda: job_row(db_url, good.id), lambda r: r is None, what="the other job completed")

    assert row["last_error"] == "ValueError: cannot parse report-\\udcff.csv"


async def test_a_huge_retry_delay_is_capped_and_does_not_block_other_results(utils: WorkerUtils, db_url: str) -> None:
    @define_job("far_future", payload=dict)
    async def far_future(payload: dict[str, Any], ctx: JobContext) -> None:
        if payload.get("huge"):
            raise RetryJob(delay=timedelta(days=10**8))

    await utils.add_job("far_future", {"huge": True})
    await utils.add_job("far_future", {"huge": False})
    assert await make_worker(db_url, far_future).run_once() == 2

    [left] = await utils.list_jobs()
    assert left.state == "scheduled" and left.locked_at is None
    assert left.run_at > datetime.now(UTC) + timedelta(days=365 * 9)
    assert "RetryJob" in (left.last_error or "")


async def test_a_huge_negative_retry_delay_retries_now_instead_of_leaving_the_job_locked(
    utils: WorkerUtils, db_url: str
) -> None:
    attempts: list[int] = []

    @define_job("past", payload=dict)
    async def past(payload: dict[str, Any], ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RetryJob(delay=timedelta.min)

    job = await utils.add_job("past")
    async with running(make_worker(db_url, past)):
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, within=10, what="retried and completed")
    assert attempts == [1, 2]

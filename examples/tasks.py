"""Example jobs for `make demo` and the sample JobWorkerPools (``--tasks examples.tasks``)."""

from __future__ import annotations

import asyncio
import random

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from jobworker import JobContext, JobRegistry, RetryJob, define_job


class Email(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str
    body: str = ""


@define_job("send_email", payload=Email, max_attempts=5)
async def send_email(payload: Email, ctx: JobContext) -> None:
    ctx.logger.info("sending %r to %s (attempt %d)", payload.subject, payload.to, ctx.attempt)
    await asyncio.sleep(0.05)


class Report(TypedDict):
    account_id: int


@define_job("build_report", payload=Report, queue="reports")
async def build_report(payload: Report, ctx: JobContext) -> None:
    """Runs in the serial queue "reports": one report at a time, whatever the concurrency."""
    ctx.logger.info("building report for account %d", payload["account_id"])
    await asyncio.sleep(0.2)


class Flaky(BaseModel):
    succeed_on_attempt: int = 2


@define_job("flaky_call", payload=Flaky, max_attempts=3)
async def flaky_call(payload: Flaky, ctx: JobContext) -> None:
    if ctx.attempt < payload.succeed_on_attempt:
        # A short explicit retry keeps the demo quick; without it the backoff is exp(attempts) seconds.
        raise RetryJob(delay=1, message=f"upstream timed out (attempt {ctx.attempt})")
    ctx.logger.info("flaky_call succeeded on attempt %d", ctx.attempt)


class Cleanup(BaseModel):
    older_than_days: int = 30


@define_job("nightly_cleanup", payload=Cleanup, schedule="0 3 * * *")
def nightly_cleanup(payload: Cleanup, ctx: JobContext) -> int:
    """A sync handler: jobworker runs it in a thread."""
    removed = random.randint(0, 10)
    ctx.logger.info("removed %d rows older than %d days", removed, payload.older_than_days)
    return removed


registry = JobRegistry([send_email, build_report, flaky_call, nightly_cleanup])

"""One job module run unchanged under every provider: graphile (Worker) and qstash (HTTP endpoint).

Handlers record what they saw in ``CALLS``, so tests can compare the providers' JobContext.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from jobworker import JobContext, JobRegistry, PermanentJobError, RetryJob, define_job


@dataclass(frozen=True)
class Call:
    job: str
    payload: dict[str, object]
    provider: str
    job_id: str
    attempt: int
    max_attempts: int
    job_key: str | None


CALLS: list[Call] = []


class Greeting(pydantic.BaseModel):
    name: str
    times: int = 1


class Flaky(pydantic.BaseModel):
    succeed_on: int


def _record(job: str, payload: pydantic.BaseModel, ctx: JobContext) -> None:
    CALLS.append(Call(job, payload.model_dump(), ctx.provider, ctx.job_id, ctx.attempt, ctx.max_attempts, ctx.job_key))


@define_job("greet", payload=Greeting, max_attempts=3)
async def greet(payload: Greeting, ctx: JobContext) -> None:
    _record("greet", payload, ctx)


@define_job("greet_sync", payload=Greeting)
def greet_sync(payload: Greeting, ctx: JobContext) -> None:
    _record("greet_sync", payload, ctx)


@define_job("flaky", payload=Flaky, max_attempts=5)
async def flaky(payload: Flaky, ctx: JobContext) -> None:
    _record("flaky", payload, ctx)
    if ctx.attempt < payload.succeed_on:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")


@define_job("doomed", payload=Greeting, max_attempts=5)
async def doomed(payload: Greeting, ctx: JobContext) -> None:
    _record("doomed", payload, ctx)
    raise PermanentJobError("this can never work")


@define_job("later", payload=Greeting, max_attempts=5)
async def later(payload: Greeting, ctx: JobContext) -> None:
    _record("later", payload, ctx)
    if ctx.attempt == 1:
        raise RetryJob(delay=2, message="not yet")


class Tick(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")


@define_job("every_minute", payload=Tick, schedule="* * * * *")
async def every_minute(payload: Tick, ctx: JobContext) -> None:
    _record("every_minute", payload, ctx)


registry = JobRegistry([greet, greet_sync, flaky, doomed, later, every_minute])

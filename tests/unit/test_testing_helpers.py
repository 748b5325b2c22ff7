from __future__ import annotations

import pytest
from pydantic import BaseModel

from jobworker import JobContext, define_job
from jobworker.errors import InvalidPayloadError
from jobworker.jobs import AbortSignal
from jobworker.testing import run_job


class Greeting(BaseModel):
    name: str


@define_job("greet", payload=Greeting, max_attempts=3)
async def greet(payload: Greeting, ctx: JobContext) -> str:
    return f"hello {payload.name} on attempt {ctx.attempt}/{ctx.max_attempts}"


@define_job("greet_sync", payload=Greeting)
def greet_sync(payload: Greeting, ctx: JobContext) -> bool:
    return ctx.signal.is_set()


async def test_run_job_validates_and_calls_the_handler_like_a_worker() -> None:
    assert await run_job(greet, Greeting(name="ada"), attempt=2) == "hello ada on attempt 2/3"
    assert await run_job(greet, {"name": "bob"}) == "hello bob on attempt 1/3"


async def test_run_job_rejects_a_bad_payload_naming_the_field() -> None:
    with pytest.raises(InvalidPayloadError, match=r"^Invalid job payload: name: Field required"):
        await run_job(greet, {"nom": "x"})


async def test_sync_handlers_see_the_abort_signal() -> None:
    signal = AbortSignal()
    signal.fire("test")
    assert await run_job(greet_sync, {"name": "x"}, signal=signal) is True

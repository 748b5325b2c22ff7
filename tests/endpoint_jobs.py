"""Jobs for the endpoint tests that run ``jobworker serve`` as a process.

The handlers run in that process, so each appends one JSON line per run to the file named by
``ENDPOINT_TEST_CALLS``; the tests read it back.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pydantic

from jobworker import JobContext, JobRegistry, define_job


class Note(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    text: str = ""
    release: str | None = None
    """For ``hold``: a file whose appearance lets the handler finish."""


def _record(job: str, payload: Note, ctx: JobContext) -> None:
    line = {"job": job, "text": payload.text, "job_id": ctx.job_id, "attempt": ctx.attempt, "key": ctx.job_key}
    with open(os.environ["ENDPOINT_TEST_CALLS"], "a") as out:
        out.write(json.dumps(line) + "\n")


@define_job("record", payload=Note, max_attempts=3)
async def record(payload: Note, ctx: JobContext) -> None:
    _record("record", payload, ctx)


@define_job("hold", payload=Note)
def hold(payload: Note, ctx: JobContext) -> None:
    """Stays running until ``payload.release`` exists (at most 60 s), to keep a request slot busy."""
    _record("hold", payload, ctx)
    deadline = time.monotonic() + 60
    while payload.release and not Path(payload.release).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


ODD_NAME = "mail to/ü 100%?#"
"""A name graphile allows that is not URL-safe: the provider and the endpoint percent-encode it."""


@define_job(ODD_NAME, payload=Note)
async def odd(payload: Note, ctx: JobContext) -> None:
    _record(ctx.job_name, payload, ctx)


registry = JobRegistry([record, hold, odd])

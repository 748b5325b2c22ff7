"""Tasks of the e2e app image. Each run is written to ``public.e2e_runs`` so that the tests can see what
ran where, which attempt it was, and how it ended."""

from __future__ import annotations

import asyncio
import os
import socket

import psycopg
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from jobworker import JobContext, define_job


class Tagged(TypedDict):
    tag: str


class Sleep(TypedDict):
    tag: str
    seconds: float


def _record(ctx: JobContext, tag: str, outcome: str) -> None:
    url = os.environ.get("WORKER_DATABASE_URL") or os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into public.e2e_runs (job_id, attempt, tag, pod, outcome) values (%s, %s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, tag, socket.gethostname(), outcome),
        )


@define_job("record", payload=Tagged)
async def record(payload: Tagged, ctx: JobContext) -> None:
    await asyncio.to_thread(_record, ctx, payload["tag"], "done")


@define_job("sleep", payload=Sleep)
async def sleep(payload: Sleep, ctx: JobContext) -> None:
    """Runs for ``seconds`` unless the worker asks it to stop; then it gives up (and is handed back)."""
    await asyncio.to_thread(_record, ctx, payload["tag"], "started")
    try:
        await asyncio.wait_for(ctx.signal.wait(), payload["seconds"])
    except TimeoutError:
        await asyncio.to_thread(_record, ctx, payload["tag"], "done")
        return
    await asyncio.to_thread(_record, ctx, payload["tag"], "aborted")
    raise RuntimeError(f"stopped: {ctx.signal.reason}")

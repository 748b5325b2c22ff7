"""Jobs for the ``jobworker worker`` subprocesses of the acceptance tests.

``jobworker worker --tasks tests.acceptance.acceptance_tasks``. Every handler writes what it did to
``public.acceptance_effects`` in the database named by ``DATABASE_URL``: a ``started`` row when it
begins and a ``done`` row when it succeeds, so tests count side effects across processes and
runtimes (the Node task list in ``node/worker.js`` writes the same rows with runtime ``node``).

``ACCEPTANCE_SLEEP`` (seconds, default 0) makes ``slow``, ``slow_sync`` and ``polite`` take that
long, so one worker process can be told to hang mid-job and the next to finish at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg

from jobworker import JobContext, JobRegistry, define_job

EFFECTS_DDL = """
create table if not exists public.acceptance_effects (
  id bigserial primary key,
  job_id bigint not null,
  task text not null,
  runtime text not null,
  attempt int not null,
  note text not null,
  at timestamptz not null default clock_timestamp()
)
"""
INSERT = (
    "insert into public.acceptance_effects (job_id, task, runtime, attempt, note) values (%s, %s, 'python', %s, %s)"
)


def _url() -> str:
    return os.environ["DATABASE_URL"]


def _sleep_seconds() -> float:
    return float(os.environ.get("ACCEPTANCE_SLEEP", "0"))


async def _note(ctx: JobContext, note: str) -> None:
    async with await psycopg.AsyncConnection.connect(_url(), autocommit=True, connect_timeout=5) as conn:
        await conn.execute(INSERT, (int(ctx.job_id), ctx.job_name, ctx.attempt, note))


def _note_sync(ctx: JobContext, note: str) -> None:
    with psycopg.connect(_url(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(INSERT, (int(ctx.job_id), ctx.job_name, ctx.attempt, note))


@define_job("record", payload=dict[str, Any])
async def record(payload: dict[str, Any], ctx: JobContext) -> None:
    """Record the run; ``{"sleep": s}`` holds the job for s seconds between its two rows."""
    await _note(ctx, "started")
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    await _note(ctx, "done")


@define_job("slow", payload=dict[str, Any])
async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
    """Ignores the abort signal: only the grace period or a forced stop ends it early."""
    await _note(ctx, "started")
    await asyncio.sleep(_sleep_seconds())
    await _note(ctx, "done")


@define_job("slow_sync", payload=dict[str, Any])
def slow_sync(payload: dict[str, Any], ctx: JobContext) -> None:
    """A sync handler in a thread that nothing can interrupt."""
    _note_sync(ctx, "started")
    time.sleep(_sleep_seconds())
    _note_sync(ctx, "done")


@define_job("polite", payload=dict[str, Any])
async def polite(payload: dict[str, Any], ctx: JobContext) -> None:
    """Gives up as soon as the worker asks it to stop."""
    await _note(ctx, "started")
    try:
        await asyncio.wait_for(ctx.signal.wait(), _sleep_seconds())
    except TimeoutError:
        await _note(ctx, "done")
        return
    raise RuntimeError(f"aborted: {ctx.signal.reason}")


@define_job("pure", payload=dict[str, Any])
async def pure(payload: dict[str, Any], ctx: JobContext) -> None:
    """Touches no database: it can finish while PostgreSQL is down. ``{"sleep": s}`` holds it s seconds."""
    await asyncio.sleep(float(payload.get("sleep", 0)))


registry = JobRegistry([record, slow, slow_sync, polite, pure])

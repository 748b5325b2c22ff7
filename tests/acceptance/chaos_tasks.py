"""The job of the chaos suite: records every run in ``public.chaos_runs`` (the side table), honours ctx.signal.

``jobworker worker --tasks tests.acceptance.chaos_tasks``. A run row is written when the handler starts and
completed with the handler's own end time and outcome, so the suite can tell, for every run, whether it
was still going when its job row was deleted. Payload: ``{"sleep": s}`` holds the job s seconds (or until
ctx.signal fires: outcome ``aborted``); ``{"fail": true}`` always fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from jobworker import JobContext, define_job

CHAOS_DDL = """
create table if not exists public.chaos_runs (
  run_id uuid primary key, job_id bigint not null, attempt int not null, pid int not null, queue text,
  started_at timestamptz not null, finished_at timestamptz, outcome text
);
create table if not exists public.chaos_deleted (
  job_id bigint not null, deleted_at timestamptz not null default clock_timestamp(), locked_by text
);
create or replace function public.chaos_on_delete() returns trigger language plpgsql as $$
begin
  insert into public.chaos_deleted (job_id, locked_by) values (old.id, old.locked_by);
  return old;
end $$;
create trigger chaos_on_delete after delete on graphile_worker._private_jobs
  for each row execute function public.chaos_on_delete();
"""


async def _write(query: Any, params: Any, *, patient: bool) -> None:
    """One statement on its own connection; ``patient`` retries for a minute (the database may be down)."""
    deadline = asyncio.get_running_loop().time() + (60 if patient else 0)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                os.environ["DATABASE_URL"], autocommit=True, connect_timeout=2
            ) as conn:
                await conn.execute(query, params)
                return
        except psycopg.Error:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@define_job("chaos", payload=dict[str, Any])
async def chaos(payload: dict[str, Any], ctx: JobContext) -> None:
    run_id = uuid.uuid4()
    await _write(
        "insert into public.chaos_runs (run_id, job_id, attempt, pid, queue, started_at) "
        "values (%s, %s, %s, %s, %s, %s)",
        (run_id, int(ctx.job_id), ctx.attempt, os.getpid(), ctx.queue_name, datetime.now(UTC)),
        patient=False,
    )
    outcome = "error"
    try:
        if payload.get("fail"):
            raise RuntimeError("chaos: this job always fails")
        waiter = asyncio.ensure_future(ctx.signal.wait())
        done, _ = await asyncio.wait([waiter], timeout=float(payload.get("sleep", 0)))
        if waiter in done:
            outcome = "aborted"
            raise RuntimeError(f"chaos: aborted ({ctx.signal.reason})")
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        outcome = "ok"
    finally:
        # The end time is taken here, not when the write lands: a partitioned worker writes it late.
        ended = datetime.now(UTC)
        with contextlib.suppress(psycopg.Error):
            await _write(
                "update public.chaos_runs set finished_at = %s, outcome = %s where run_id = %s",
                (ended, outcome, run_id),
                patient=True,
            )

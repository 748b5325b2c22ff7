"""The job of the chaos suite: records every run in ``public.chaos_runs`` (the side table), honours ctx.signal.

``jobworker worker --tasks tests.acceptance.chaos_tasks``. A run row is written when the handler starts and
completed with the handler's own end time and outcome, so the suite can tell, for every run, whether it
was still going when its job row was deleted. Payload: ``{"sleep": s}`` holds the job s seconds (or until
ctx.signal fires: outcome ``aborted``); ``{"fail": true}`` always fails; ``{"hold": s}`` first runs a
statement of s seconds on the side table's connection, blind to ctx.signal meanwhile (a handler blocked on I/O);
``{"blind": s}`` waits s seconds, not watching ctx.signal, before its first side-table write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from jobworker import JobContext, define_job

CHAOS_DDL = """
create table if not exists public.chaos_runs (
  run_id uuid primary key, job_id bigint not null, attempt int not null, pid int not null, queue text,
  started_at timestamptz not null, finished_at timestamptz, outcome text, locked_by text
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
-- Every lock taken from a worker without deleting the row (a failure, a return, a stray-lock release, a
-- sweep), with the statement that did it: the evidence that explains a second run of the job.
create table if not exists public.chaos_unlocks (
  job_id bigint not null, locked_by text not null, unlocked_at timestamptz not null default clock_timestamp(),
  attempts_before int not null, attempts_after int not null, statement text not null
);
create or replace function public.chaos_on_unlock() returns trigger language plpgsql as $$
begin
  insert into public.chaos_unlocks (job_id, locked_by, attempts_before, attempts_after, statement)
  values (old.id, old.locked_by, old.attempts, new.attempts, left(coalesce(current_query(), ''), 300));
  return new;
end $$;
create trigger chaos_on_unlock after update on graphile_worker._private_jobs
  for each row when (old.locked_by is not null and new.locked_by is distinct from old.locked_by)
  execute function public.chaos_on_unlock();
"""


_pool: AsyncConnectionPool[Any] | None = None


async def _connections() -> AsyncConnectionPool[Any]:
    """This process's connections to the side table, opened once and kept: while the postmaster is frozen
    (SIGSTOP) only new connections hang, so a handler that connected per write failed every run then."""
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(
            os.environ["DATABASE_URL"],
            min_size=2,
            max_size=8,
            kwargs={"autocommit": True, "connect_timeout": 2},
            open=False,
        )
        await _pool.open(wait=False)
    return _pool


async def _write(query: Any, params: Any, *, patient: bool) -> None:
    """One statement; ``patient`` retries for a minute (the database may be down), else for 5 s."""
    pool = await _connections()
    deadline = asyncio.get_running_loop().time() + (60 if patient else 5)
    while True:
        try:
            async with pool.connection(timeout=2) as conn:
                await conn.execute(query, params)
                return
        except (psycopg.Error, PoolTimeout):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@define_job("chaos", payload=dict[str, Any])
async def chaos(payload: dict[str, Any], ctx: JobContext) -> None:
    run_id, started = uuid.uuid4(), datetime.now(UTC)
    if payload.get("blind"):
        await asyncio.sleep(float(payload["blind"]))  # busy with something else, not watching ctx.signal
    await _write(
        # locked_by: who holds the job when this write lands (a partition may hold it back: then not us).
        "insert into public.chaos_runs (run_id, job_id, attempt, pid, queue, started_at, locked_by) "
        "values (%s, %s, %s, %s, %s, %s, (select locked_by from graphile_worker._private_jobs where id = %s)) "
        "on conflict (run_id) do nothing",  # a retry after a lost reply
        (run_id, int(ctx.job_id), ctx.attempt, os.getpid(), ctx.queue_name, started, int(ctx.job_id)),
        patient=False,
    )
    outcome = "error"
    try:
        if payload.get("fail"):
            raise RuntimeError("chaos: this job always fails")
        if payload.get("hold"):
            await _write("select pg_sleep(%s)", (float(payload["hold"]),), patient=False)
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
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            await _write(
                "update public.chaos_runs set finished_at = %s, outcome = %s where run_id = %s",
                (ended, outcome, run_id),
                patient=True,
            )

"""Helpers for the runtime's integration tests: read rows back, poll with deadlines, run workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobworker.jobs import JobDefinition
from jobworker.registry import JobRegistry
from jobworker.worker import Worker

T = TypeVar("T")

# Fast settings: tests never wait for the 2 s poll or the 30 s grace period.
FAST: dict[str, Any] = {"poll_interval": 0.05, "graceful_shutdown": 2.0, "heartbeat_interval": 0.2}


async def fetch(url: str, query: LiteralString, params: Any = None) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def job_rows(url: str) -> list[dict[str, Any]]:
    """Every job with its task identifier and queue name, oldest first."""
    return await fetch(
        url,
        "select j.*, t.identifier as task_identifier, q.queue_name "
        "from graphile_worker._private_jobs j "
        "join graphile_worker._private_tasks t on t.id = j.task_id "
        "left join graphile_worker._private_job_queues q on q.id = j.job_queue_id order by j.id",
    )


async def job_row(url: str, job_id: int) -> dict[str, Any] | None:
    rows = [r for r in await job_rows(url) if r["id"] == job_id]
    return rows[0] if rows else None


async def job_count(url: str) -> int:
    return int((await fetch(url, "select count(*) as n from graphile_worker._private_jobs"))[0]["n"])


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], *, within: float = 5.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value once the deadline passes."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s; last value: {value!r}")
        await asyncio.sleep(0.02)


async def wait_event(event: asyncio.Event, within: float = 5.0, what: str = "event") -> None:
    try:
        await asyncio.wait_for(event.wait(), within)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {within}s") from None


def make_worker(url: str, *jobs: JobDefinition[Any], **options: Any) -> Worker:
    return Worker(JobRegistry(jobs), database_url=url, **{**FAST, **options})


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in the background; stop it and wait for a clean exit afterwards."""
    task = asyncio.create_task(worker.run())
    started = asyncio.create_task(worker.started.wait())
    await asyncio.wait([task, started], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raise the start-up error
    assert worker.started.is_set(), "worker did not start within 10s"
    try:
        yield task
    finally:
        if not task.done() and not worker.stopping:  # a second stop() would skip the grace period
            worker.stop()
        await asyncio.wait_for(task, 20)


async def listening(url: str, channel: str = "jobs:insert", within: float = 5.0) -> None:
    """Wait until some session LISTENs on ``channel`` (the worker's wake-up connection)."""
    pattern = f'listen "{channel}"'

    async def probe() -> int:
        rows = await fetch(
            url,
            "select count(*) as n from pg_stat_activity where datname = current_database() and query = %s",
            [pattern],
        )
        return int(rows[0]["n"])

    await eventually(probe, lambda n: n > 0, within=within, what="worker LISTEN")


async def lock_job(url: str, job_id: int, worker_id: str = "other-worker", *, age_seconds: float = 0) -> None:
    """Mark a job as claimed by ``worker_id`` ``age_seconds`` ago (and its queue, if it has one)."""
    await fetch(
        url,
        "with j as (update graphile_worker._private_jobs set locked_by = %(w)s, "
        "  locked_at = now() - %(age)s * interval '1 second', attempts = attempts + 1 "
        "  where id = %(id)s returning job_queue_id) "
        "update graphile_worker._private_job_queues q set locked_by = %(w)s, "
        "  locked_at = now() - %(age)s * interval '1 second' from j where q.id = j.job_queue_id",
        {"w": worker_id, "id": job_id, "age": age_seconds},
    )


async def register_worker(url: str, worker_id: str, *, age_seconds: float = 0, tasks: list[str] | None = None) -> None:
    """A row in _private_workers whose last heartbeat was ``age_seconds`` ago."""
    await fetch(
        url,
        "insert into graphile_worker._private_workers (id, last_heartbeat_at, started_at, metadata) "
        "values (%(w)s, now() - %(age)s * interval '1 second', now() - %(age)s * interval '1 second', %(m)s)",
        {"w": worker_id, "age": age_seconds, "m": Jsonb({"tasks": tasks or []})},
    )

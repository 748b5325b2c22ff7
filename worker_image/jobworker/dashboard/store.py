"""The dashboard's reads: the ``dashboard_*`` queries (``dashboard/queries.py``) through one ``JobStore`` pool.

Writes never happen here; every action goes through WorkerUtils (``actions.py``). In read-only mode the
pool's sessions also run with ``default_transaction_read_only``, so a read can never write, whatever
role the URL names.

Per-state counts: exact while the table is small; above ``EXACT_LIMIT`` rows an estimate from a block
sample, because no exact method fits the overview's 100 ms on a million rows without a cost on every job
(docs/dashboard.md, "Large tables"). ``exact_counts()`` counts every row on request, at most once per
``EXACT_EVERY`` seconds whatever the number of tabs asking.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from jobworker import errors
from jobworker.dashboard import queries as q
from jobworker.store import JobStore, PoolOptions

STATES = ("ready", "scheduled", "retrying", "running", "failed")
EXACT_LIMIT = 200_000
"""Above this many rows (the planner's estimate) the overview counts a block sample instead of every row."""
SAMPLE_ROWS = 20_000
PAGE_SIZE = 50
EXACT_EVERY = 30.0
"""Seconds an on-request exact count is reused: each is a full scan (about a second on a million rows)."""


@dataclass(frozen=True)
class Count:
    task: str
    queue: str | None
    state: str
    count: int


@dataclass(frozen=True)
class Overview:
    """One snapshot of the overview page; every open tab shares the latest one."""

    taken_at: datetime
    counts: list[Count]
    sampled_percent: float | None
    """None when the counts are exact; else the share of the table the estimate was scaled from."""
    oldest_waiting_seconds: float | None
    workers_live: int
    workers_stale: int
    completed_per_minute: list[tuple[datetime, int]] = field(default_factory=list)
    """Per minute, summed over jobworker workers (recorded with their heartbeats; Node and Rust ones do not)."""
    failed_per_minute: list[tuple[datetime, int]] = field(default_factory=list)
    throughput_recorded: bool = True
    """False when the schema has no throughput table yet (before jobworker migration 4)."""
    counted_in_ms: float | None = None
    """How long an on-request exact count took (None for the live snapshot)."""

    def total(self, state: str) -> int:
        return sum(c.count for c in self.counts if c.state == state)


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    task: str | None = None
    queue_name: str | None = None
    key: str | None = None
    error: str | None = None


def _counts(rows: list[q.StateCount]) -> list[Count]:
    return [Count(r.task_identifier, r.queue_name, r.state, r.count) for r in rows]


class DashboardStore:
    """Reads for the pages. ``overview()`` is cached for ``refresh`` seconds, so N tabs cost one query set."""

    def __init__(
        self, database_url: str, schema: str, *, read_only: bool, refresh: float = 2.0, stale_after: float = 300.0
    ) -> None:
        self.schema = schema
        self.refresh = refresh
        self.stale_after = stale_after
        self.db = JobStore(
            database_url, schema, pool=PoolOptions(min_size=1, max_size=4, open_timeout=10), read_only=read_only
        )
        self._overview: Overview | None = None
        self._overview_mono = 0.0
        self._overview_lock = asyncio.Lock()
        self._exact: Overview | None = None
        self._exact_mono = 0.0
        self._exact_lock = asyncio.Lock()

    @property
    def queries_run(self) -> int:
        """How many statements this store has sent: the bench reads it to show what many tabs cost."""
        return self.db.statements

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    # -- overview ---------------------------------------------------------------------------------
    async def overview(self) -> Overview:
        """The cached snapshot, refreshed by whichever request finds it older than ``refresh``."""
        async with self._overview_lock:
            if self._overview is None or time.monotonic() - self._overview_mono >= self.refresh:
                self._overview = await self._take_overview()
                self._overview_mono = time.monotonic()
            return self._overview

    async def exact_counts(self) -> Overview:
        """The live snapshot with every row counted, taken at most once per ``EXACT_EVERY`` seconds."""
        async with self._exact_lock:
            if self._exact is None or time.monotonic() - self._exact_mono >= EXACT_EVERY:
                base = await self.overview()
                started = time.perf_counter()
                rows = await self.db.all(q.COUNTS_EXACT)
                took = (time.perf_counter() - started) * 1000
                self._exact = Overview(
                    taken_at=datetime.now(UTC),
                    counts=_counts(rows),
                    sampled_percent=None,
                    oldest_waiting_seconds=base.oldest_waiting_seconds,
                    workers_live=base.workers_live,
                    workers_stale=base.workers_stale,
                    completed_per_minute=base.completed_per_minute,
                    failed_per_minute=base.failed_per_minute,
                    throughput_recorded=base.throughput_recorded,
                    counted_in_ms=took,
                )
                self._exact_mono = time.monotonic()
            return self._exact

    async def _take_overview(self) -> Overview:
        size = await self.db.one(q.TABLE_SIZE)
        estimate = size.estimate if size else 0
        percent: float | None = None
        if estimate > EXACT_LIMIT:
            percent = min(100.0, max(0.01, 100.0 * SAMPLE_ROWS / estimate))
            rows = await self.db.all(q.COUNTS_SAMPLED, {"percent": percent})
        else:
            rows = await self.db.all(q.COUNTS_EXACT)
        oldest = await self.db.one(q.OLDEST_WAITING)
        workers = await self.db.one(q.WORKER_COUNTS, {"threshold": self.stale_after})
        series: list[q.ThroughputMinute] | None
        try:
            series = await self.db.all(q.THROUGHPUT)
        except errors.DatabaseError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                raise
            series = None  # a schema before jobworker migration 4: the pages work, the chart says why it is empty
        oldest_seconds = oldest.oldest_seconds if oldest else None
        return Overview(
            taken_at=datetime.now(UTC),
            counts=_counts(rows),
            sampled_percent=percent,
            oldest_waiting_seconds=None if oldest_seconds is None else max(0.0, oldest_seconds),
            workers_live=workers.live if workers else 0,
            workers_stale=workers.stale if workers else 0,
            completed_per_minute=[(r.minute, r.completed) for r in series or []],
            failed_per_minute=[(r.minute, r.failed) for r in series or []],
            throughput_recorded=series is not None,
        )

    # -- jobs -------------------------------------------------------------------------------------
    async def list_jobs(self, f: JobFilter, *, before: int | None = None, limit: int = PAGE_SIZE) -> list[q.JobRow]:
        params: dict[str, Any] = {
            "before": before,
            "task": f.task,
            "queue_name": f.queue_name,
            "key": f.key,
            "error": f.error,
            "state": f.state,
            "limit": limit,
        }
        return await self.db.all(q.LIST_JOBS, params)

    async def job(self, job_id: int) -> q.JobDetail | None:
        return await self.db.one(q.JOB, {"job_id": job_id})

    async def filter_options(self) -> tuple[list[str], list[str]]:
        found = await self.db.all(q.FILTER_OPTIONS)
        return [r.name for r in found if r.kind == "task"], [r.name for r in found if r.kind == "queue"]

    # -- failures, workers, queues, schedules ------------------------------------------------------
    async def failure_groups(self, limit: int = 200) -> list[q.FailureGroup]:
        return await self.db.all(q.FAILURE_GROUPS, {"limit": limit})

    async def failure_group_jobs(self, task: str, first_line: str, limit: int = 1000) -> list[q.ActionableJob]:
        return await self.db.all(q.FAILURE_GROUP_JOBS, {"task": task, "first_line": first_line, "limit": limit})

    async def workers(self) -> list[q.WorkerRow]:
        return await self.db.all(q.WORKERS)

    async def unregistered_locks(self) -> list[q.UnregisteredLock]:
        return await self.db.all(q.UNREGISTERED_LOCKS)

    async def queues(self) -> list[q.QueueRow]:
        return await self.db.all(q.QUEUES)

    async def schedules(self) -> list[q.KnownSchedule]:
        return await self.db.all(q.SCHEDULES)

    # -- guards before an action ------------------------------------------------------------------
    async def unlocked_jobs(self, job_ids: list[int]) -> list[q.ActionableJob]:
        return await self.db.all(q.UNLOCKED_JOBS, {"job_ids": job_ids})

    async def job_by_key(self, job_key: str) -> q.KeyedJob | None:
        return await self.db.one(q.JOB_BY_KEY, {"job_key": job_key})

"""The dashboard's reads: one ``dashboard_*`` query per method, through a small connection pool.

Writes never happen here; every action goes through WorkerUtils (``actions.py``). In read-only mode the
pool's sessions also run with ``default_transaction_read_only``, so a read can never write, whatever
role the URL names.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from jobworker import db, errors, sql

STATES = ("ready", "scheduled", "retrying", "running", "failed")
EXACT_LIMIT = 200_000
"""Above this many rows (the planner's estimate) the overview counts a block sample instead of every row."""
SAMPLE_ROWS = 20_000
PAGE_SIZE = 50


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

    def total(self, state: str) -> int:
        return sum(c.count for c in self.counts if c.state == state)


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    task: str | None = None
    queue_name: str | None = None
    key: str | None = None
    error: str | None = None


class DashboardStore:
    """Reads for the pages. ``overview()`` is cached for ``refresh`` seconds, so N tabs cost one query set."""

    def __init__(
        self, database_url: str, schema: str, *, read_only: bool, refresh: float = 2.0, stale_after: float = 300.0
    ) -> None:
        self.schema = schema
        self.refresh = refresh
        self.stale_after = stale_after
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if read_only:
            kwargs["options"] = "-c default_transaction_read_only=on"
        self.pool = AsyncConnectionPool(database_url, min_size=1, max_size=4, kwargs=kwargs, open=False)
        self._overview: Overview | None = None
        self._overview_mono = 0.0
        self._overview_lock = asyncio.Lock()
        self.queries_run = 0
        """How many statements this store has sent: the bench reads it to show what many tabs cost."""

    async def open(self) -> None:
        with db.wrap_exceptions():
            await self.pool.open(wait=True, timeout=10)

    async def close(self) -> None:
        await self.pool.close()

    def q(self, name: str) -> LiteralString:
        return sql.query(name, self.schema)

    async def rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries_run += 1
        with db.wrap_exceptions():
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(self.q(name), params)
                return await cur.fetchall() if cur.description else []

    # -- overview ---------------------------------------------------------------------------------
    async def overview(self) -> Overview:
        """The cached snapshot, refreshed by whichever request finds it older than ``refresh``."""
        async with self._overview_lock:
            if self._overview is None or time.monotonic() - self._overview_mono >= self.refresh:
                self._overview = await self._take_overview()
                self._overview_mono = time.monotonic()
            return self._overview

    async def _take_overview(self) -> Overview:
        size = await self.rows("dashboard_table_size")
        estimate = int(size[0]["estimate"]) if size else 0
        percent: float | None = None
        if estimate > EXACT_LIMIT:
            percent = min(100.0, max(0.01, 100.0 * SAMPLE_ROWS / estimate))
            rows = await self.rows("dashboard_counts_sampled", {"percent": percent})
        else:
            rows = await self.rows("dashboard_counts_exact")
        counts = [Count(r["task_identifier"], r["queue_name"], r["state"], int(r["count"])) for r in rows]
        oldest = (await self.rows("dashboard_oldest_waiting"))[0]["oldest_seconds"]
        workers = (await self.rows("dashboard_worker_counts", {"threshold": self.stale_after}))[0]
        try:
            series = await self.rows("dashboard_throughput")
        except errors.DatabaseError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                raise
            series = None  # a schema before jobworker migration 4: the pages work, the chart says why it is empty
        return Overview(
            taken_at=datetime.now(UTC),
            counts=counts,
            sampled_percent=percent,
            oldest_waiting_seconds=None if oldest is None else max(0.0, float(oldest)),
            workers_live=int(workers["live"]),
            workers_stale=int(workers["stale"]),
            completed_per_minute=[(r["minute"], int(r["completed"])) for r in series or []],
            failed_per_minute=[(r["minute"], int(r["failed"])) for r in series or []],
            throughput_recorded=series is not None,
        )

    # -- jobs -------------------------------------------------------------------------------------
    async def list_jobs(
        self, f: JobFilter, *, before: int | None = None, limit: int = PAGE_SIZE
    ) -> list[dict[str, Any]]:
        return await self.rows(
            "dashboard_list_jobs",
            {
                "before": before,
                "task": f.task,
                "queue_name": f.queue_name,
                "key": f.key,
                "error": f.error,
                "state": f.state,
                "limit": limit,
            },
        )

    async def job(self, job_id: int) -> dict[str, Any] | None:
        found = await self.rows("dashboard_job", {"job_id": job_id})
        return found[0] if found else None

    async def filter_options(self) -> tuple[list[str], list[str]]:
        found = await self.rows("dashboard_filter_options")
        return [r["name"] for r in found if r["kind"] == "task"], [r["name"] for r in found if r["kind"] == "queue"]

    # -- failures, workers, queues, schedules ------------------------------------------------------
    async def failure_groups(self, limit: int = 200) -> list[dict[str, Any]]:
        return await self.rows("dashboard_failure_groups", {"limit": limit})

    async def failure_group_jobs(self, task: str, first_line: str, limit: int = 1000) -> list[dict[str, Any]]:
        return await self.rows("dashboard_failure_group_jobs", {"task": task, "first_line": first_line, "limit": limit})

    async def workers(self) -> list[dict[str, Any]]:
        return await self.rows("dashboard_workers")

    async def unregistered_locks(self) -> list[dict[str, Any]]:
        return await self.rows("dashboard_unregistered_locks")

    async def queues(self) -> list[dict[str, Any]]:
        return await self.rows("dashboard_queues")

    async def schedules(self) -> list[dict[str, Any]]:
        return await self.rows("dashboard_schedules")

    # -- guards before an action ------------------------------------------------------------------
    async def unlocked_jobs(self, job_ids: list[int]) -> list[dict[str, Any]]:
        return await self.rows("dashboard_unlocked_jobs", {"job_ids": job_ids})

    async def job_by_key(self, job_key: str) -> dict[str, Any] | None:
        found = await self.rows("dashboard_job_by_key", {"job_key": job_key})
        return found[0] if found else None

"""The scheduler: turns schedule entries into jobs, exactly once per (schedule id, tick) across replicas.

Each tick of each schedule is claimed and enqueued by one statement (``crontab_fire``): a conditional
upsert of ``_private_known_crontabs.last_execution`` plus graphile's ``add_job``. Replicas racing for
the same tick serialise on the crontab row; the loser's upsert matches nothing, so it adds no job.
All state lives in the database, so any number of schedulers can run, and restart, at any time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Json

from jobworker import crontab, db, errors, metrics, queries
from jobworker.crontab import ScheduleEntry
from jobworker.queries import CrontabState
from jobworker.registry import JobRegistry, load_registry
from jobworker.store import JobStore

log = logging.getLogger("jobworker.scheduler")
MINUTE = timedelta(minutes=1)
CATCH_UP = 10
"""Minutes a late loop still fires as ordinary ticks; older ticks are left to ``backfill``."""


@dataclass(frozen=True)
class FiredJob:
    """A job the scheduler enqueued for one tick of one schedule."""

    schedule_id: str
    task: str
    ts: datetime
    backfilled: bool
    job_id: int


def _unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached (not that it refused one statement)."""
    if isinstance(exc, errors.DatabaseUnreachableError):
        return True
    cause = exc.__cause__ if isinstance(exc, errors.DatabaseError) else exc
    return isinstance(cause, psycopg.OperationalError | OSError) or (
        isinstance(exc, errors.DatabaseError) and cause is None
    )


def floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def cron_ts(moment: datetime) -> str:
    """The tick as graphile-worker writes ``_cron.ts`` (JavaScript's toISOString)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def collect_entries(registry: JobRegistry, schedules_file: str | None = None) -> list[ScheduleEntry]:
    """Schedules from the job definitions plus the schedules file, checked for duplicate ids."""
    entries = crontab.entries_from_registry(registry)
    if schedules_file:
        entries += crontab.load_schedules_file(schedules_file)
    crontab.check_unique(entries)
    return entries


class Scheduler:
    """Enqueue the jobs of ``entries`` on time. ``await run()`` until ``stop()``; ``tick(now)`` for tests."""

    def __init__(
        self,
        entries: Sequence[ScheduleEntry],
        *,
        registry: JobRegistry | None = None,
        database_url: str | None = None,
        schema: str | None = None,
    ) -> None:
        crontab.check_unique(entries)
        self.entries = list(entries)
        self.registry = registry or JobRegistry()
        self.database_url = db.resolve_database_url(database_url)
        self.schema = db.resolve_schema(schema)
        self._options = {entry.id: self._job_options(entry) for entry in self.entries}
        self.store = JobStore(self.database_url, self.schema)
        self._registered = False
        self._stopping = asyncio.Event()
        self.last_success = time.monotonic()

    def _job_options(self, entry: ScheduleEntry) -> dict[str, Any]:
        """Entry options over the definition's defaults; the payload is checked now, not at 3 a.m."""
        if entry.task not in self.registry:
            if len(self.registry):
                log.warning("schedule %r: task %r is not in --tasks; another worker must run it", entry.id, entry.task)
            return {"queue_name": entry.queue, "priority": entry.priority, "max_attempts": entry.max_attempts}
        job = self.registry.get(entry.task)
        sample = {**entry.payload, "_cron": {"ts": cron_ts(datetime.now(UTC)), "backfilled": False}}
        try:
            job.validate(sample)
        except errors.InvalidPayloadError as exc:
            raise errors.ConfigurationError(f"{entry.source}: payload does not fit job {entry.task!r}: {exc}") from None
        return {
            "queue_name": entry.queue if entry.queue is not None else job.queue,
            "priority": entry.priority if entry.priority is not None else job.priority,
            "max_attempts": entry.max_attempts if entry.max_attempts is not None else job.max_attempts,
        }

    # -- database ---------------------------------------------------------------------------------
    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- ticking ----------------------------------------------------------------------------------
    async def tick(self, now: datetime | None = None) -> list[FiredJob]:
        """Enqueue every tick due at ``now`` (default: the clock): this minute's, plus backfill.

        A schedule first seen now gets no backfill; ``known_since`` records when it was first seen.
        """
        now = (now or datetime.now(UTC)).astimezone(UTC)
        ids = [entry.id for entry in self.entries]
        if not self._registered:
            await self.store.execute(queries.CRONTAB_REGISTER, {"identifiers": ids, "now": now})
            self._registered = True
        state = {r.identifier: r for r in await self.store.all(queries.CRONTAB_STATE, {"identifiers": ids})}
        minute = floor_minute(now)
        fired: list[FiredJob] = []
        for entry in self.entries:
            try:
                fired += await self._tick_entry(entry, state.get(entry.id), now, minute)
            except Exception as exc:
                if _unreachable(exc):
                    raise  # the database is gone: run() retries the whole tick, so no tick is lost
                # One bad entry (a payload PostgreSQL refuses, a cron croniter cannot step) must not block the
                # entries after it: log it, count it, and go on.
                metrics.SCHEDULE_ERRORS.labels(entry.id).inc()
                reason = errors.describe(exc)
                log.error("schedule %r failed at this tick (%s); the other schedules still fire", entry.id, reason)
        return fired

    async def _tick_entry(
        self, entry: ScheduleEntry, row: CrontabState | None, now: datetime, minute: datetime
    ) -> list[FiredJob]:
        fired: list[FiredJob] = []
        after = minute - timedelta(microseconds=1)
        if entry.backfill is not None:
            after = min(after, now - entry.backfill - timedelta(microseconds=1))
        if row is not None:
            # Never before the schedule was known, never a tick already executed.
            after = max(after, floor_minute(row.known_since) - timedelta(microseconds=1))
            if row.last_execution is not None:
                after = max(after, row.last_execution)
        ticks = crontab.ticks_between(entry, after, now)
        if entry.max is not None:
            ticks = ticks[-entry.max :]
        for ts in ticks:
            job = await self._fire(entry, ts, backfilled=ts < minute)
            if job is not None:
                fired.append(job)
        return fired

    async def _fire(self, entry: ScheduleEntry, ts: datetime, *, backfilled: bool) -> FiredJob | None:
        payload = {**entry.payload, "_cron": {"ts": cron_ts(ts), "backfilled": backfilled}}
        fired = await self.store.one(
            queries.CRONTAB_FIRE,
            {
                "identifier": entry.id,
                "ts": ts,
                "task": entry.task,
                "payload": Json(payload),
                "job_key": entry.job_key,
                "job_key_mode": entry.job_key_mode.value,
                **self._options[entry.id],
            },
        )
        if fired is None:
            return None  # another replica fired this tick
        metrics.SCHEDULES_FIRED.labels(entry.id).inc()
        log.info("schedule %r fired %s at %s%s", entry.id, entry.task, cron_ts(ts), " (backfill)" if backfilled else "")
        return FiredJob(entry.id, entry.task, ts, backfilled, fired.id)

    # -- running ----------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return not self._stopping.is_set() and time.monotonic() - self.last_success < 150

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Tick at every minute boundary until ``stop()``; a late loop catches up missed minutes."""
        log.info("scheduler started with %d schedules: %s", len(self.entries), crontab.describe(self.entries))
        done = floor_minute(datetime.now(UTC)) - MINUTE
        backoff = 1.0
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            minute = floor_minute(now)
            try:
                step = max(done + MINUTE, minute - (CATCH_UP - 1) * MINUTE)
                while step <= minute:
                    await self.tick(now if step == minute else step)
                    done = step
                    step += MINUTE
                self.last_success = time.monotonic()
                backoff = 1.0
                pause = (minute + MINUTE - datetime.now(UTC)).total_seconds() + 0.01
            except (errors.DatabaseError, psycopg.Error, OSError) as exc:
                log.warning("scheduler tick failed (%s); retrying in %.0fs", errors.describe(exc), backoff)
                pause, backoff = backoff, min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(pause, 0.01))
        await self.close()
        log.info("scheduler stopped")


async def _serve(scheduler: Scheduler, http_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.stop)
    runner = None
    if http_port:
        from jobworker import httpserver

        runner = await httpserver.start(http_port, lambda: scheduler.healthy)
    try:
        await scheduler.run()
    finally:
        if runner is not None:
            await runner.cleanup()


def main(args: argparse.Namespace) -> int:
    """``jobworker scheduler --tasks MOD [--schedules FILE] [--http-port N]``: run until SIGTERM/SIGINT."""
    registry = load_registry(args.tasks)
    path = getattr(args, "schedules", None) or os.environ.get("JOBWORKER_SCHEDULES")
    entries = collect_entries(registry, path)
    if not entries:
        # Not an error: the operator runs a scheduler for every pool by default, and a pool whose tasks
        # have no schedules yet must still become Ready instead of crash-looping.
        log.warning(
            "no schedules (define_job(..., schedule=...) in --tasks, or --schedules FILE / JOBWORKER_SCHEDULES): "
            "idle until stopped"
        )
    scheduler = Scheduler(
        entries,
        registry=registry,
        database_url=getattr(args, "database_url", None),
        schema=getattr(args, "schema", None),
    )
    asyncio.run(_serve(scheduler, getattr(args, "http_port", None)))
    return 0

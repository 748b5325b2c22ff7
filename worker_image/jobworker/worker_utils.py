"""WorkerUtils: enqueue and administer jobs, through the named queries of ``jobworker.store``.

The async class is the implementation; ``SyncWorkerUtils`` runs the same coroutines on a private
event loop thread, so there is one code path and no hand-kept twin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg

from jobworker import db, errors, jobs, migrate, queries
from jobworker.durations import parse_duration
from jobworker.models import AddedJob, Job, JobSpec, QueueStats, SweepResult, WorkerInfo
from jobworker.queries import Query, R
from jobworker.store import OTHER_QUEUES, JobStore, Params

__all__ = ["OTHER_QUEUES", "STALE_AFTER", "TOP_QUEUES", "SyncWorkerUtils", "WorkerUtils"]

T = TypeVar("T")
log = logging.getLogger("jobworker.worker_utils")
ANALYZE_THRESHOLD = 10_000
"""Bulk adds this large refresh planner statistics so the claim keeps its partial indexes."""
STALE_AFTER = timedelta(minutes=5)
TOP_QUEUES = 20
"""Named queues a bounded reading (the operator's, a worker's /metrics?queue_stats=1) keeps by name."""
ORPHAN_AFTER = timedelta(hours=4)
"""Age after which a lock held by a worker id that never registered (graphile-worker from Node, which keeps a
job locked for up to 4 hours by design) counts as orphaned: graphile's own rule. The sweep threshold is for
registered workers, whose heartbeats say whether they live; an unregistered one gives no such sign."""
DEFAULT_RECOVERY_DELAY = timedelta(0)
"""How long recovered jobs of a dead worker wait before they run again (CLI and CRD derive theirs from this)."""
CLEANUP_TASKS = ("delete-permanently-failed-jobs", "gc-task-identifiers", "gc-job-queues")
"""In the order they run: deleting failed jobs first lets the two GCs collect what those jobs used."""
_CLEANUP_ALIASES = {"delete-permafailed-jobs": "delete-permanently-failed-jobs"}  # graphile-worker's name

_CLEANUP_QUERIES: dict[str, Query[Any]] = {
    "delete-permanently-failed-jobs": queries.DELETE_PERMANENTLY_FAILED_JOBS,
    "gc-task-identifiers": queries.GC_TASK_IDENTIFIERS,
    "gc-job-queues": queries.GC_JOB_QUEUES,
}


_STRICT_JSON = json.JSONEncoder(allow_nan=False)
"""One encoder for every check: json.dumps(..., allow_nan=False) builds a new encoder per call."""


DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""Payloads above this are refused at enqueue (JOBWORKER_MAX_PAYLOAD_BYTES; 0 turns the cap off): a huge
payload is slow to claim and decode for every worker, and one too large to decode fails its job for good."""


def resolve_max_payload_bytes(explicit: int | None = None) -> int:
    """The payload size cap: the argument, else JOBWORKER_MAX_PAYLOAD_BYTES, else 1 MiB; 0 means none."""
    if explicit is not None:
        value: object = explicit
    else:
        raw = os.environ.get("JOBWORKER_MAX_PAYLOAD_BYTES")
        if raw is None:
            return DEFAULT_MAX_PAYLOAD_BYTES
        try:
            value = int(raw)
        except ValueError:
            value = raw
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.ConfigurationError(
            f"max_payload_bytes (JOBWORKER_MAX_PAYLOAD_BYTES): {value!r} must be a whole number of bytes, 0 for no cap"
        )
    return value


def _check_size(encoded: str, cap: int, field: str) -> None:
    # The strict encoder escapes every non-ASCII character, so its length is the byte count.
    if cap and len(encoded) > cap:
        raise errors.InvalidPayloadError(
            f"{field}: {len(encoded)} bytes of JSON is over the {cap}-byte payload cap; store large data elsewhere "
            "and enqueue a reference to it, or raise JOBWORKER_MAX_PAYLOAD_BYTES"
        )


def _json_payload(payload: Any, *, field: str = "payload", cap: int | None = None) -> str:
    """The payload as JSON text, checked: serialisable, no NaN/Infinity, within the size cap."""
    try:
        encoded = _STRICT_JSON.encode(payload if payload is not None else {})
    except (TypeError, ValueError) as exc:
        raise errors.InvalidPayloadError(f"{field}: not JSON-serialisable: {exc}") from None
    _check_size(encoded, resolve_max_payload_bytes(cap), field)
    return encoded


def _check_options(
    task: str,
    *,
    queue_name: str | None,
    run_at: datetime | None,
    max_attempts: int | None,
    job_key: str | None,
    priority: int | None,
    flags: Sequence[str] | None,
) -> None:
    """Validate every option before touching the database, so bad input leaves the queue untouched."""
    jobs.validate_identifier(task, field="task")
    if queue_name is not None:
        jobs.validate_identifier(queue_name, field="queue_name")
    if max_attempts is not None:
        jobs.validate_max_attempts(max_attempts)
    if priority is not None:
        jobs.validate_priority(priority)
    if job_key is not None:
        jobs.validate_job_key(job_key)
    if run_at is not None and run_at.tzinfo is None:
        raise errors.ConfigurationError("run_at: must be timezone-aware (for example datetime.now(UTC))")
    if flags is not None:
        if isinstance(flags, str) or not all(isinstance(f, str) and f for f in flags):
            raise errors.ConfigurationError("flags: must be a list of non-empty strings")


def add_job_params(
    task: str,
    payload: Any = None,
    *,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    job_key_mode: str | jobs.JobKeyMode | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    payload_cap: int | None = None,
) -> dict[str, Any]:
    _check_options(
        task,
        queue_name=queue_name,
        run_at=run_at,
        max_attempts=max_attempts,
        job_key=job_key,
        priority=priority,
        flags=flags,
    )
    mode = jobs.validate_job_key_mode(job_key_mode) if job_key_mode is not None else jobs.JobKeyMode.REPLACE
    return {
        "identifier": task,
        "payload": _json_payload(payload, cap=payload_cap),
        "queue_name": queue_name,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "job_key": job_key,
        "priority": priority,
        "flags": list(flags) if flags is not None else None,
        "job_key_mode": mode.value,
    }


def add_jobs_params(
    specs: Sequence[JobSpec], job_key_preserve_run_at: bool, payload_cap: int | None = None
) -> dict[str, Any]:
    """The specs as one JSON array, encoded once (the payloads are checked by that same encoding)."""
    items = []
    for s in specs:
        _check_options(
            s.task,
            queue_name=s.queue_name,
            run_at=s.run_at,
            max_attempts=s.max_attempts,
            job_key=s.job_key,
            priority=s.priority,
            flags=s.flags,
        )
        items.append(
            {
                "identifier": s.task,
                "payload": s.payload if s.payload is not None else {},
                "queue_name": s.queue_name,
                "run_at": s.run_at.isoformat() if s.run_at is not None else None,
                "max_attempts": s.max_attempts,
                "job_key": s.job_key,
                "priority": s.priority,
                "flags": list(s.flags) if s.flags is not None else None,
            }
        )
    try:
        encoded = _STRICT_JSON.encode(items)
    except (TypeError, ValueError):
        for i, s in enumerate(specs):  # name the spec that cannot be encoded
            _json_payload(s.payload, field=f"specs[{i}].payload", cap=0)
        raise
    cap = resolve_max_payload_bytes(payload_cap)
    if cap and len(encoded) > cap:
        # Under the cap in total means every payload is: only then is each one encoded on its own.
        for i, s in enumerate(specs):
            _json_payload(s.payload, field=f"specs[{i}].payload", cap=cap)
    return {"specs": encoded, "job_key_preserve_run_at": job_key_preserve_run_at}


class WorkerUtils:
    """Enqueue and administer jobs: ``async with WorkerUtils(url) as utils: await utils.add_job(...)``.

    Every statement goes through one ``JobStore`` session (``self.store``), which reconnects when the
    server dropped it; an enqueue whose connection dropped is never retried blindly (see ``queries``).
    """

    def __init__(
        self, database_url: str | None = None, schema: str | None = None, *, max_payload_bytes: int | None = None
    ) -> None:
        self.database_url = db.resolve_database_url(database_url)
        self.schema = db.resolve_schema(schema)
        self.max_payload_bytes = resolve_max_payload_bytes(max_payload_bytes)
        """Enqueued payloads above this many bytes of JSON are refused (0: no cap)."""
        self.store = JobStore(self.database_url, self.schema)

    async def __aenter__(self) -> WorkerUtils:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.store.close()

    # -- enqueue ----------------------------------------------------------------------------------
    async def add_job(
        self,
        task: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        job_key: str | None = None,
        job_key_mode: str | jobs.JobKeyMode | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> AddedJob:
        """Add one job. Pass ``connection`` to enqueue inside your own transaction."""
        params = add_job_params(
            task,
            payload,
            queue_name=queue_name,
            run_at=run_at,
            max_attempts=max_attempts,
            job_key=job_key,
            job_key_mode=job_key_mode,
            priority=priority,
            flags=flags,
            payload_cap=self.max_payload_bytes,
        )
        [added] = await self._on(connection, queries.ADD_JOB, params)
        return added

    async def add_jobs(
        self,
        specs: Iterable[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[AddedJob]:
        """Add many jobs in one statement. An empty list writes nothing."""
        specs = list(specs)
        if not specs:
            return []
        params = add_jobs_params(specs, job_key_preserve_run_at, self.max_payload_bytes)
        added = await self._on(connection, queries.ADD_JOBS, params)
        if len(specs) >= ANALYZE_THRESHOLD:
            await self._on(connection, queries.ANALYZE_JOBS, None)
        return added

    async def _on(
        self, connection: psycopg.AsyncConnection[Any] | None, query: Query[R], params: Params | None
    ) -> list[R]:
        if connection is None:
            return await self.store.all(query, params)
        return await self.store.all_on(connection, query, params)

    # -- admin ------------------------------------------------------------------------------------
    async def remove_job(self, job_key: str, *, leave_running: bool = False) -> int | None:
        """Delete the unlocked job with this key (or stop a running one's retries). Returns its id.

        With ``leave_running`` a running job is not touched at all and None is returned: the check and the
        delete are one statement, so a job claimed meanwhile is left to its worker (the dashboard's rule).
        """
        jobs.validate_job_key(job_key)
        query = queries.REMOVE_UNLOCKED_JOB if leave_running else queries.REMOVE_JOB
        removed = await self.store.one(query, {"job_key": job_key})
        return removed.id if removed else None

    async def complete_jobs(self, job_ids: Sequence[int]) -> list[int]:
        return [r.id for r in await self.store.all(queries.COMPLETE_JOBS_ADMIN, {"job_ids": list(job_ids)})]

    async def permanently_fail_jobs(self, job_ids: Sequence[int], reason: str | None = None) -> list[int]:
        params = {"job_ids": list(job_ids), "reason": reason}
        return [r.id for r in await self.store.all(queries.PERMANENTLY_FAIL_JOBS, params)]

    async def reschedule_jobs(
        self,
        job_ids: Sequence[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[int]:
        """Move jobs; ``run_at`` defaults to now. Locked jobs are untouched."""
        if priority is not None:
            jobs.validate_priority(priority)
        if max_attempts is not None:
            jobs.validate_max_attempts(max_attempts)
        if attempts is not None and not 0 <= attempts <= 32767:
            raise errors.ConfigurationError(f"attempts: {attempts!r} must be from 0 to 32767")
        params = {
            "job_ids": list(job_ids),
            "run_at": run_at or datetime.now().astimezone(),
            "priority": priority,
            "attempts": attempts,
            "max_attempts": max_attempts,
        }
        return [r.id for r in await self.store.all(queries.RESCHEDULE_JOBS, params)]

    async def force_unlock_workers(self, worker_ids: Sequence[str]) -> None:
        await self.store.execute(queries.FORCE_UNLOCK_WORKERS, {"worker_ids": list(worker_ids)})

    async def cleanup(
        self, tasks: Iterable[str] = CLEANUP_TASKS, *, keep_task_identifiers: Sequence[str] = ()
    ) -> dict[str, int]:
        """Run cleanup tasks; returns how many rows each removed."""
        wanted = set()
        for task in tasks:
            name = task.lower().replace("_", "-")
            name = _CLEANUP_ALIASES.get(name, name)
            if name not in CLEANUP_TASKS:
                raise errors.ConfigurationError(f"cleanup task {task!r} is not one of {', '.join(CLEANUP_TASKS)}")
            wanted.add(name)
        out: dict[str, int] = {}
        for name in (n for n in CLEANUP_TASKS if n in wanted):
            params = {"keep": list(keep_task_identifiers)} if name == "gc-task-identifiers" else None
            out[name] = len(await self.store.all(_CLEANUP_QUERIES[name], params))
        return out

    async def list_jobs(
        self, *, state: str | None = None, task: str | None = None, queue_name: str | None = None, limit: int = 100
    ) -> list[Job]:
        if state in (None, "all"):
            state = None
        elif state not in ("ready", "scheduled", "locked", "failed"):
            raise errors.ConfigurationError(f"state: {state!r} is not one of all, ready, scheduled, locked, failed")
        params = {"state": state, "task": task, "queue_name": queue_name, "limit": limit}
        return await self.store.all(queries.LIST_JOBS, params)

    async def get_job(self, job_id: int) -> Job | None:
        return await self.store.one(queries.GET_JOB, {"job_id": job_id})

    async def list_active_workers(self, threshold: timedelta | str = STALE_AFTER) -> list[WorkerInfo]:
        limit = parse_duration(threshold, field="threshold").total_seconds()
        return [
            WorkerInfo(
                id=r.id,
                started_at=r.started_at,
                last_heartbeat_at=r.last_heartbeat_at,
                heartbeat_age_seconds=r.heartbeat_age_seconds,
                locked_jobs=r.locked_jobs,
                metadata=r.metadata or {},
            )
            for r in await self.store.all(queries.LIST_WORKERS)
            if r.heartbeat_age_seconds <= limit
        ]

    async def sweep_stale_workers(
        self,
        threshold: timedelta | str = STALE_AFTER,
        recovery_delay: timedelta | str = DEFAULT_RECOVERY_DELAY,
        *,
        dry_run: bool = False,
        orphan_threshold: timedelta | str = ORPHAN_AFTER,
    ) -> SweepResult:
        """Recover the jobs of workers that stopped heartbeating, and orphan locks, one sweeper at a time.

        Orphan locks (held by a worker id that never registered, such as a Node graphile-worker) are
        recovered only once older than ``orphan_threshold`` (graphile's 4 hours), never by ``threshold``.
        """
        limit = parse_duration(threshold, field="sweep_threshold").total_seconds()
        orphan_limit = parse_duration(orphan_threshold, field="orphan_threshold").total_seconds()
        delay = parse_duration(recovery_delay, field="recovery_delay").total_seconds()
        async with self.store.transaction(force_rollback=dry_run) as tx:
            got = await tx.one(queries.TRY_SWEEP_LOCK, {"schema": self.schema})
            if not got or not got.taken:
                return SweepResult([], [], [], dry_run, skipped=True)
            stale: list[str] = []
            unsafe: list[str] = []
            for r in await tx.all(queries.STALE_WORKERS, {"threshold": limit}):
                if r.heartbeat_interval is not None and limit < 3 * r.heartbeat_interval:
                    # A live worker may go this long between heartbeats: never take it for dead.
                    log.warning(
                        "sweep: skipped worker %s: it heartbeats every %gs, and a %gs sweep threshold is "
                        "under 3x that; raise --sweep-threshold to at least %gs",
                        r.id,
                        r.heartbeat_interval,
                        limit,
                        3 * r.heartbeat_interval,
                    )
                    unsafe.append(r.id)
                else:
                    stale.append(r.id)
            orphans = [r.locked_by for r in await tx.all(queries.ORPHAN_LOCKS, {"threshold": orphan_limit})]
            targets = stale + [o for o in orphans if o not in stale]
            recovered: list[int] = []
            if targets:
                params = {"worker_ids": targets, "recovery_delay": delay}
                recovered = [r.id for r in await tx.all(queries.RECOVER_WORKER_JOBS, params)]
                await tx.execute(queries.DELETE_STALE_WORKERS, {"worker_ids": stale})
            return SweepResult(stale, orphans, sorted(recovered), dry_run, unsafe_threshold_workers=unsafe)

    async def queue_stats(self, stale_after: timedelta = STALE_AFTER, *, top_queues: int | None = None) -> QueueStats:
        """Counts by task, queue and state. With ``top_queues``, only that many named queues (the fullest)
        keep their name and the rest count under ``OTHER_QUEUES``: bounded rows for per-entity queues."""
        return await self.store.queue_stats(stale_after=stale_after, top_queues=top_queues)

    async def migrate(self, *, allow_breaking: bool = False) -> migrate.MigrationResult:
        return await migrate.migrate(self.database_url, self.schema, allow_breaking=allow_breaking)


class SyncWorkerUtils:
    """The same operations as WorkerUtils, for synchronous code (Django views, scripts).

    Every method runs the async implementation on a private event loop thread. ``add_job`` and
    ``add_jobs`` also accept a synchronous psycopg connection, to enqueue in your own transaction.
    """

    def __init__(
        self, database_url: str | None = None, schema: str | None = None, *, max_payload_bytes: int | None = None
    ) -> None:
        self._async = WorkerUtils(database_url, schema, max_payload_bytes=max_payload_bytes)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobworker-sync-utils", daemon=True)
        self._thread.start()

    def __enter__(self) -> SyncWorkerUtils:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop)
        return future.result()

    def add_job(
        self, task: str, payload: Any = None, *, connection: psycopg.Connection[Any] | None = None, **options: Any
    ) -> AddedJob:
        if connection is not None:
            params = add_job_params(task, payload, payload_cap=self._async.max_payload_bytes, **options)
            [added] = self._async.store.all_on_sync(connection, queries.ADD_JOB, params)
            return added
        return self._call(self._async.add_job, task, payload, **options)

    def add_jobs(
        self,
        specs: Iterable[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
        connection: psycopg.Connection[Any] | None = None,
    ) -> list[AddedJob]:
        specs = list(specs)
        if connection is None:
            return self._call(self._async.add_jobs, specs, job_key_preserve_run_at=job_key_preserve_run_at)
        if not specs:
            return []
        params = add_jobs_params(specs, job_key_preserve_run_at, self._async.max_payload_bytes)
        added = self._async.store.all_on_sync(connection, queries.ADD_JOBS, params)
        if len(specs) >= ANALYZE_THRESHOLD:
            self._async.store.all_on_sync(connection, queries.ANALYZE_JOBS, None)
        return added

    def __getattr__(self, name: str) -> Callable[..., Any]:
        target = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(target):
            return target  # type: ignore[no-any-return]

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(target, *args, **kwargs)

        return call

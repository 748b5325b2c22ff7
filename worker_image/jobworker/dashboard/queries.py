"""The dashboard's named queries (``sql/queries/dashboard_*.sql``), each with the row type it returns.

``jobworker.store.JobStore`` runs them and checks the columns against these fields, so the SQL and the pages
cannot drift apart unnoticed. All are reads: the dashboard's actions go through WorkerUtils.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobworker.queries import Query


@dataclass(frozen=True)
class TableSize:
    estimate: int


@dataclass(frozen=True)
class StateCount:
    task_identifier: str
    queue_name: str | None
    state: str
    count: int


@dataclass(frozen=True)
class OldestWaiting:
    oldest_seconds: float | None


@dataclass(frozen=True)
class WorkerCounts:
    live: int
    stale: int


@dataclass(frozen=True)
class ThroughputMinute:
    minute: datetime
    completed: int
    failed: int
    workers: int


@dataclass(frozen=True)
class JobRow:
    """A job on the Jobs page."""

    id: int
    task_identifier: str
    queue_name: str | None
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: Any
    state: str


@dataclass(frozen=True)
class JobDetail(JobRow):
    """A job on its own page: also its payload (as text, so the page can cap it) and its lock's age and owner."""

    payload_text: str
    payload_bytes: int
    locked_seconds: float | None
    lock_owner_registered: bool


@dataclass(frozen=True)
class FilterOption:
    kind: str
    name: str


@dataclass(frozen=True)
class FailureGroup:
    task_identifier: str
    first_line: str
    failed: int
    retrying: int
    last_seen: datetime


@dataclass(frozen=True)
class ActionableJob:
    """A job an action may touch: unlocked when read (the action's own statement checks again)."""

    id: int
    attempts: int
    max_attempts: int
    run_at: datetime | None = None


@dataclass(frozen=True)
class WorkerRow:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    metadata: Any
    heartbeat_age_seconds: float
    running: list[dict[str, Any]]
    """The jobs it holds: ``{"id", "task", "seconds"}`` each, oldest lock first."""


@dataclass(frozen=True)
class UnregisteredLock:
    locked_by: str
    jobs: int
    queues: int
    oldest_lock_seconds: float


@dataclass(frozen=True)
class QueueRow:
    queue_name: str
    locked_by: str | None
    locked_seconds: float | None
    depth: int
    due: int


@dataclass(frozen=True)
class KnownSchedule:
    identifier: str
    known_since: datetime
    last_execution: datetime | None


@dataclass(frozen=True)
class KeyedJob:
    id: int
    locked_at: datetime | None


TABLE_SIZE = Query("dashboard_table_size", TableSize)
COUNTS_EXACT = Query("dashboard_counts_exact", StateCount)
COUNTS_SAMPLED = Query("dashboard_counts_sampled", StateCount)
OLDEST_WAITING = Query("dashboard_oldest_waiting", OldestWaiting)
WORKER_COUNTS = Query("dashboard_worker_counts", WorkerCounts)
THROUGHPUT = Query("dashboard_throughput", ThroughputMinute)
LIST_JOBS = Query("dashboard_list_jobs", JobRow)
JOB = Query("dashboard_job", JobDetail)
FILTER_OPTIONS = Query("dashboard_filter_options", FilterOption)
FAILURE_GROUPS = Query("dashboard_failure_groups", FailureGroup)
FAILURE_GROUP_JOBS = Query("dashboard_failure_group_jobs", ActionableJob)
WORKERS = Query("dashboard_workers", WorkerRow)
UNREGISTERED_LOCKS = Query("dashboard_unregistered_locks", UnregisteredLock)
QUEUES = Query("dashboard_queues", QueueRow)
SCHEDULES = Query("dashboard_schedules", KnownSchedule)
UNLOCKED_JOBS = Query("dashboard_unlocked_jobs", ActionableJob)
JOB_BY_KEY = Query("dashboard_job_by_key", KeyedJob)

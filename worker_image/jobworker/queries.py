"""Every named query the runtime runs, declared once with the row type it returns.

A ``Query`` pairs a name from ``sql/queries/*.sql`` with a frozen dataclass (or, for the per-job rows of
the worker's hot path, a ``typing.NamedTuple``) whose fields are the columns, in any order;
``jobworker.store.JobStore`` runs it and builds the rows. A column with no field (or a field with no
column and no default) is an error naming the query, so the SQL and its row type cannot drift apart
unnoticed. Statements whose rows mean nothing are declared with ``NoRow``.

``retry`` says whether the store may run the statement again, on a new connection, when the first
connection dropped before the reply came back (so it may or may not have committed): only when a
second run is harmless and the caller learns nothing from what the first run changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from jobworker import sql
from jobworker.models import AddedJob, Job

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance | tuple[Any, ...]")
"""A row type: a frozen dataclass, or a ``typing.NamedTuple``, whose fields are the columns."""


@dataclass(frozen=True)
class NoRow:
    """The row type of a statement run for its effect (``JobStore.execute``)."""


@dataclass(frozen=True)
class Query(Generic[R]):
    """A query of ``sql/queries`` by name, with its row type and whether a dropped connection may retry it."""

    name: str
    row: type[R]
    retry: bool = True

    def __post_init__(self) -> None:
        if self.name not in sql.queries:
            raise RuntimeError(
                f"query {self.name!r}: no '-- name: {self.name}' block or {self.name}.sql in sql/queries"
            )


# -- rows -----------------------------------------------------------------------------------------
class JobId(NamedTuple):
    """A NamedTuple, like ``ClaimedJob``: one per completed job, so built the cheapest way (``_make``)."""

    id: int


@dataclass(frozen=True)
class RemovedJob:
    id: int
    locked_at: datetime | None


@dataclass(frozen=True)
class TaskIdentifier:
    identifier: str


@dataclass(frozen=True)
class QueueName:
    queue_name: str


@dataclass(frozen=True)
class TaskId:
    id: int
    identifier: str


class ClaimedJob(NamedTuple):
    """A job ``get_jobs`` locked to this worker; ``payload`` is still JSON text (decoded inside its job).

    A NamedTuple, not a dataclass: one is built per claimed job, and ``_make`` costs a fortieth of a frozen
    dataclass's ``__init__`` (measured by issue 13's perf work); it is just as immutable and typed.
    """

    id: int
    task_id: int
    job_queue_id: int | None
    payload: str
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    key: str | None
    flags: dict[str, bool] | None
    task_identifier: str
    queue_name: str | None


@dataclass(frozen=True)
class QueueCount:
    """Jobs of one task, queue and state; ``oldest_seconds`` is the age of the earliest run_at among them."""

    task_identifier: str
    queue_name: str | None
    state: str
    count: int
    oldest_seconds: float


@dataclass(frozen=True)
class WorkerRow:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    metadata: dict[str, Any] | None
    heartbeat_age_seconds: float
    locked_jobs: int


@dataclass(frozen=True)
class WorkerCounts:
    active: int
    stale: int


@dataclass(frozen=True)
class LockHolderRow:
    """One worker holding jobs (lock_holders.sql), and how many workers hold jobs in all."""

    jobs: int
    newest_lock_seconds: float
    oldest_lock_seconds: float
    holders: int


@dataclass(frozen=True)
class LockTaken:
    taken: bool


@dataclass(frozen=True)
class StaleWorker:
    id: str
    heartbeat_age_seconds: float
    heartbeat_interval: float | None


@dataclass(frozen=True)
class OrphanLock:
    locked_by: str
    job_count: int


@dataclass(frozen=True)
class CrontabState:
    identifier: str
    known_since: datetime
    last_execution: datetime | None


@dataclass(frozen=True)
class FiredTick:
    id: int
    revision: int


@dataclass(frozen=True)
class Present:
    present: bool


@dataclass(frozen=True)
class GraphileMigration:
    id: int
    breaking: bool


@dataclass(frozen=True)
class MigrationId:
    id: int


@dataclass(frozen=True)
class LatestMigration:
    id: int | None


@dataclass(frozen=True)
class Version:
    version: int


@dataclass(frozen=True)
class Count:
    count: int


# -- enqueue --------------------------------------------------------------------------------------
# An enqueue may have committed before the connection dropped: a blind retry could add the job twice.
ADD_JOB = Query("add_job", AddedJob, retry=False)
ADD_JOBS = Query("add_jobs", AddedJob, retry=False)
ANALYZE_JOBS = Query("analyze_jobs", NoRow)

# -- the worker -----------------------------------------------------------------------------------
# Claims and result writes are never retried here: the worker must know that a write's outcome is
# unknown (it then releases stray locks), and a fenced write's missing ids mean "taken from us".
REGISTER_TASKS = Query("register_tasks", TaskId)
GET_JOBS = Query("get_jobs", ClaimedJob, retry=False)
COMPLETE_JOBS = Query("complete_jobs", JobId, retry=False)
JOBS_PRESENT = Query("jobs_present", JobId)
FAIL_JOBS = Query("fail_jobs", JobId, retry=False)
RETURN_JOBS = Query("return_jobs", JobId, retry=False)
RELEASE_STRAY_LOCKS = Query("release_stray_locks", JobId, retry=False)
HEARTBEAT = Query("heartbeat", NoRow)
DEREGISTER = Query("deregister", NoRow)
# Adds counts: a second run after a dropped connection could add them twice.
RECORD_THROUGHPUT = Query("record_throughput", NoRow, retry=False)

# -- admin ----------------------------------------------------------------------------------------
COMPLETE_JOBS_ADMIN = Query("complete_jobs_admin", JobId)
PERMANENTLY_FAIL_JOBS = Query("permanently_fail_jobs", JobId)
RESCHEDULE_JOBS = Query("reschedule_jobs", JobId)
REMOVE_JOB = Query("remove_job", RemovedJob)
REMOVE_UNLOCKED_JOB = Query("remove_unlocked_job", RemovedJob)
FORCE_UNLOCK_WORKERS = Query("force_unlock_workers", NoRow)
GC_TASK_IDENTIFIERS = Query("gc_task_identifiers", TaskIdentifier)
GC_JOB_QUEUES = Query("gc_job_queues", QueueName)
DELETE_PERMANENTLY_FAILED_JOBS = Query("delete_permanently_failed_jobs", JobId)

# -- reads ----------------------------------------------------------------------------------------
LIST_JOBS = Query("list_jobs", Job)
GET_JOB = Query("get_job", Job)
QUEUE_STATS = Query("queue_stats", QueueCount)
QUEUE_STATS_TOP_QUEUES = Query("queue_stats_top_queues", QueueCount)
LIST_WORKERS = Query("list_workers", WorkerRow)
COUNT_WORKERS = Query("count_workers", WorkerCounts)
LOCK_HOLDERS = Query("lock_holders", LockHolderRow)

# -- the stale-worker sweep (one transaction) ------------------------------------------------------
TRY_SWEEP_LOCK = Query("try_sweep_lock", LockTaken)
STALE_WORKERS = Query("stale_workers", StaleWorker)
ORPHAN_LOCKS = Query("orphan_locks", OrphanLock)
RECOVER_WORKER_JOBS = Query("recover_worker_jobs", JobId)
DELETE_STALE_WORKERS = Query("delete_stale_workers", NoRow)

# -- the scheduler --------------------------------------------------------------------------------
CRONTAB_REGISTER = Query("crontab_register", NoRow)
CRONTAB_STATE = Query("crontab_state", CrontabState)
# Retried: the conditional upsert makes a second run of a tick that did commit add nothing.
CRONTAB_FIRE = Query("crontab_fire", FiredTick)

# -- migrations (one transaction) ------------------------------------------------------------------
MIGRATE_LOCK = Query("migrate_lock", NoRow)
GRAPHILE_MIGRATIONS_PRESENT = Query("graphile_migrations_present", Present)
GRAPHILE_MIGRATIONS = Query("graphile_migrations", GraphileMigration)
GRAPHILE_LATEST_MIGRATION = Query("graphile_latest_migration", LatestMigration)
CLAIM_GRAPHILE_MIGRATION = Query("claim_graphile_migration", MigrationId)
CREATE_JOBWORKER_MIGRATIONS = Query("create_jobworker_migrations", NoRow)
JOBWORKER_MIGRATIONS_PRESENT = Query("jobworker_migrations_present", Present)
JOBWORKER_VERSION = Query("jobworker_version", Version)
NEWER_BREAKING_JOBWORKER_MIGRATIONS = Query("newer_breaking_jobworker_migrations", MigrationId)
ACTIVE_JOBWORKER_WORKERS = Query("active_jobworker_workers", Count)
RECORD_JOBWORKER_MIGRATION = Query("record_jobworker_migration", NoRow)
NOTIFY_MIGRATION = Query("notify_migration", NoRow)


# -- the job endpoint's replay table (jobworker.replay) ------------------------------------------
@dataclass(frozen=True)
class RecordedSignature:
    jti: str


# Not retried: a first run that committed would make the retry report the delivery's own signature as a
# replay; the caller answers 503 instead, and QStash comes back with a fresh signature.
RECORD_SIGNATURE = Query("record_signature", RecordedSignature, retry=False)
SEEN_SIGNATURES_READY = Query("seen_signatures_ready", Present)

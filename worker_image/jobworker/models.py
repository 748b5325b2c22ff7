"""Values that cross the API: what you add, and what you read back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One job for ``add_jobs``; the fields mirror graphile's job_spec type."""

    task: str
    payload: Any = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None


@dataclass(frozen=True)
class AddedJob:
    """The row add_job returned: revision > 0 means an existing job (same job_key) was updated."""

    id: int
    revision: int
    run_at: datetime
    attempts: int
    max_attempts: int
    priority: int
    key: str | None


@dataclass(frozen=True)
class Job:
    """A job as ``list``/``show`` report it. ``state`` is ready, scheduled, locked or failed."""

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
    flags: dict[str, bool] | None
    state: str
    payload: Any = None


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age_seconds: float
    locked_jobs: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskQueueStats:
    task: str
    queue: str | None
    state: str
    count: int


@dataclass(frozen=True)
class LockHolder:
    """One worker holding jobs (a ``locked_by``, not named): how many, and the age of its newest and oldest lock."""

    jobs: int
    newest_lock_seconds: float
    oldest_lock_seconds: float


LOCK_HOLDERS = 100
"""Lock holders a reading lists at most (the youngest newest locks): bounded, and more than any pool's pods."""


@dataclass(frozen=True)
class QueueStats:
    ready: int = 0
    scheduled: int = 0
    locked: int = 0
    failed: int = 0
    oldest_ready_seconds: float | None = None
    by_task: list[TaskQueueStats] = field(default_factory=list)
    workers_active: int = 0
    workers_stale: int = 0
    lock_holders: list[LockHolder] | None = None
    """The workers holding jobs, youngest newest lock first, at most ``LOCK_HOLDERS``; None when the reading
    has none (a worker image from before lock ages). The autoscaler keeps the pods whose jobs are young."""
    lock_holders_total: int = 0
    """Every worker holding jobs, also those beyond the ``LOCK_HOLDERS`` listed."""


@dataclass(frozen=True)
class SweepResult:
    stale_workers: list[str]
    orphan_lock_holders: list[str]
    recovered_job_ids: list[int]
    dry_run: bool
    skipped: bool = False
    """True when another sweeper held the lock, so this one did nothing."""
    unsafe_threshold_workers: list[str] = field(default_factory=list)
    """Stale-looking workers left alone: the threshold is under 3x the heartbeat interval they recorded."""

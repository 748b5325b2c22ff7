"""jobworker: typed background jobs on PostgreSQL, sharing graphile-worker's queue."""

from __future__ import annotations

from jobworker.errors import JobworkerError, PermanentJobError, RetryJob
from jobworker.jobs import AbortSignal, JobContext, JobDefinition, JobKeyMode, define_job
from jobworker.models import JobSpec
from jobworker.queue import EnqueuedJob, GraphileJobQueue, JobQueue
from jobworker.registry import JobRegistry, load_registry
from jobworker.worker import Worker
from jobworker.worker_utils import SyncWorkerUtils, WorkerUtils

__version__ = "0.1.0"

__all__ = [
    "AbortSignal",
    "EnqueuedJob",
    "GraphileJobQueue",
    "JobContext",
    "JobDefinition",
    "JobKeyMode",
    "JobQueue",
    "JobRegistry",
    "JobSpec",
    "JobworkerError",
    "PermanentJobError",
    "RetryJob",
    "SyncWorkerUtils",
    "Worker",
    "WorkerUtils",
    "__version__",
    "define_job",
    "load_registry",
]

"""jobworker: typed background jobs on PostgreSQL, sharing graphile-worker's queue."""

from __future__ import annotations

from jobworker.config import JobsConfig
from jobworker.errors import JobsNotConfiguredError, JobworkerError, PermanentJobError, RetryJob
from jobworker.jobs import AbortSignal, JobContext, JobDefinition, JobKeyMode, define_job
from jobworker.models import JobSpec
from jobworker.providers import build_queue, build_runtime, enqueue_or_skip
from jobworker.providers.graphile import GraphileJobQueue
from jobworker.queue import EnqueuedJob, JobQueue
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
    "JobsConfig",
    "JobsNotConfiguredError",
    "JobworkerError",
    "PermanentJobError",
    "RetryJob",
    "SyncWorkerUtils",
    "Worker",
    "WorkerUtils",
    "__version__",
    "build_queue",
    "build_runtime",
    "define_job",
    "enqueue_or_skip",
    "load_registry",
]

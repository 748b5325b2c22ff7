"""The graphile provider: jobs live in PostgreSQL (graphile-worker's schema) and a Worker runs them."""

from __future__ import annotations

from jobworker.config import JobsConfig
from jobworker.queue import GraphileJobQueue
from jobworker.registry import JobRegistry
from jobworker.settings import WorkerSettings
from jobworker.worker import Worker

__all__ = ["GraphileJobQueue", "build_queue", "build_runtime"]


def build_queue(config: JobsConfig) -> GraphileJobQueue:
    return GraphileJobQueue(config.database_url, config.schema)


def build_runtime(config: JobsConfig, registry: JobRegistry, settings: WorkerSettings | None = None) -> Worker:
    """A Worker on the same database (through ``worker_database_url`` when set, as ``jobworker worker``
    does); ``await worker.run()`` until ``worker.stop()``."""
    url = config.worker_database_url or config.database_url
    return Worker(registry, database_url=url, schema=config.schema, settings=settings)

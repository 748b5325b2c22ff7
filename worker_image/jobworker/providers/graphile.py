"""The graphile provider: jobs live in PostgreSQL (graphile-worker's schema) and a Worker runs them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from jobworker.config import JobsConfig
from jobworker.jobs import JobDefinition, JobKeyMode
from jobworker.queue import EnqueuedJob
from jobworker.registry import JobRegistry
from jobworker.settings import WorkerSettings
from jobworker.worker import Worker
from jobworker.worker_utils import WorkerUtils

__all__ = ["GraphileJobQueue", "build_runtime"]
P = TypeVar("P")


class GraphileJobQueue:
    """Enqueue into PostgreSQL through WorkerUtils; definition defaults fill the unset options."""

    provider = "graphile"

    def __init__(self, database_url: str | None = None, schema: str | None = None) -> None:
        self.utils = WorkerUtils(database_url, schema)

    async def enqueue(
        self,
        job: JobDefinition[P],
        payload: P,
        *,
        run_at: datetime | None = None,
        job_key: str | None = None,
        job_key_mode: JobKeyMode | str | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
        connection: Any = None,
    ) -> EnqueuedJob:
        added = await self.utils.add_job(
            job.name,
            job.dump(payload),
            queue_name=queue if queue is not None else job.queue,
            run_at=run_at,
            max_attempts=max_attempts if max_attempts is not None else job.max_attempts,
            job_key=job_key,
            job_key_mode=job_key_mode,
            priority=priority if priority is not None else job.priority,
            flags=flags,
            connection=connection,
        )
        return EnqueuedJob(str(added.id), job.name, deduplicated=added.revision > 0)

    async def close(self) -> None:
        await self.utils.close()


def build_runtime(config: JobsConfig, registry: JobRegistry, settings: WorkerSettings | None = None) -> Worker:
    """A Worker on the same database (through ``worker_database_url`` when set, as ``jobworker worker``
    does); ``await worker.run()`` until ``worker.stop()``."""
    url = config.worker_database_url or config.database_url
    return Worker(registry, database_url=url, schema=config.schema, settings=settings)

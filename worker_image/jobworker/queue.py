"""The JobQueue port: the one call services make to enqueue, whatever the provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from jobworker.jobs import JobDefinition, JobKeyMode

P = TypeVar("P")


@dataclass(frozen=True)
class EnqueuedJob:
    """What the provider accepted: an id (a job id, or a QStash message id) and the job name."""

    id: str
    job_name: str
    deduplicated: bool = False


class JobQueue(Protocol):
    """Enqueue typed jobs. ``payload`` must match the definition's payload type (checked by mypy)."""

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
    ) -> EnqueuedJob: ...

    async def close(self) -> None: ...


class GraphileJobQueue:
    """Enqueue into PostgreSQL through WorkerUtils; definition defaults fill the unset options."""

    provider = "graphile"

    def __init__(self, database_url: str | None = None, schema: str | None = None) -> None:
        from jobworker.worker_utils import WorkerUtils

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

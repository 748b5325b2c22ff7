"""The JobQueue port: the one call services make to enqueue, whatever the provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from jobworker.jobs import JobDefinition, JobKeyMode

if TYPE_CHECKING:
    from jobworker.config import JobsConfig
    from jobworker.registry import JobRegistry

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


class Runtime(Protocol):
    """Something that runs jobs: ``await run()`` until ``stop()`` (a Worker, or the HTTP endpoint)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def build_queue(config: JobsConfig | None = None) -> JobQueue:
    """The JobQueue for ``config.provider`` (default: from the environment, ``JOBS_PROVIDER``; unset is noop)."""
    from jobworker.config import JobsConfig

    config = config or JobsConfig.from_env()
    if config.provider == "graphile":
        return GraphileJobQueue(config.database_url, config.schema)
    if config.provider == "qstash":
        from jobworker.providers.qstash import QStashJobQueue

        return QStashJobQueue(config.qstash)
    from jobworker.providers.noop import NoopJobQueue

    return NoopJobQueue()


def build_runtime(
    config: JobsConfig | None,
    registry: JobRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> Runtime | None:
    """What runs the jobs of ``registry``: a Worker (graphile), the HTTP endpoint served on ``host:port``
    (qstash), or None (noop: nothing runs)."""
    from jobworker.config import JobsConfig

    config = config or JobsConfig.from_env()
    if config.provider == "graphile":
        from jobworker.providers import graphile

        return graphile.build_runtime(config, registry)
    if config.provider == "qstash":
        from jobworker import endpoint

        return endpoint.EndpointRuntime(endpoint.create_app(registry, config.qstash), host=host, port=port)
    return None

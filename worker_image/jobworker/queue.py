"""The JobQueue port: the one call services make to enqueue, whatever the provider.

Only the Protocols and their types live here. The adapters (``providers/graphile.py``, ``qstash.py``,
``noop.py``) import this module, never the reverse; ``providers.build_queue`` and ``providers.build_runtime``
pick one by ``JOBS_PROVIDER``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

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


class Runtime(Protocol):
    """Something that runs jobs: ``await run()`` until ``stop()`` (a Worker, or the HTTP endpoint)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...

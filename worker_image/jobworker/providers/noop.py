"""The noop provider: jobs are not configured, so every enqueue raises JobsNotConfiguredError (HTTP 409)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from jobworker import errors
from jobworker.jobs import JobDefinition, JobKeyMode
from jobworker.queue import EnqueuedJob, JobQueue

P = TypeVar("P")
log = logging.getLogger("jobworker.providers.noop")
_warned: set[str] = set()


class NoopJobQueue:
    """What services get when ``JOBS_PROVIDER`` is unset or ``noop``: a clear 409 instead of a silent drop."""

    provider = "noop"

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
    ) -> EnqueuedJob:
        raise errors.JobsNotConfiguredError(
            f"cannot enqueue {job.name!r}: background jobs are not configured (set JOBS_PROVIDER to graphile or qstash)"
        )

    async def close(self) -> None:
        return None


async def enqueue_or_skip(queue: JobQueue, job: JobDefinition[P], payload: P, **options: Any) -> EnqueuedJob | None:
    """Enqueue, or skip when jobs are not configured, for work that is nice to have (a cache warm-up,
    an analytics ping) and must not fail the request.

    Returns the EnqueuedJob, or None when the provider is noop; the first skip of each job name is
    logged as a warning, later ones are silent. Every other error (a bad payload, QStash or the
    database down) still raises: only "not configured" is a reason to degrade quietly.

    >>> await enqueue_or_skip(queue, warm_cache, WarmCache(user_id=1))
    """
    try:
        return await queue.enqueue(job, payload, **options)
    except errors.JobsNotConfiguredError as exc:
        if job.name not in _warned:
            _warned.add(job.name)
            log.warning("skipped job %r: %s", job.name, exc)
        return None

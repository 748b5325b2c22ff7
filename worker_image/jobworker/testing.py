"""Helpers for testing your own handlers without a database.

Queue semantics (claiming, retries, job keys) are proven on real PostgreSQL in jobworker's own tests;
these helpers only call a handler the way a worker would, so a handler's logic can be unit-tested.
"""

from __future__ import annotations

from typing import Any, TypeVar

from jobworker.jobs import AbortSignal, JobContext, JobDefinition

P = TypeVar("P")


def make_context(
    job: JobDefinition[Any],
    *,
    attempt: int = 1,
    job_id: str = "test-1",
    signal: AbortSignal | None = None,
    provider: str = "test",
    **fields: Any,
) -> JobContext:
    """A JobContext like the worker builds; pass ``signal`` to fire it from the test."""
    return JobContext(
        job_id=job_id,
        job_name=job.name,
        attempt=attempt,
        max_attempts=fields.pop("max_attempts", job.max_attempts),
        signal=signal or AbortSignal(),
        provider=provider,
        **fields,
    )


async def run_job(job: JobDefinition[P], payload: P | dict[str, Any], **context: Any) -> object:
    """Validate ``payload`` as the worker would (raw dicts included) and run the handler once.

    Raises ``InvalidPayloadError`` for a bad payload, and whatever the handler raises.
    """
    raw = payload if isinstance(payload, dict | list) else job.dump(payload)
    return await job.run(job.validate(raw), make_context(job, **context))

"""A job's outcome: one tagged type, written by the finisher (see finisher.py).

Each case says what the database must do with the job: ``Completed`` deletes it; ``Failed`` records the
error and retries it with graphile's backoff (``permanent``: never again); ``RetryAt`` records the error and
retries after ``delay`` seconds; ``Returned`` unlocks it with its attempt refunded (it never really ran:
shutdown, fencing, a claim nothing started); ``PartialBatch`` fails it with only the failed items of a batch
payload left in it. Every write is fenced by ``locked_by``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Completed:
    job_id: int
    task: str


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: int
    task: str
    error: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class RetryAt:
    job_id: int
    task: str
    error: str
    delay: float
    """Seconds from now, already clamped to what a timestamp can hold."""


@dataclass(frozen=True, slots=True)
class Returned:
    job_id: int
    task: str


@dataclass(frozen=True, slots=True)
class PartialBatch:
    job_id: int
    task: str
    error: str
    failed_items: list[Any]
    """The items of the batch payload that failed: the job's payload for its next attempt."""


Outcome = Completed | Failed | RetryAt | Returned | PartialBatch
Failure = Failed | RetryAt | PartialBatch
"""The outcomes written by fail_jobs."""

"""Completed and failed jobs per minute, recorded with the heartbeat for the dashboard's throughput chart.

Nothing happens per job: the runner and finisher already count into the process's Prometheus counters
(``metrics.JOBS_COMPLETED``, ``metrics.JOBS_FAILED``). At each heartbeat, ``record()`` takes what those
counters gained since the last recording and adds it to the current minute's row of
``_private_jobworker_throughput`` (migration jobworker 4), one statement per beat.

The counters belong to the process, not to one worker, so the sampler is one per process too: when
several workers share a process, each delta is written once, by whichever beat takes it first. The sum
over workers is then exact; which worker a row names only says who wrote it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from prometheus_client import Counter

from jobworker import metrics, queries

if TYPE_CHECKING:
    from jobworker.store import JobStore

log = logging.getLogger("jobworker.worker")


def _total(counter: Counter) -> int:
    return int(sum(s.value for family in counter.collect() for s in family.samples if s.name.endswith("_total")))


class Sampler:
    """What the process's counters gained since the last ``take()``; ``give_back()`` when the write failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen = (_total(metrics.JOBS_COMPLETED), _total(metrics.JOBS_FAILED))
        self._pending = (0, 0)

    def take(self) -> tuple[int, int]:
        with self._lock:
            now = (_total(metrics.JOBS_COMPLETED), _total(metrics.JOBS_FAILED))
            completed = self._pending[0] + max(0, now[0] - self._seen[0])
            failed = self._pending[1] + max(0, now[1] - self._seen[1])
            self._seen, self._pending = now, (0, 0)
            return completed, failed

    def give_back(self, completed: int, failed: int) -> None:
        with self._lock:
            self._pending = (self._pending[0] + completed, self._pending[1] + failed)


SAMPLER = Sampler()
_warned = False


async def record(store: JobStore, worker_id: str) -> None:
    """Write what this process finished since the last beat; never raises (the heartbeat must not fail on it)."""
    global _warned
    completed, failed = SAMPLER.take()
    if not completed and not failed:
        return
    try:
        params = {"worker_id": worker_id, "completed": completed, "failed": failed}
        await store.execute(queries.RECORD_THROUGHPUT, params)
    except Exception as exc:
        SAMPLER.give_back(completed, failed)
        if not _warned:
            _warned = True
            log.warning(
                "throughput for the dashboard not recorded (%s); migrate the schema to jobworker 4 "
                "(jobworker migrate) if the table is missing. Counts are kept for the next heartbeat.",
                exc,
            )

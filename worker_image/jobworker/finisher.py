"""The result finisher: one task writes every outcome waiting at that moment in one complete, one fail and
one return statement, each fenced by ``locked_by``, and retries until the database takes them.

A statement the database refuses is retried one outcome at a time; an outcome refused even alone is written
as a plain failure naming the refusal, else its job is returned, else left to the next claim's stray-lock
release. Shutdown keeps retrying until its grace period ends; what is still unwritten then is lost and its
jobs run again (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.types.json import Json

from jobworker import errors, metrics, queries
from jobworker.backoff import Backoff
from jobworker.outcome import Completed, Failed, Failure, Outcome, PartialBatch, RetryAt, Returned
from jobworker.runner import task_metrics
from jobworker.store import refused

if TYPE_CHECKING:
    from jobworker.store import JobStore

log = logging.getLogger("jobworker.worker")
UNREACHABLE = (psycopg.Error, errors.DatabaseError, OSError)
"""What a statement raises when the database did not take it: unreachable, or it refused the statement
(``store.refused``: sending the same statement again is refused again)."""
OutcomeT = TypeVar("OutcomeT", bound=Outcome)


class Finisher:
    """Owns the outcomes not yet written. ``record()`` queues one; ``run()`` writes them until cancelled."""

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        *,
        complete_delay: float,
        wake: Callable[[], None],
        stopping: Callable[[], bool],
        stray_locks: Callable[[], None],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.complete_delay = complete_delay
        self.wake = wake
        self.stopping = stopping
        self.stray_locks = stray_locks
        self.pending: list[Outcome] = []
        self.ready = asyncio.Event()
        self.writing: list[Outcome] = []  # shutdown waits for this write, not only for the queue to empty
        self.writes_done = 0
        # Jobs whose last write lost its connection before the reply: it may have committed.
        self.reply_lost: set[int] = set()

    def record(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self.ready.set()

    @property
    def busy(self) -> bool:
        """True while an outcome waits or is being written."""
        return bool(self.pending or self.writing)

    def held_ids(self) -> set[int]:
        """The jobs whose outcome is not written yet: still locked to us, on purpose."""
        return {o.job_id for o in self.pending} | {o.job_id for o in self.writing}

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            await self.ready.wait()
            if self.complete_delay > 0 and not self.stopping():
                await asyncio.sleep(self.complete_delay)
            self.ready.clear()
            batch, self.pending = self.pending, []
            if not batch:
                continue
            self.writing = batch
            try:
                await self.write(batch)
                self.reply_lost.difference_update(o.job_id for o in batch)
                self.writes_done += 1
                backoff.reset()
                # A finished job may have freed its named queue: claim again now, not at the next poll.
                self.wake()
            except UNREACHABLE as exc:
                if refused(exc):
                    # Retrying the same batch would be refused for ever and hold back every later outcome.
                    log.warning(
                        "could not record %d job results together (%s); writing them one by one",
                        len(batch),
                        errors.describe(exc),
                    )
                    await self._write_one_by_one(batch)
                    self.reply_lost.difference_update(o.job_id for o in batch)
                    self.writes_done += 1
                    self.wake()
                    continue
                # Keep every outcome and try again: the jobs stay locked to us, so nobody runs them twice.
                pause = backoff.next()
                log.warning(
                    "could not record %d job results (%s); retrying in %.1fs", len(batch), errors.describe(exc), pause
                )
                self.reply_lost.update(o.job_id for o in batch)
                self.pending = batch + self.pending
                self.ready.set()
                await asyncio.sleep(pause)
            finally:
                self.writing = []

    async def _write_one_by_one(self, batch: list[Outcome]) -> None:
        for position, outcome in enumerate(batch):
            try:
                await self.write([outcome])
            except UNREACHABLE as exc:
                if refused(exc):
                    # Refused twice (together, then alone). The sweep never recovers a live worker's job, so
                    # never leave it locked: record a plain failure that names the refusal, else hand it back.
                    await self._write_refused(outcome, errors.describe(exc))
                    continue
                # The connection went away mid-way: the rest goes back to the normal retry path.
                self.reply_lost.update(o.job_id for o in batch[position:])
                self.pending = batch[position:] + self.pending
                self.ready.set()
                return

    async def _write_refused(self, outcome: Outcome, reason: str) -> None:
        original = outcome.error if isinstance(outcome, Failure) else "success"
        fallback = Failed(
            outcome.job_id,
            outcome.task,
            storable(f"the database refused this job's result ({reason}); original: {original}")[:2000],
        )
        for attempt in (fallback, Returned(outcome.job_id, outcome.task)):
            try:
                await self.write([attempt])
            except UNREACHABLE as exc:
                if refused(exc):
                    reason = errors.describe(exc)
                    continue
                self.record(outcome)  # the connection went away: the normal retry path takes it again
                return
            log.error(
                "job %s (%s): the database refused its result (%s); %s instead",
                outcome.job_id,
                outcome.task,
                reason,
                "recorded a failure" if attempt is fallback else "returned the job to the queue",
            )
            return
        # Even the return was refused: the next claim releases it (release_stray_locks).
        log.error("job %s (%s): every write of its result was refused (%s)", outcome.job_id, outcome.task, reason)
        self.stray_locks()

    async def write(self, batch: list[Outcome]) -> None:
        """Write ``batch``: at most one statement per kind, each fenced by ``locked_by``."""
        done = [o for o in batch if isinstance(o, Completed)]
        failed = [o for o in batch if isinstance(o, Failure)]
        returned = [o for o in batch if isinstance(o, Returned)]
        if done:
            rows = await self.store.all(
                queries.COMPLETE_JOBS, {"job_ids": [o.job_id for o in done], "worker_id": self.worker_id}
            )
            if len(rows) != len(done):
                done = await self._completed_or_fenced(done, {row.id for row in rows})
            for task, count in Counter(o.task for o in done).items():
                task_metrics(task)[2].inc(count)
        if failed:
            rows = await self.store.all(queries.FAIL_JOBS, _fail_params(self.worker_id, failed))
            if len(rows) != len(failed):
                failed = fenced_out("fail", failed, {row.id for row in rows})
            for f in failed:
                permanent = isinstance(f, Failed) and f.permanent
                metrics.JOBS_FAILED.labels(f.task, str(permanent).lower()).inc()
        if returned:
            written = await self.return_jobs(r.job_id for r in returned)
            if len(written) != len(returned):
                returned = fenced_out("return", returned, written)
            for r in returned:
                metrics.JOBS_RETURNED.labels(r.task).inc()

    async def _completed_or_fenced(self, done: list[Completed], written: set[int]) -> list[Completed]:
        """The completions to count: the ones written now, plus those whose earlier, lost-reply attempt did it.

        A completion sent again after its connection dropped matches nothing when the first attempt had
        committed. Its job is then gone, which is not what a fence looks like: a job taken from us still
        exists (locked by another worker, or waiting). Only those are reported as fenced.
        """
        retried = [o.job_id for o in done if o.job_id not in written and o.job_id in self.reply_lost]
        gone: set[int] = set()
        if retried:
            present = {row.id for row in await self.store.all(queries.JOBS_PRESENT, {"job_ids": retried})}
            gone = set(retried) - present
            for job_id in sorted(gone):
                log.info("job %s: already completed, most likely by the attempt whose reply was lost", job_id)
        return fenced_out("complete", done, written | gone)

    async def return_jobs(self, job_ids: Iterable[int]) -> set[int]:
        """Unlock jobs still locked to us, attempt refunded; the ids the database took."""
        ids = list(job_ids)
        if not ids:
            return set()
        rows = await self.store.all(queries.RETURN_JOBS, {"job_ids": ids, "worker_id": self.worker_id})
        return {row.id for row in rows}

    async def drain(self, deadline: float, forced: asyncio.Event, forced_at: Callable[[], float]) -> None:
        """Wait for every outcome to be written, until ``deadline`` (2 s after a forced stop at most)."""
        while self.pending or self.ready.is_set() or self.writing:
            if forced.is_set():
                deadline = min(deadline, forced_at() + 2)  # a second signal: 2 s more at most
            if time.monotonic() >= deadline:
                if self.busy:
                    log.error(
                        "shutting down with %d job result(s) not recorded (the database is unreachable); their "
                        "jobs stay locked until the stale-worker sweep recovers them and run again (at least once)",
                        len(self.pending) + len(self.writing),
                    )
                return
            await asyncio.sleep(0.01)


def _fail_params(worker_id: str, failed: list[Failure]) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "job_ids": [o.job_id for o in failed],
        "messages": [storable(o.error) for o in failed],
        "payloads": [Json(o.failed_items) if isinstance(o, PartialBatch) else None for o in failed],
        "delays": [o.delay if isinstance(o, RetryAt) else None for o in failed],
        "permanent": [isinstance(o, Failed) and o.permanent for o in failed],
    }


def fenced_out(kind: str, outcomes: list[OutcomeT], written: set[int]) -> list[OutcomeT]:
    """The outcomes the database took; the others' jobs are no longer locked by us, so they were not written."""
    for o in outcomes:
        if o.job_id not in written:
            metrics.RESULTS_FENCED.labels(o.task, kind).inc()
            log.warning(
                "job %s (%s): %s not recorded: the job is no longer locked by this worker (the stale-worker "
                "sweep or force-unlock released it; another worker may run it, or add_job replaced it)",
                o.job_id,
                o.task,
                kind,
            )
    return [o for o in outcomes if o.job_id in written]


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL and lone surrogates (surrogateescape-decoded bytes) escaped.
    Either one made every write of the finisher's batch fail (a surrogate even killed the finisher)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")

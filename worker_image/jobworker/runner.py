"""Running claimed jobs: one asyncio task per job, its payload decoded and validated inside it, its
timeout and grace period enforced, and its outcome handed to the finisher."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from jobworker import errors, metrics
from jobworker.jobs import AbortSignal, JobContext, JobDefinition
from jobworker.outcome import Completed, Failed, Outcome, PartialBatch, RetryAt, Returned
from jobworker.queries import ClaimedJob
from jobworker.registry import JobRegistry
from jobworker.settings import WorkerSettings

log = logging.getLogger("jobworker.worker")
MAX_RETRY_DELAY_SECONDS = 10 * 365 * 86400
Row = ClaimedJob


class JobRunner:
    """Owns the running jobs: their tasks, abort signals and timeouts.

    ``record`` receives every outcome; ``wake`` is called when a slot frees; ``asked_to_stop`` says whether
    the worker asked its handlers to give up (shutdown or fencing), which turns a handler's error into a
    returned job instead of a failure.
    """

    def __init__(
        self,
        registry: JobRegistry,
        settings: WorkerSettings,
        *,
        task_names: Mapping[int, str],
        record: Callable[[Outcome], None],
        wake: Callable[[], None],
        asked_to_stop: Callable[[], bool],
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.task_names = task_names
        self.record = record
        self.wake = wake
        self.asked_to_stop = asked_to_stop
        self.running: dict[int, asyncio.Task[None]] = {}
        self.signals: dict[int, AbortSignal] = {}
        # Jobs that ran while the heartbeat was lost: the sweep may have given them to another worker.
        self.fenced: set[int] = set()
        self.overdue: set[int] = set()  # past their timeout, handler (or its thread) not yet ended
        self.processed = 0
        self._background_waits: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self.running)

    def start(self, row: Row, *, stopping: bool = False) -> None:
        task_name = row.task_identifier or self.task_names.get(row.task_id, f"<task {row.task_id}>")
        signal = AbortSignal()
        if stopping:
            signal.fire("worker is shutting down")
        self.signals[row.id] = signal
        task = asyncio.create_task(self._execute(row, task_name, signal), name=f"jobworker-job-{row.id}")
        self.running[row.id] = task

    def fire_all(self, reason: str) -> None:
        for signal in list(self.signals.values()):
            signal.fire(reason)

    def fence(self, reason: str) -> int:
        """Signal every running job, and return (never complete or fail) each one when it ends."""
        running = list(self.running)
        self.fenced.update(running)
        for job_id in running:
            signal = self.signals.get(job_id)
            if signal is not None:
                signal.fire(reason)
        return len(running)

    async def _execute(self, row: Row, task_name: str, signal: AbortSignal) -> None:
        job_id = row.id
        # Until _invoke returns, the job has not succeeded: a BaseException escaping it hands the job back
        # (None here; built only then, not for every job).
        outcome: Outcome | None = None
        started = time.perf_counter()
        try:
            outcome = await self._invoke(row, task_name, signal)
        except asyncio.CancelledError:
            outcome = Returned(job_id, task_name)
        except Exception as exc:
            # Raised outside the handler (e.g. a payload validator raising TypeError): a failure, never a success.
            log.warning("job %s (%s) failed: %s", job_id, task_name, errors.describe(exc))
            outcome = Failed(job_id, task_name, errors.describe(exc))
        finally:
            self.running.pop(job_id, None)
            self.signals.pop(job_id, None)
            if outcome is None or job_id in self.fenced:
                # No outcome: a BaseException escaped, so the job never succeeded; hand it back.
                # Fenced: it ran while our heartbeat was lost: never complete or fail it, since the sweep may have
                # given it to another worker. Returning it is fenced by locked_by, so it only frees a job
                # that is still ours (the sweep has not run yet), with its attempt refunded.
                self.fenced.discard(job_id)
                outcome = Returned(job_id, task_name)
            task_metrics(task_name)[1].observe(time.perf_counter() - started)
            self.processed += 1
            self.record(outcome)
            self.wake()

    async def _invoke(self, row: Row, task_name: str, signal: AbortSignal) -> Outcome:
        job_id = row.id
        definition: JobDefinition[Any] | None = None
        if task_name in self.registry:
            definition = self.registry.get(task_name)
        if definition is None:
            # As graphile-worker does: a job for a task this process cannot run fails and retries,
            # so a worker that knows the task can pick it up later.
            return Failed(job_id, task_name, f"Unsupported task {task_name!r}: no handler in this worker")
        task_metrics(task_name)[0].inc()
        try:
            raw = decode_payload(row.payload)
            payload = definition.validate_decoded(raw)
        except errors.InvalidPayloadError as exc:
            return Failed(job_id, task_name, str(exc), permanent=True)
        ctx = JobContext(
            job_id=str(job_id),
            job_name=task_name,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            signal=signal,
            job_key=row.key,
            run_at=row.run_at,
            queue_name=row.queue_name,
            priority=row.priority,
            flags=frozenset(row.flags or ()),
        )
        timeout = definition.timeout or self.settings.job_timeout
        try:
            if timeout:
                result = await self._run_with_timeout(definition, payload, ctx, timeout)
            else:
                result = await definition.run(payload, ctx)
        except JobTimeout as exc:
            ctx.logger.warning("job %s (%s) %s", job_id, task_name, exc)
            return Failed(job_id, task_name, f"JobTimeout: {exc}")
        except errors.PermanentJobError as exc:
            return Failed(job_id, task_name, errors.describe(exc), permanent=True)
        except errors.RetryJob as exc:
            # Clamped at both ends so run_at stays a valid timestamp whatever delay the handler asks for: a
            # huge negative delay was refused by the database and left the job locked. Negative means now.
            delay = max(0.0, min(exc.delay.total_seconds(), MAX_RETRY_DELAY_SECONDS))
            return RetryAt(job_id, task_name, errors.describe(exc), delay)
        except Exception as exc:
            if signal.is_set() and self.asked_to_stop():
                # The handler gave up because we asked it to: hand the job back, attempt unused.
                return Returned(job_id, task_name)
            ctx.logger.warning("job %s (%s) failed: %s", job_id, task_name, errors.describe(exc))
            return Failed(job_id, task_name, errors.describe(exc))
        if isinstance(raw, list) and isinstance(result, list) and len(result) == len(raw):
            failed = [(item, r) for item, r in zip(raw, result, strict=True) if isinstance(r, BaseException)]
            if failed:
                message = f"{len(failed)} of {len(raw)} batch items failed: " + "; ".join(
                    errors.describe(r) for _, r in failed[:5]
                )
                return PartialBatch(job_id, task_name, message, [item for item, _ in failed])
        return Completed(job_id, task_name)

    async def _run_with_timeout(
        self, definition: JobDefinition[Any], payload: Any, ctx: JobContext, limit: float
    ) -> object:
        """Run the handler; past ``limit`` seconds fire ctx.signal, and past the grace period fail the attempt.

        An async handler is cancelled then. A sync handler's thread cannot be: the attempt fails and the slot
        is freed all the same, and the thread runs on until its handler returns (its result is discarded);
        until then it counts as overdue for /healthz.
        """
        job_id = int(ctx.job_id)
        loop = asyncio.get_running_loop()
        thread_done = asyncio.Event()

        def thread_exit() -> None:
            loop.call_soon_threadsafe(thread_done.set)

        run = asyncio.ensure_future(definition.run(payload, ctx, on_thread_exit=thread_exit))
        try:
            done, _ = await asyncio.wait([run], timeout=limit)
            if run in done:
                return run.result()
            self.overdue.add(job_id)
            ctx.signal.fire(f"job timed out after {limit:g}s")
            done, _ = await asyncio.wait([run], timeout=self.settings.timeout_grace)
            if run in done:
                self.overdue.discard(job_id)  # it stopped (for a sync handler: its thread returned)
                raise JobTimeout(f"ran past its timeout of {limit:g}s")
            raise JobTimeout(
                f"ran past its timeout of {limit:g}s and did not stop within the "
                f"{self.settings.timeout_grace:g}s grace period"
            )
        finally:
            if not run.done():
                run.cancel()
            if definition.is_async or thread_done.is_set():
                self.overdue.discard(job_id)
            elif job_id in self.overdue:
                # The thread runs on: it stays overdue until its handler returns.
                waiter: asyncio.Future[Any] = asyncio.ensure_future(thread_done.wait())
                waiter.add_done_callback(lambda _: self.overdue.discard(job_id))
                self._background_waits.add(waiter)
                waiter.add_done_callback(self._background_waits.discard)

    async def stop(self, grace: float, forced: asyncio.Event) -> None:
        """Wait for the running jobs up to ``grace`` seconds (or until ``forced``), then cancel the rest."""
        tasks = list(self.running.values())
        if tasks:
            waited = asyncio.ensure_future(asyncio.wait(tasks, timeout=grace))
            force = asyncio.ensure_future(forced.wait())
            await asyncio.wait([waited, force], return_when=asyncio.FIRST_COMPLETED)
            waited.cancel()
            force.cancel()
        for task in list(self.running.values()):
            task.cancel()  # a sync handler's thread cannot be interrupted; its job is returned all the same
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=1)


class JobTimeout(Exception):
    """An attempt ran past its timeout."""


@functools.lru_cache(maxsize=4096)
def task_metrics(task: str) -> tuple[Any, Any, Any]:
    """A task's started, duration and completed metric children, looked up once (labels() takes a lock
    and builds a key on every call; it was ~10 % of a batch-mode worker's CPU per job)."""
    return metrics.JOBS_STARTED.labels(task), metrics.JOB_DURATION.labels(task), metrics.JOBS_COMPLETED.labels(task)


def decode_payload(text: Any) -> Any:
    """The job's JSON payload, or InvalidPayloadError: PostgreSQL accepts JSON that Python cannot decode
    (nested about 2,000 deep raises RecursionError, a huge one MemoryError). Decoded here, inside the job's
    own execution, so such a payload fails only its job, for good, instead of crashing the worker."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except RecursionError:
        raise errors.InvalidPayloadError(
            "Invalid job payload: JSON nested too deeply for Python to decode (RecursionError)"
        ) from None
    except MemoryError:
        raise errors.InvalidPayloadError(
            f"Invalid job payload: {len(text)} characters of JSON is too large to decode (MemoryError)"
        ) from None
    except ValueError as exc:
        raise errors.InvalidPayloadError(f"Invalid job payload: not decodable JSON ({exc})") from None

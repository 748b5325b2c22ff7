"""The worker: claim, run, finish. Wakes on LISTEN/NOTIFY, polls for future jobs and retries.

Claims take as many jobs as there are free slots, in one statement. Results are written by one
finisher task that folds every result waiting at that moment into a single complete and a single
fail statement, and retries until the database takes them, so no result is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from jobworker import db, errors, metrics, sql
from jobworker.jobs import AbortSignal, JobContext, JobDefinition
from jobworker.registry import JobRegistry
from jobworker.settings import ConnectionSettings, WorkerSettings

log = logging.getLogger("jobworker.worker")
CHANNEL = "jobs:insert"
MAX_RETRY_DELAY_SECONDS = 10 * 365 * 86400
MAX_BACKOFF = 1.0
"""Seconds between retries while the database is unreachable, at most: work resumes within about a second
of the server accepting connections again (it was 5 s, plus the pool's 30 s wait)."""
POOL_WAIT = 1.0
"""Seconds a statement waits for a pooled connection. The pool gives up reconnecting at once while the
server is down (reconnect_timeout=0), and a waiter would otherwise sit out psycopg_pool's default 30 s;
failing fast hands control back to the loop, whose next attempt makes the pool connect again."""


@dataclass
class _Result:
    job_id: int
    task: str
    error: str | None = None
    payload: Any = None
    delay: float | None = None
    permanent: bool = False
    returned: bool = False


class Worker:
    """Runs the jobs of a registry. ``await worker.run()`` until ``stop()``; ``run_once()`` for tests."""

    def __init__(
        self,
        registry: JobRegistry,
        *,
        database_url: str | None = None,
        schema: str | None = None,
        settings: WorkerSettings | None = None,
        **options: Any,
    ) -> None:
        self.registry = registry
        self.database_url = db.resolve_database_url(database_url, worker=True)
        self.schema = db.resolve_schema(schema)
        self.settings = (settings or WorkerSettings()).with_(**options) if options else (settings or WorkerSettings())
        self.worker_id = (
            self.settings.worker_id or f"jobworker-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._connection = ConnectionSettings.from_env()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] | None = None
        self._task_ids: dict[str, int] = {}
        self._task_names: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._forced = asyncio.Event()
        self._forced_at = 0.0
        self._running: dict[int, asyncio.Task[None]] = {}
        self._signals: dict[int, AbortSignal] = {}
        # Fencing: once the heartbeat has failed for half the sweep threshold, the sweep may soon hand our
        # jobs to another worker, so we stop claiming and write no result of the jobs running then.
        self._heartbeat_ok_at = time.monotonic()
        self._fenced = False
        self._fenced_jobs: set[int] = set()
        self._overdue: set[int] = set()  # past their timeout, handler (or its thread) not yet ended
        self._background_waits: set[asyncio.Future[Any]] = set()
        self.loop_lag = 0.0
        self._lagging_until = 0.0
        self._refill: asyncio.Task[None] | None = None
        metrics.JOBS_RUNNING.set_function(lambda: len(self._running))
        self._local: deque[dict[str, Any]] = deque()
        self._results: list[_Result] = []
        self._results_ready = asyncio.Event()
        self._writing = False
        self._writing_ids: set[int] = set()
        # Set when a lock of ours may be held by no running job: a claim or result write that failed
        # mid-way (the claim may have committed with its reply lost), or a result the database refused.
        self._stray_locks = False
        self._writes_done = 0
        self._background: list[asyncio.Task[None]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._processed = 0
        self.last_loop_at = time.monotonic()
        self.started = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    def q(self, name: str) -> Any:
        return sql.query(name, self.schema)

    async def _open(self) -> None:
        max_size = max(2, min(self.settings.concurrency, 8)) + 1
        self._pool = AsyncConnectionPool(
            self.database_url,
            min_size=1,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": 0,
                **db.connect_options(self.database_url),
            },
            open=False,
            reconnect_timeout=0,
        )
        try:
            with db.wrap_exceptions():
                await self._pool.open(wait=True, timeout=30)
                names = [job.name for job in self.registry]
                rows = await self._fetch("register_tasks", {"identifiers": names})
                self._task_ids = {r["identifier"]: r["id"] for r in rows}
                self._task_names = {v: k for k, v in self._task_ids.items()}
                await self._heartbeat()
                self._heartbeat_ok_at = time.monotonic()
        except BaseException:
            # run() never reaches its shutdown when start-up fails: close the pool here, or it leaks.
            await self._pool.close()
            raise
        self._finisher = asyncio.create_task(self._finish_loop(), name="jobworker-finisher")

    async def _fetch(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert self._pool is not None
        # A connection whose peer takes bytes but never answers (no RST, so TCP cannot tell) would hang
        # this statement for ever: give up after operation_timeout; psycopg then closes the connection.
        async with asyncio.timeout(self._connection.operation_timeout):
            async with self._pool.connection(timeout=POOL_WAIT) as conn:
                cur = await conn.execute(self.q(name), params)
                return await cur.fetchall() if cur.description else []

    async def run(self) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT, when the CLI installs the handlers)."""
        await self._open()
        self._background += [
            asyncio.create_task(self._listen_loop(), name="jobworker-listen"),
            asyncio.create_task(self._heartbeat_loop(), name="jobworker-heartbeat"),
            asyncio.create_task(self._watch_loop_lag(), name="jobworker-loop-lag"),
        ]
        log.info(
            "worker %s started: %d tasks, concurrency %d", self.worker_id, len(self.registry), self.settings.concurrency
        )
        self.started.set()
        try:
            await self._main_loop(drain=False)
        finally:
            await self._shutdown()

    async def run_once(self) -> int:
        """Run every job available now, wait for them, and return how many ran."""
        await self._open()
        self.started.set()
        try:
            await self._main_loop(drain=True)
        finally:
            await self._shutdown()
        return self._processed

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and let running jobs finish within the grace period; ``force`` skips the wait."""
        if self._stopping:
            force = True
        self._stopping = True
        self._fire_all("worker is shutting down")
        if force:
            self._forced_at = time.monotonic()
            self._forced.set()
        self._wake.set()

    def _fire_all(self, reason: str) -> None:
        for signal in list(self._signals.values()):
            signal.fire(reason)

    @property
    def fenced(self) -> bool:
        """True while the heartbeat has been failing for over half the sweep threshold."""
        return self._fenced

    @property
    def healthy(self) -> bool:
        """False when stopping, when the claim loop stalled, when every slot holds a job past its timeout
        (or a timed-out sync handler's thread that has not returned), or when the event loop lagged more
        than ``max_loop_lag`` in the last 30 s."""
        now = time.monotonic()
        if self._stopping or now - self.last_loop_at >= self.settings.poll_interval * 3 + 30:
            return False
        if len(self._overdue) >= self.settings.concurrency:
            return False
        return now >= self._lagging_until

    async def _watch_loop_lag(self) -> None:
        """Measure how late the event loop wakes us: a handler that blocks it stalls everything."""
        step = 0.25
        while True:
            before = time.monotonic()
            await asyncio.sleep(step)
            self.loop_lag = time.monotonic() - before - step
            if self.loop_lag > self.settings.max_loop_lag:
                log.error("event loop blocked for %.1fs (a handler blocking it?); /healthz is unhealthy", self.loop_lag)
                self._lagging_until = time.monotonic() + 30

    # -- claiming ---------------------------------------------------------------------------------
    async def _main_loop(self, *, drain: bool) -> None:
        backoff = 0.1
        while not self._stopping:
            self.last_loop_at = time.monotonic()
            self._wake.clear()
            if self._fenced:
                # Not claiming: whatever we claimed could be swept from under us. The heartbeat loop lifts this.
                await self._sleep(self.settings.poll_interval)
                continue
            free = self.settings.concurrency - len(self._running)
            claimed = 0
            writes_before = self._writes_done
            if free > 0:
                try:
                    if self._stray_locks and self._refill is None:
                        await self._release_stray_locks()
                    claimed = await self._fill(free)
                    backoff = 0.1
                except (psycopg.Error, errors.DatabaseError, OSError) as exc:
                    # The claim may have committed and only its reply been lost: its jobs would stay locked
                    # to us, running nowhere, for as long as we heartbeat. The next claim releases them.
                    self._stray_locks = True
                    log.warning("claim failed (%s); retrying in %.1fs", db._one_line(exc), backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                except Exception:
                    self._stray_locks = True
                    # A bug or a surprise must not kill the worker after a claim committed: that would crash
                    # loop on the same jobs, burning an attempt of each one every time.
                    log.exception("unexpected error while claiming; retrying in %.1fs", backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
            if drain and not self._running and not self._local and claimed == 0:
                # Done only if no result landed during the claim: one may have freed a named queue whose
                # next job the claim could not see yet.
                if not (self._results or self._writing) and self._writes_done == writes_before:
                    return
                # A result still being written may free a named queue whose next job is ready now.
            if claimed and claimed >= free:
                # Slots are full: the next wake comes from a finishing job.
                pass
            elif claimed:
                continue
            await self._sleep(self.settings.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _fill(self, free: int) -> int:
        """Start up to ``free`` jobs: from the local queue in batch mode, else claimed in one statement."""
        if not self.settings.batch:
            rows = await self._claim(free)
            for row in rows:
                self._start(row)
            return len(rows)
        if not self._local:
            if self._refill is not None:
                await self._refill
            if not self._local:
                await self._refill_local()
        started = 0
        while self._local and started < free:
            self._start(self._local.popleft())
            started += 1
        if len(self._local) <= self.settings.batch_size // 2 and self._refill is None and not self._stopping:
            # Claim the next batch while this one runs, so slots never wait on a claim round trip.
            self._refill = asyncio.create_task(self._refill_ahead(), name="jobworker-refill")
        return started

    async def _refill_local(self) -> None:
        want = self.settings.batch_size - len(self._local)
        if want > 0:
            self._local.extend(await self._claim(want))

    async def _refill_ahead(self) -> None:
        try:
            before = len(self._local)
            await self._refill_local()
            if len(self._local) > before:
                self._wake.set()
        except (psycopg.Error, errors.DatabaseError, OSError) as exc:
            self._stray_locks = True
            log.warning("claim failed (%s)", db._one_line(exc))
        except Exception:
            self._stray_locks = True
            log.exception("unexpected error while claiming ahead")
        finally:
            self._refill = None

    async def _release_stray_locks(self) -> None:
        """Give back the jobs locked to us that run nowhere here (see release_stray_locks.sql)."""
        held = set(self._running) | {row["id"] for row in self._local} | self._writing_ids
        held.update(r.job_id for r in self._results)
        rows = await self._fetch("release_stray_locks", {"worker_id": self.worker_id, "held": list(held)})
        self._stray_locks = False
        if rows:
            log.warning(
                "released %d job(s) locked to this worker but running nowhere (a claim reply or a result was lost): %s",
                len(rows),
                ", ".join(str(r["id"]) for r in rows),
            )

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        if limit <= 0 or not self._task_ids:
            return []
        return await self._fetch(
            "get_jobs",
            {
                "worker_id": self.worker_id,
                "task_ids": list(self._task_ids.values()),
                "limit": limit,
                "queue_names": list(self.settings.queues) if self.settings.queues else None,
                "forbidden_flags": list(self.settings.forbidden_flags) if self.settings.forbidden_flags else None,
            },
        )

    # -- running ----------------------------------------------------------------------------------
    def _start(self, row: dict[str, Any]) -> None:
        task_name = row.get("task_identifier") or self._task_names.get(row["task_id"], f"<task {row['task_id']}>")
        signal = AbortSignal()
        if self._stopping:
            signal.fire("worker is shutting down")
        self._signals[row["id"]] = signal
        task = asyncio.create_task(self._execute(row, task_name, signal), name=f"jobworker-job-{row['id']}")
        self._running[row["id"]] = task

    async def _execute(self, row: dict[str, Any], task_name: str, signal: AbortSignal) -> None:
        job_id = row["id"]
        # Until _invoke returns, the job has not succeeded: a BaseException escaping it hands the job back.
        result = _Result(job_id, task_name, returned=True)
        started = time.perf_counter()
        try:
            result = await self._invoke(row, task_name, signal)
        except asyncio.CancelledError:
            result = _Result(job_id, task_name, returned=True)
        except Exception as exc:
            # Raised outside the handler (e.g. a payload validator raising TypeError): a failure, never a success.
            log.warning("job %s (%s) failed: %s", job_id, task_name, _describe(exc))
            result = _Result(job_id, task_name, error=_describe(exc))
        finally:
            self._running.pop(job_id, None)
            self._signals.pop(job_id, None)
            if job_id in self._fenced_jobs:
                # It ran while our heartbeat was lost: never complete or fail it, since the sweep may have
                # given it to another worker. Returning it is fenced by locked_by, so it only frees a job
                # that is still ours (the sweep has not run yet), with its attempt refunded.
                self._fenced_jobs.discard(job_id)
                result = _Result(job_id, task_name, returned=True)
            _task_metrics(task_name)[1].observe(time.perf_counter() - started)
            self._processed += 1
            self._record(result)
            self._wake.set()

    async def _invoke(self, row: dict[str, Any], task_name: str, signal: AbortSignal) -> _Result:
        job_id = row["id"]
        definition: JobDefinition[Any] | None = None
        if task_name in self.registry:
            definition = self.registry.get(task_name)
        if definition is None:
            # As graphile-worker does: a job for a task this process cannot run fails and retries,
            # so a worker that knows the task can pick it up later.
            return _Result(job_id, task_name, error=f"Unsupported task {task_name!r}: no handler in this worker")
        _task_metrics(task_name)[0].inc()
        try:
            raw = _decode_payload(row["payload"])
            payload = definition.validate(raw)
        except errors.InvalidPayloadError as exc:
            return _Result(job_id, task_name, error=str(exc), permanent=True)
        ctx = JobContext(
            job_id=str(job_id),
            job_name=task_name,
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            signal=signal,
            job_key=row["key"],
            run_at=row["run_at"],
            queue_name=row.get("queue_name"),
            priority=row["priority"],
            flags=frozenset(row["flags"] or ()),
        )
        timeout = definition.timeout or self.settings.job_timeout
        try:
            if timeout:
                outcome = await self._run_with_timeout(definition, payload, ctx, timeout)
            else:
                outcome = await definition.run(payload, ctx)
        except _JobTimeout as exc:
            ctx.logger.warning("job %s (%s) %s", job_id, task_name, exc)
            return _Result(job_id, task_name, error=f"JobTimeout: {exc}")
        except errors.PermanentJobError as exc:
            return _Result(job_id, task_name, error=_describe(exc), permanent=True)
        except errors.RetryJob as exc:
            # Clamped at both ends so run_at stays a valid timestamp whatever delay the handler asks for: a
            # huge negative delay was refused by the database and left the job locked. Negative means now.
            delay = max(0.0, min(exc.delay.total_seconds(), MAX_RETRY_DELAY_SECONDS))
            return _Result(job_id, task_name, error=_describe(exc), delay=delay)
        except Exception as exc:
            if signal.is_set() and (self._stopping or self._fenced):
                # The handler gave up because we asked it to: hand the job back, attempt unused.
                return _Result(job_id, task_name, returned=True)
            ctx.logger.warning("job %s (%s) failed: %s", job_id, task_name, _describe(exc))
            return _Result(job_id, task_name, error=_describe(exc))
        if isinstance(raw, list) and isinstance(outcome, list) and len(outcome) == len(raw):
            failed = [(item, r) for item, r in zip(raw, outcome, strict=True) if isinstance(r, BaseException)]
            if failed:
                message = f"{len(failed)} of {len(raw)} batch items failed: " + "; ".join(
                    _describe(r) for _, r in failed[:5]
                )
                return _Result(job_id, task_name, error=message, payload=[item for item, _ in failed])
        return _Result(job_id, task_name)

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
            self._overdue.add(job_id)
            ctx.signal.fire(f"job timed out after {limit:g}s")
            done, _ = await asyncio.wait([run], timeout=self.settings.timeout_grace)
            if run in done:
                self._overdue.discard(job_id)  # it stopped (for a sync handler: its thread returned)
                raise _JobTimeout(f"ran past its timeout of {limit:g}s")
            raise _JobTimeout(
                f"ran past its timeout of {limit:g}s and did not stop within the "
                f"{self.settings.timeout_grace:g}s grace period"
            )
        finally:
            if not run.done():
                run.cancel()
            if definition.is_async or thread_done.is_set():
                self._overdue.discard(job_id)
            elif job_id in self._overdue:
                # The thread runs on: it stays overdue until its handler returns.
                waiter: asyncio.Future[Any] = asyncio.ensure_future(thread_done.wait())
                waiter.add_done_callback(lambda _: self._overdue.discard(job_id))
                self._background_waits.add(waiter)
                waiter.add_done_callback(self._background_waits.discard)

    # -- finishing --------------------------------------------------------------------------------
    def _record(self, result: _Result) -> None:
        self._results.append(result)
        self._results_ready.set()

    async def _finish_loop(self) -> None:
        backoff = 0.1
        while True:
            await self._results_ready.wait()
            if self.settings.batch and self.settings.complete_delay > 0 and not self._stopping:
                await asyncio.sleep(self.settings.complete_delay)
            self._results_ready.clear()
            batch, self._results = self._results, []
            if not batch:
                continue
            self._writing_ids = {r.job_id for r in batch}
            self._writing = True  # shutdown waits for this write, not only for the queue to empty
            try:
                await self._write_results(batch)
                self._writes_done += 1
                backoff = 0.1
                # A finished job may have freed its named queue: claim again now, not at the next poll.
                self._wake.set()
            except (psycopg.DataError, psycopg.ProgrammingError, psycopg.IntegrityError) as exc:
                # The statement itself was refused, so retrying the same batch would refuse it forever and
                # hold back every later result: write the results one by one, and leave a result the
                # database still refuses to the stale-worker sweep (its job stays locked to us).
                log.warning(
                    "could not record %d job results together (%s); writing them one by one",
                    len(batch),
                    db._one_line(exc),
                )
                await self._write_one_by_one(batch)
                self._writes_done += 1
                self._wake.set()
            except (psycopg.Error, errors.DatabaseError, OSError) as exc:
                # Keep every result and try again: the jobs stay locked to us, so nobody runs them twice.
                log.warning(
                    "could not record %d job results (%s); retrying in %.1fs", len(batch), db._one_line(exc), backoff
                )
                self._results = batch + self._results
                self._results_ready.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                self._writing = False
                self._writing_ids = set()

    async def _write_one_by_one(self, batch: list[_Result]) -> None:
        for position, result in enumerate(batch):
            try:
                await self._write_results([result])
            except (psycopg.DataError, psycopg.ProgrammingError, psycopg.IntegrityError) as exc:
                # Refused twice (together, then alone). The sweep never recovers a live worker's job, so
                # never leave it locked: record a plain failure that names the refusal, else hand it back.
                await self._write_refused(result, db._one_line(exc))
            except (psycopg.Error, errors.DatabaseError, OSError):
                # The connection went away mid-way: the rest goes back to the normal retry path.
                self._results = batch[position:] + self._results
                self._results_ready.set()
                return

    async def _write_refused(self, result: _Result, reason: str) -> None:
        fallback = _Result(
            result.job_id,
            result.task,
            error=_storable(
                f"the database refused this job's result ({reason}); original: {result.error or 'success'}"
            )[:2000],
        )
        for attempt in (fallback, _Result(result.job_id, result.task, returned=True)):
            try:
                await self._write_results([attempt])
            except (psycopg.DataError, psycopg.ProgrammingError, psycopg.IntegrityError) as exc:
                reason = db._one_line(exc)
                continue
            except (psycopg.Error, errors.DatabaseError, OSError):
                self._record(result)  # the connection went away: the normal retry path takes it again
                return
            log.error(
                "job %s (%s): the database refused its result (%s); %s instead",
                result.job_id,
                result.task,
                reason,
                "recorded a failure" if attempt is fallback else "returned the job to the queue",
            )
            return
        # Even the return was refused: the next claim releases it (release_stray_locks).
        log.error("job %s (%s): every write of its result was refused (%s)", result.job_id, result.task, reason)
        self._stray_locks = True

    async def _write_results(self, batch: list[_Result]) -> None:
        done = [r for r in batch if r.error is None and not r.returned]
        failed = [r for r in batch if r.error is not None and not r.returned]
        returned = [r for r in batch if r.returned]
        if done:
            rows = await self._fetch(
                "complete_jobs", {"job_ids": [r.job_id for r in done], "worker_id": self.worker_id}
            )
            if len(rows) != len(done):
                written = {row["id"] for row in rows}
                done = self._fenced_out("complete", done, written)
            for task, count in Counter(r.task for r in done).items():
                _task_metrics(task)[2].inc(count)
        if failed:
            rows = await self._fetch(
                "fail_jobs",
                {
                    "worker_id": self.worker_id,
                    "job_ids": [r.job_id for r in failed],
                    "messages": [_storable(r.error or "") for r in failed],
                    "payloads": [Json(r.payload) if r.payload is not None else None for r in failed],
                    "delays": [r.delay for r in failed],
                    "permanent": [r.permanent for r in failed],
                },
            )
            if len(rows) != len(failed):
                failed = self._fenced_out("fail", failed, {row["id"] for row in rows})
            for r in failed:
                metrics.JOBS_FAILED.labels(r.task, str(r.permanent).lower()).inc()
        if returned:
            written = await self._return([r.job_id for r in returned])
            if len(written) != len(returned):
                returned = self._fenced_out("return", returned, written)
            for r in returned:
                metrics.JOBS_RETURNED.labels(r.task).inc()

    def _fenced_out(self, kind: str, results: list[_Result], written: set[int]) -> list[_Result]:
        """The results the database took; the others' jobs are no longer locked by us, so they were not written."""
        for r in results:
            if r.job_id not in written:
                metrics.RESULTS_FENCED.labels(r.task, kind).inc()
                log.warning(
                    "job %s (%s): %s not recorded: the job is no longer locked by this worker (the stale-worker "
                    "sweep or force-unlock released it; another worker may run it, or add_job replaced it)",
                    r.job_id,
                    r.task,
                    kind,
                )
        return [r for r in results if r.job_id in written]

    async def _return(self, job_ids: Iterable[int]) -> set[int]:
        ids = list(job_ids)
        if not ids:
            return set()
        rows = await self._fetch("return_jobs", {"job_ids": ids, "worker_id": self.worker_id})
        return {row["id"] for row in rows}

    async def _drain_results(self, deadline: float) -> None:
        while self._results or self._results_ready.is_set() or self._writing:
            if self._forced.is_set():
                deadline = min(deadline, self._forced_at + 2)  # a second signal: 2 s more at most
            if time.monotonic() >= deadline:
                if self._results or self._writing:
                    log.error(
                        "shutting down with %d job result(s) not recorded (the database is unreachable); their "
                        "jobs stay locked until the stale-worker sweep recovers them and run again (at least once)",
                        len(self._results) + len(self._writing_ids),
                    )
                return
            await asyncio.sleep(0.01)

    # -- shutdown ---------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        grace_ends = time.monotonic() + self.settings.graceful_shutdown
        self._stopping = True
        self._fire_all("worker is shutting down")
        if self._refill is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refill
        tasks = list(self._running.values())
        if tasks:
            grace = asyncio.ensure_future(asyncio.wait(tasks, timeout=self.settings.graceful_shutdown))
            forced = asyncio.ensure_future(self._forced.wait())
            await asyncio.wait([grace, forced], return_when=asyncio.FIRST_COMPLETED)
            grace.cancel()
            forced.cancel()
        for task in list(self._running.values()):
            task.cancel()  # a sync handler's thread cannot be interrupted; its job is returned all the same
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=1)
        unstarted = [row["id"] for row in self._local]
        self._local.clear()
        # Results are kept (and retried, e.g. while the database is down) until the grace period ends, not
        # dropped after a fixed 15 s: a result given up on means its job runs again (at-least-once).
        deadline = time.monotonic() + 2 if self._forced.is_set() else max(grace_ends, time.monotonic() + 2)
        await self._drain_results(deadline)
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._return(unstarted)
            with contextlib.suppress(Exception):
                await self._fetch("deregister", {"worker_id": self.worker_id})
        if self._finisher is not None:
            self._finisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._finisher
        if self._pool is not None:
            await self._pool.close()
        log.info("worker %s stopped", self.worker_id)

    # -- background -------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        metadata = {
            "tasks": [job.name for job in self.registry],
            "concurrency": self.settings.concurrency,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "runtime": "jobworker",
            # Read by the sweep: it never takes a worker for dead under 3x its heartbeat interval.
            "heartbeat_interval": self.settings.heartbeat_interval,
        }
        await self._fetch("heartbeat", {"worker_id": self.worker_id, "metadata": Json(metadata)})

    async def _heartbeat_loop(self) -> None:
        beat: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            # The beat runs on its own, so a hung connection cannot delay the fence check below.
            if beat is None or beat.done():
                beat = asyncio.create_task(self._beat(), name="jobworker-heartbeat-beat")
            self._check_fence()

    async def _beat(self) -> None:
        try:
            await self._heartbeat()
        except (psycopg.Error, errors.DatabaseError, OSError) as exc:
            log.warning("heartbeat failed: %s", db._one_line(exc))
            return
        self._heartbeat_ok_at = time.monotonic()
        if self._fenced:
            self._fenced = False
            log.warning("worker %s: heartbeat recorded again; claiming jobs again", self.worker_id)
            self._wake.set()

    def _check_fence(self) -> None:
        lost_for = time.monotonic() - self._heartbeat_ok_at
        if self._fenced or lost_for <= self.settings.sweep_threshold / 2:
            return
        self._fenced = True
        metrics.WORKER_FENCED.inc()
        running = list(self._running)
        log.error(
            "worker %s: no heartbeat recorded for %.0fs (over half the %.0fs sweep threshold): the sweep may "
            "hand our jobs to other workers, so we stop claiming, signal the %d running job(s) and will write "
            "none of their results",
            self.worker_id,
            lost_for,
            self.settings.sweep_threshold,
            len(running),
        )
        self._fenced_jobs.update(running)
        reason = "heartbeat lost: the stale-worker sweep may give this job to another worker"
        for job_id in running:
            signal = self._signals.get(job_id)
            if signal is not None:
                signal.fire(reason)
        # Claimed ahead but never started: give them back (fenced by locked_by, like every write).
        for row in self._local:
            self._record(_Result(row["id"], row.get("task_identifier") or "", returned=True))
        self._local.clear()

    async def _listen_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                limit = self._connection.operation_timeout
                conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, **db.connect_options(self.database_url)
                )
                try:
                    async with asyncio.timeout(limit):
                        await conn.execute(f'listen "{CHANNEL}"')
                    backoff = 0.1
                    self._wake.set()  # anything sent while we were not listening is found by this claim
                    while True:
                        async for _ in conn.notifies(timeout=self.settings.heartbeat_interval):
                            self._wake.set()
                        # Quiet for a while: make sure the server still answers. A half-open connection
                        # delivers nothing and raises nothing, so LISTEN would otherwise wait for ever.
                        async with asyncio.timeout(limit):
                            await conn.execute("select 1")
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                reason = "no answer" if isinstance(exc, TimeoutError) else db._one_line(exc)
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", reason, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)


class _JobTimeout(Exception):
    """An attempt ran past its timeout."""


@functools.lru_cache(maxsize=4096)
def _task_metrics(task: str) -> tuple[Any, Any, Any]:
    """A task's started, duration and completed metric children, looked up once (labels() takes a lock
    and builds a key on every call; it was ~10 % of a batch-mode worker's CPU per job)."""
    return metrics.JOBS_STARTED.labels(task), metrics.JOB_DURATION.labels(task), metrics.JOBS_COMPLETED.labels(task)


def _decode_payload(text: Any) -> Any:
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


def _storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL and lone surrogates (surrogateescape-decoded bytes) escaped.
    Either one made every write of the finisher's batch fail (a surrogate even killed the finisher)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

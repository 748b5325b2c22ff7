"""The worker: the coordinator of the modules that claim, run and finish jobs.

- ``claim_loop.ClaimLoop`` claims as many jobs as there are free slots, in one statement, and starts them;
  ``local_queue.LocalQueue`` does it a batch at a time in batch mode;
- ``runner.JobRunner`` runs each job (payload, timeout, abort signal) and turns it into an ``outcome``;
- ``finisher.Finisher`` writes the outcomes, many per statement, fenced by ``locked_by``;
- ``listener.Listener`` wakes the claim loop on NOTIFY and stops the worker on a breaking migration;
- ``heartbeat.Heartbeat`` records heartbeats and fences the worker when they fail;
- ``watchdog.LoopWatchdog`` notices a blocked event loop; ``shutdown.Shutdown`` stops it all in order.

Delivery is at-least-once. Results are retried until the database takes them; at shutdown, until the
grace period ends: a result still unwritten then is lost and its job runs again once the stale-worker sweep
recovers it. A job whose handler ran while the heartbeat was lost is returned, never completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import Any

from jobworker import db, metrics, queries
from jobworker.claim_loop import ClaimLoop
from jobworker.finisher import Finisher
from jobworker.heartbeat import Heartbeat
from jobworker.listener import Listener
from jobworker.local_queue import LocalQueue
from jobworker.outcome import Returned
from jobworker.queries import ClaimedJob
from jobworker.registry import JobRegistry
from jobworker.runner import JobRunner
from jobworker.settings import ConnectionSettings, WorkerSettings
from jobworker.shutdown import Shutdown
from jobworker.store import JobStore, PoolOptions
from jobworker.watchdog import LoopWatchdog

log = logging.getLogger("jobworker.worker")
POOL_WAIT = 1.0
"""Seconds a statement waits for a pooled connection. The pool gives up reconnecting at once while the
server is down (reconnect_timeout=0), and a waiter would otherwise sit out psycopg_pool's default 30 s;
failing fast hands control back to the loop, whose next attempt makes the pool connect again."""
EXIT_BREAKING_MIGRATION = 57
"""``jobworker worker``'s exit code after a breaking migration was applied under it (graphile-worker's)."""


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
        # The pool gives up reconnecting at once while the server is down, and a statement waits POOL_WAIT
        # for a connection at most, so every loop retries about once a second (store.py's module docstring).
        self.store = JobStore(
            self.database_url,
            self.schema,
            pool=PoolOptions(
                min_size=1,
                max_size=max(2, min(self.settings.concurrency, 8)) + 1,
                wait=POOL_WAIT,
                reconnect_timeout=0,
                open_timeout=30,
                prepare_threshold=0,
            ),
            operation_timeout=self._connection.operation_timeout,
        )
        self._task_ids: dict[str, int] = {}
        self._task_names: dict[int, str] = {}
        self.breaking_migration: Any = None
        """The migration number of a breaking migration that stopped this worker, if one did."""
        self.shutdown = Shutdown()
        self.finisher = Finisher(
            self.store,
            self.worker_id,
            complete_delay=self.settings.complete_delay if self.settings.batch else 0.0,
            wake=self._wake,
            stopping=lambda: self.shutdown.stopping,
            stray_locks=self._stray_locks,
        )
        self.runner = JobRunner(
            registry,
            self.settings,
            task_names=self._task_names,
            record=self.finisher.record,
            wake=self._wake,
            asked_to_stop=lambda: self.shutdown.stopping or self.heartbeat.fenced,
        )
        self.local = (
            LocalQueue(
                self._claim,
                self.settings.batch_size,
                wake=self._wake,
                stopping=lambda: self.shutdown.stopping,
                stray_locks=self._stray_locks,
            )
            if self.settings.batch
            else None
        )
        self.claims = ClaimLoop(
            self.store,
            self.worker_id,
            self.settings,
            task_ids=self._task_ids,
            runner=self.runner,
            finisher=self.finisher,
            local=self.local,
            stopping=lambda: self.shutdown.stopping,
            fenced=lambda: self.heartbeat.fenced,
        )
        self.heartbeat = Heartbeat(
            self.store,
            self.worker_id,
            self.settings,
            [job.name for job in registry],
            on_fenced=self._fence,
            on_restored=self._wake,
        )
        self.listener = Listener(
            self.database_url,
            operation_timeout=self._connection.operation_timeout,
            probe_after=self.settings.heartbeat_interval,
            wake=self._wake,
            on_breaking_migration=self._on_breaking_migration,
        )
        self.watchdog = LoopWatchdog(self.settings.max_loop_lag)
        self._background: list[asyncio.Task[None]] = []
        self._finisher_task: asyncio.Task[None] | None = None
        metrics.JOBS_RUNNING.set_function(lambda: len(self.runner))
        self.started = asyncio.Event()

    # -- wiring -----------------------------------------------------------------------------------
    def _wake(self) -> None:
        self.claims.wake()

    def _stray_locks(self) -> None:
        self.claims.mark_stray_locks()

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        return await self.claims.claim(limit)

    def _fence(self) -> int:
        """The heartbeat was lost: signal the running jobs, and give back those claimed ahead but never started."""
        signalled = self.runner.fence("heartbeat lost: the stale-worker sweep may give this job to another worker")
        if self.local is not None:
            for row in self.local.take_all():  # fenced by locked_by, like every write
                self.finisher.record(Returned(row.id, row.task_identifier))
        return signalled

    def _on_breaking_migration(self, number: Any) -> None:
        log.warning(
            "worker %s: breaking migration %s was applied to the schema; it would be unsafe to continue, so "
            "shutting down (exit code %d)",
            self.worker_id,
            number,
            EXIT_BREAKING_MIGRATION,
        )
        self.breaking_migration = number
        # A second stop() forces the stop: several breaking migrations in one run of migrate, or one after a
        # SIGTERM, must not cut the running jobs' grace period.
        if not self.shutdown.stopping:
            self.stop()

    # -- database ---------------------------------------------------------------------------------
    async def _open(self) -> None:
        try:
            await self.store.open()
            names = [job.name for job in self.registry]
            rows = await self.store.all(queries.REGISTER_TASKS, {"identifiers": names})
            self._task_ids.update({r.identifier: r.id for r in rows})
            self._task_names.update({v: k for k, v in self._task_ids.items()})
            await self.heartbeat.beat()
        except BaseException:
            # run() never reaches its shutdown when start-up fails: close the pool here, or it leaks.
            await self.store.close()
            raise
        self._finisher_task = asyncio.create_task(self.finisher.run(), name="jobworker-finisher")

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT, when the CLI installs the handlers)."""
        await self._open()
        self._background += [
            asyncio.create_task(self.listener.run(), name="jobworker-listen"),
            asyncio.create_task(self.heartbeat.run(), name="jobworker-heartbeat"),
            asyncio.create_task(self.watchdog.run(), name="jobworker-loop-lag"),
        ]
        log.info(
            "worker %s started: %d tasks, concurrency %d", self.worker_id, len(self.registry), self.settings.concurrency
        )
        self.started.set()
        try:
            await self.claims.run(drain=False)
        finally:
            await self._shutdown()

    async def run_once(self) -> int:
        """Run every job available now, wait for them, and return how many ran."""
        await self._open()
        self.started.set()
        try:
            await self.claims.run(drain=True)
        finally:
            await self._shutdown()
        return self.runner.processed

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and let running jobs finish within the grace period; ``force`` skips the wait."""
        self.shutdown.request(force=force)
        self.runner.fire_all("worker is shutting down")
        self._wake()

    async def _shutdown(self) -> None:
        await self.shutdown.run(
            grace=self.settings.graceful_shutdown,
            runner=self.runner,
            local=self.local,
            finisher=self.finisher,
            background=self._background,
            farewell=self._farewell,
        )
        if self._finisher_task is not None:
            self._finisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._finisher_task
        await self.store.close()
        log.info("worker %s stopped", self.worker_id)

    async def _farewell(self, unstarted: list[int]) -> None:
        with contextlib.suppress(Exception):
            await self.finisher.return_jobs(unstarted)
        with contextlib.suppress(Exception):
            await self.store.execute(queries.DEREGISTER, {"worker_id": self.worker_id})

    # -- state ------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called (a second call forces the stop)."""
        return self.shutdown.stopping

    @property
    def fenced(self) -> bool:
        """True while the heartbeat has been failing for over half the sweep threshold."""
        return self.heartbeat.fenced

    @property
    def loop_lag(self) -> float:
        return self.watchdog.loop_lag

    @property
    def last_loop_at(self) -> float:
        return self.claims.last_loop_at

    @property
    def healthy(self) -> bool:
        """False when stopping, when the claim loop stalled, when every slot holds a job past its timeout
        (or a timed-out sync handler's thread that has not returned), or when the event loop lagged more
        than ``max_loop_lag`` in the last 30 s."""
        now = time.monotonic()
        if self.stopping or now - self.claims.last_loop_at >= self.settings.poll_interval * 3 + 30:
            return False
        if len(self.runner.overdue) >= self.settings.concurrency:
            return False
        return not self.watchdog.lagging

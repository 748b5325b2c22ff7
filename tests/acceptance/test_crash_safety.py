"""Nothing is lost: kill -9 and the stale-worker sweep, a PostgreSQL restart under a running worker, SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.acceptance.helpers import (
    Process,
    done_counts,
    effects,
    eventually,
    jobs,
    jobworker,
    sql,
    started_ids,
)
from tests.pg import PgServer

SpawnWorker = Callable[..., Process]
ADD_SQL = "select id, created_at from graphile_worker.add_job('record', json_build_object('i', %s::int))"
# Heartbeats every 0.5 s, so a 2 s sweep threshold (over 3x the interval) may take the worker for dead.
HANGS = {"ACCEPTANCE_SLEEP": "120", "JOBWORKER_HEARTBEAT_INTERVAL": "500ms"}


def _wait_started(url: str, ids: list[int], worker: Process, timeout: float = 20) -> None:
    eventually(
        lambda: started_ids(url),
        lambda seen: set(ids) <= seen,
        timeout=timeout,
        what=f"jobs {ids} started",
        context=worker.output,
    )


def test_kill_9_mid_job_then_sweep_recovers_and_each_job_completes_once(db_url: str, spawn_worker: SpawnWorker) -> None:
    ids = [jobworker(db_url, "--json", "add", "slow", "--payload", f'{{"i": {i}}}').json()["id"] for i in range(3)]
    ids.append(jobworker(db_url, "--json", "add", "slow", "--queue", "serial").json()["id"])
    worker = spawn_worker(db_url, "--concurrency", "4", env=HANGS)
    _wait_started(db_url, ids, worker)
    worker_id = jobs(db_url)[0]["locked_by"]
    assert {r["locked_by"] for r in jobs(db_url)} == {worker_id}

    worker.signal(signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL

    # A dry run reports what it would do and changes nothing.
    def sweep(*extra: str) -> dict[str, Any]:
        result: dict[str, Any] = jobworker(
            db_url, "--json", "sweep-stale-workers", "--sweep-threshold", "2s", "--recovery-delay", "0s", *extra
        ).json()
        return result

    dry = eventually(lambda: sweep("--dry-run"), lambda r: r["stale_workers"], timeout=20, what="worker goes stale")
    assert dry["dry_run"] is True and dry["stale_workers"] == [worker_id]
    assert dry["recovered_job_ids"] == sorted(ids)
    assert all(r["locked_by"] == worker_id for r in jobs(db_url))

    swept = eventually(sweep, lambda r: r["recovered_job_ids"], timeout=20, what="sweep recovers the jobs")
    assert swept["recovered_job_ids"] == sorted(ids) and swept["stale_workers"] == [worker_id]
    rows = jobs(db_url)
    assert all(r["locked_by"] is None and r["locked_at"] is None for r in rows)
    assert sql(db_url, "select count(*) as n from graphile_worker._private_job_queues where locked_by is not null") == [
        {"n": 0}
    ]
    assert sql(db_url, "select id from graphile_worker._private_workers") == []
    assert (
        jobworker(db_url, "--json", "sweep-stale-workers", "--sweep-threshold", "2s").json()["recovered_job_ids"] == []
    )

    assert done_counts(db_url) == {}
    finished = jobworker(db_url, "--json", "worker", "--tasks", "tests.acceptance.acceptance_tasks", "--once")
    assert finished.json() == {"processed": len(ids)}
    assert done_counts(db_url) == {i: 1 for i in ids}
    assert jobs(db_url) == []


def test_postgres_restart_under_a_running_worker_loses_nothing(
    pg: PgServer, db_url: str, spawn_worker: SpawnWorker
) -> None:
    if pg.embedded is None:
        pytest.skip("restarting PostgreSQL needs the embedded server (JOBWORKER_TEST_DATABASE_URL is set)")
    total = 60
    worker = spawn_worker(
        db_url, "--concurrency", "4", "--poll-interval", "200ms", env={"JOBWORKER_HEARTBEAT_INTERVAL": "1"}
    )
    eventually(
        lambda: sql(db_url, "select count(*) as n from graphile_worker._private_workers")[0]["n"],
        lambda n: n == 1,
        timeout=20,
        what="worker registered",
        context=worker.output,
    )

    server_started = sql(db_url, "select pg_postmaster_start_time() as t")[0]["t"]
    added: dict[int, int] = {}  # payload i -> job id
    created: list[Any] = []
    add_errors: list[str] = []
    halfway = threading.Event()

    def add_jobs() -> None:
        try:
            add_all()
        finally:
            halfway.set()

    def add_all() -> None:
        deadline = time.monotonic() + 60
        for i in range(total):
            if i == total // 3:
                halfway.set()
            while time.monotonic() < deadline:
                try:
                    rows = sql(db_url, ADD_SQL, [i])
                    added[i] = rows[0]["id"]
                    created.append(rows[0]["created_at"])
                    break
                except psycopg.OperationalError as exc:  # the server is restarting: add it again
                    add_errors.append(str(exc).splitlines()[0])
                    time.sleep(0.1)
            time.sleep(0.03)

    adder = threading.Thread(target=add_jobs, name="acceptance-adder")
    adder.start()
    try:
        assert halfway.wait(30)
        pg.embedded.restart()
    finally:
        adder.join(90)
    assert len(added) == total, f"could not add every job: {add_errors[-3:]}"
    restarted = sql(db_url, "select pg_postmaster_start_time() as t")[0]["t"]
    assert restarted > server_started
    assert min(created) < restarted < max(created), "jobs were added both before and after the restart"
    # The CLI works again straight away, and its job is run too.
    added[total] = jobworker(db_url, "--json", "add", "record", "--payload", '{"i": -1}').json()["id"]

    eventually(
        lambda: done_counts(db_url),
        lambda counts: set(added.values()) <= set(counts),
        timeout=60,
        what="every job completed after the restart",
        context=worker.output,
    )
    eventually(lambda: jobs(db_url), lambda rows: rows == [], timeout=20, what="the queue drains")
    counts = done_counts(db_url)
    assert counts == {job_id: 1 for job_id in added.values()}, worker.output()
    assert worker.running(), worker.output()


def test_sigterm_returns_running_jobs_without_using_an_attempt(db_url: str, spawn_worker: SpawnWorker) -> None:
    """A polite handler gives up at once; one that ignores the signal is returned when the grace period ends."""
    polite = jobworker(db_url, "--json", "add", "polite", "--queue", "serial").json()["id"]
    stubborn = jobworker(db_url, "--json", "add", "slow").json()["id"]
    worker = spawn_worker(db_url, "--concurrency", "2", "--graceful-shutdown", "2s", env=HANGS)
    _wait_started(db_url, [polite, stubborn], worker)

    worker.signal(signal.SIGTERM)
    eventually(
        lambda: {r["id"]: r["locked_by"] for r in jobs(db_url)}[polite],
        lambda holder: holder is None,
        timeout=5,
        what="the polite job handed back before the grace period ends",
    )
    assert worker.wait(20) == 0, worker.output()
    rows = {r["id"]: r for r in jobs(db_url)}
    assert set(rows) == {polite, stubborn}
    for row in rows.values():
        assert (row["attempts"], row["last_error"], row["locked_by"], row["locked_at"]) == (0, None, None, None), row
    assert sql(db_url, "select count(*) as n from graphile_worker._private_job_queues where locked_by is not null") == [
        {"n": 0}
    ]
    assert sql(db_url, "select id from graphile_worker._private_workers") == []  # deregistered
    assert done_counts(db_url) == {}

    finished = jobworker(db_url, "--json", "worker", "--tasks", "tests.acceptance.acceptance_tasks", "--once")
    assert finished.json() == {"processed": 2}
    assert done_counts(db_url) == {polite: 1, stubborn: 1}
    assert [r["attempt"] for r in effects(db_url, "done")] == [1, 1]


def test_second_sigterm_forces_a_prompt_exit(db_url: str, spawn_worker: SpawnWorker) -> None:
    """Even a sync handler stuck in its thread, with the default 30 s grace period."""
    ids = [jobworker(db_url, "--json", "add", task).json()["id"] for task in ("slow_sync", "slow")]
    worker = spawn_worker(db_url, "--concurrency", "2", env=HANGS)
    _wait_started(db_url, ids, worker)

    worker.signal(signal.SIGTERM)
    eventually(lambda: "received SIGTERM" in worker.output(), bool, timeout=5, what="first SIGTERM seen")
    assert worker.running()  # in its grace period, waiting for the handlers
    forced_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    assert time.monotonic() - forced_at < 8, "a second SIGTERM should not wait for the 30 s grace period"
    assert "forcing exit" in worker.output()
    rows = jobs(db_url)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    for row in rows:
        assert (row["attempts"], row["last_error"], row["locked_by"]) == (0, None, None), row
    assert done_counts(db_url) == {}

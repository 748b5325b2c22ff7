"""Recovery from PostgreSQL outages: no 30-second stall, and no job left locked by a live worker.

Both tests stop the session's embedded server, so they skip against JOBWORKER_TEST_DATABASE_URL.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.acceptance.helpers import Process, done_counts, eventually, jobs, sql
from tests.pg import PgServer

SpawnWorker = Callable[..., Process]
ADD_SQL = "select (graphile_worker.add_job('record', json_build_object('i', %s::int))).id"
SLOW_SQL = "select (graphile_worker.add_job('record', json_build_object('i', %s::int, 'sleep', 0.2))).id"


def _embedded(pg: PgServer) -> None:
    if pg.embedded is None:
        pytest.skip("stopping PostgreSQL needs the embedded server (JOBWORKER_TEST_DATABASE_URL is set)")


def _crash_and_restart(pg: PgServer) -> None:
    """``pg_ctl stop -m immediate`` (a crash, as far as the clients can tell), then start again."""
    assert pg.embedded is not None
    pg.embedded._run("pg_ctl", "-D", str(pg.embedded.data), "-m", "immediate", "-w", "stop")
    pg.embedded._pg_ctl("start")


def test_an_idle_worker_runs_a_job_added_right_after_an_outage_without_a_30s_stall(
    pg: PgServer, db_url: str, spawn_worker: SpawnWorker
) -> None:
    _embedded(pg)
    assert pg.embedded is not None
    worker = spawn_worker(db_url, "--poll-interval", "200ms")
    eventually(
        lambda: sql(db_url, "select count(*) as n from graphile_worker._private_workers")[0]["n"],
        lambda n: n == 1,
        timeout=20,
        what="worker registered",
        context=worker.output,
    )
    pg.embedded.stop()
    try:
        # Wait until the worker has seen the outage (its pool has given up reconnecting by then).
        eventually(
            worker.output,
            lambda out: "LISTEN connection lost" in out,
            timeout=20,
            what="the worker noticed the outage",
        )
    finally:
        pg.embedded._pg_ctl("start")  # type: ignore[attr-defined]
    job = sql(db_url, ADD_SQL, [1])[0]["id"]
    # Before, the claim sat out the pool's 30 s wait; now it retries about every second.
    eventually(
        lambda: done_counts(db_url),
        lambda done: done == {job: 1},
        timeout=10,
        what="the job ran soon after the server came back",
        context=worker.output,
    )
    assert worker.running(), worker.output()


def test_jobs_claimed_when_postgres_crashes_run_while_the_worker_lives(
    pg: PgServer, db_url: str, spawn_worker: SpawnWorker
) -> None:
    """Before, a claim that committed just before a crash lost its reply, and its jobs stayed locked by the
    live, heartbeating worker until it exited (seen in 3 of 10 immediate stops). Crash a few times mid-load."""
    _embedded(pg)
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
    added: list[int] = []
    for crash in range(3):
        added += [sql(db_url, SLOW_SQL, [crash * 100 + i])[0]["id"] for i in range(40)]
        # Crash while the worker is busy with this batch: some of it done, more of it claimed.
        target = len(added) - 30
        eventually(lambda: len(done_counts(db_url)), lambda n: n >= target, timeout=30, what="work under way")  # noqa: B023
        _crash_and_restart(pg)

    eventually(
        lambda: sql(db_url, "select count(*) as n from graphile_worker._private_jobs")[0]["n"],
        lambda n: n == 0,
        timeout=30,
        what="every job completed while the worker kept running",
        context=lambda: f"{jobs(db_url)}\n{worker.output()}",
    )
    assert worker.running(), worker.output()
    # (No count of runs per job: the embedded server runs with synchronous_commit=off, so a crash may lose
    # the last acknowledged commits, effects rows and added jobs alike, and reuse their ids.)


def test_a_result_finished_while_the_database_is_down_is_kept_until_the_grace_period_ends(
    pg: PgServer, db_url: str, spawn_worker: SpawnWorker
) -> None:
    """Before, a stopping worker dropped unwritten results after 15 s whatever its grace period, so the job
    stayed locked until the sweep and then ran again. Now they are retried until the grace period ends."""
    _embedded(pg)
    assert pg.embedded is not None
    [job] = sql(db_url, "select (graphile_worker.add_job('pure', json_build_object('sleep', 2))).id")
    worker = spawn_worker(db_url, "--graceful-shutdown", "40s", "--poll-interval", "200ms")
    eventually(
        lambda: sql(db_url, "select locked_by from graphile_worker._private_jobs"),
        lambda rows: rows and rows[0]["locked_by"],
        timeout=20,
        what="the job is running",
        context=worker.output,
    )
    pg.embedded.stop()
    try:
        worker.signal(signal.SIGTERM)  # the job finishes 2 s later, with nowhere to write its result
        eventually(
            worker.output,
            lambda out: "could not record 1 job results" in out,
            timeout=20,
            what="the result write failing",
        )
        time.sleep(17)  # the outage's length: longer than the 15 s after which results used to be dropped
        assert worker.running(), worker.output()
    finally:
        pg.embedded._pg_ctl("start")
    assert worker.wait(40) == 0, worker.output()
    assert sql(db_url, "select id from graphile_worker._private_jobs where id = %s", [job["id"]]) == [], worker.output()

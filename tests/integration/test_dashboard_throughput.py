"""The throughput chart's history: jobworker workers add their completed and failed jobs per minute with the
heartbeat (``throughput.record``), so the last hour outlives the dashboard and sums every worker."""

from __future__ import annotations

from typing import Any

import psycopg

from jobworker import metrics, throughput
from jobworker.dashboard.store import DashboardStore
from jobworker.store import JobStore

S = "graphile_worker"


async def record(url: str, worker_id: str) -> None:
    """One heartbeat's throughput write for ``worker_id``, through a store of its own."""
    async with JobStore(url, S) as store:
        await throughput.record(store, worker_id)


async def overview_totals(url: str) -> tuple[int, int]:
    store = DashboardStore(url, S, read_only=True, refresh=0.01)
    await store.open()
    try:
        snap = await store.overview()
    finally:
        await store.close()
    return sum(n for _, n in snap.completed_per_minute), sum(n for _, n in snap.failed_per_minute)


async def test_counts_recorded_by_two_workers_survive_a_dashboard_restart(db_url: str) -> None:
    throughput.SAMPLER.take()  # what earlier tests in this process counted is not this test's
    metrics.JOBS_COMPLETED.labels("t_a").inc(5)
    metrics.JOBS_FAILED.labels("t_a", "false").inc(2)
    await record(db_url, "worker-1")
    metrics.JOBS_COMPLETED.labels("t_b").inc(3)
    await record(db_url, "worker-2")
    await record(db_url, "worker-1")  # nothing new: no statement, no change
    assert await overview_totals(db_url) == (8, 2)
    assert await overview_totals(db_url) == (8, 2)  # a second dashboard process reads the same hour
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"select worker_id, completed, failed from {S}._private_jobworker_throughput").fetchall()
    assert sorted(rows) == [("worker-1", 5, 2), ("worker-2", 3, 0)]


async def test_rows_older_than_two_hours_are_pruned_and_not_shown(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            f"insert into {S}._private_jobworker_throughput (minute, worker_id, completed, failed) values"
            " (now() - interval '3 hours', 'gone', 100, 1), (now() - interval '90 minutes', 'old', 50, 0)"
        )
    assert await overview_totals(db_url) == (0, 0)  # outside the last hour
    throughput.SAMPLER.take()
    metrics.JOBS_COMPLETED.labels("t_c").inc()
    await record(db_url, "worker-1")
    with psycopg.connect(db_url) as conn:
        left = conn.execute(f"select worker_id from {S}._private_jobworker_throughput order by 1").fetchall()
    assert left == [("old",), ("worker-1",)]


async def test_a_failed_write_keeps_the_counts_for_the_next_beat(db_url: str) -> None:
    throughput.SAMPLER.take()
    metrics.JOBS_COMPLETED.labels("t_d").inc(4)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"alter table {S}._private_jobworker_throughput rename to throughput_away")
    await record(db_url, "worker-1")  # logs, does not raise
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"alter table {S}.throughput_away rename to _private_jobworker_throughput")
    await record(db_url, "worker-1")
    assert await overview_totals(db_url) == (4, 0)


async def test_a_schema_without_the_table_still_shows_the_overview(db_url: str) -> None:
    from jobworker.dashboard import pages

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop table {S}._private_jobworker_throughput")
    store = DashboardStore(db_url, S, read_only=True, refresh=0.01)
    await store.open()
    try:
        snap = await store.overview()
    finally:
        await store.close()
    assert not snap.throughput_recorded and snap.completed_per_minute == []
    assert "jobworker migrate" in pages.chart(snap)


async def test_a_running_worker_records_its_jobs_with_its_heartbeat(db_url: str) -> None:
    """End to end: a real worker completes and fails jobs; its heartbeats put them in the dashboard's hour."""
    from jobworker import JobContext, define_job
    from jobworker.worker_utils import WorkerUtils
    from tests.integration.runtime import eventually, make_worker, running

    async def ok(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    async def bad(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError("no")

    done = define_job("tp_ok", payload=dict[str, Any], handler=ok)
    fails = define_job("tp_bad", payload=dict[str, Any], handler=bad, max_attempts=1)
    async with WorkerUtils(db_url) as u:
        for _ in range(3):
            await u.add_job("tp_ok", {})
        for _ in range(2):
            await u.add_job("tp_bad", {}, max_attempts=1)
    throughput.SAMPLER.take()  # counted by earlier tests in this process: not this worker's
    async with running(make_worker(db_url, done, fails)):
        await eventually(
            lambda: overview_totals(db_url), lambda t: t == (3, 2), within=30, what="3 completed, 2 failed"
        )

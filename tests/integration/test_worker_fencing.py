"""Fencing: a worker writes results only for jobs still locked by it, and stops itself when its heartbeat is lost.

The stale-worker sweep can take a job back from a worker whose heartbeat went stale (a partition, a blocked
event loop, force-unlock). That worker's late completion must not delete the job another worker now holds,
or that add_job(job_key) has rewritten with a new payload.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb

from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_row, lock_job, make_worker, running, wait_event


def fenced_count(task: str, kind: str) -> float:
    return REGISTRY.get_sample_value("jobworker_results_fenced_total", {"task": task, "kind": kind}) or 0.0


async def test_a_late_completion_leaves_the_job_another_worker_now_holds(utils: WorkerUtils, db_url: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @define_job("fence_slow", payload=dict)
    async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await release.wait()

    job = await utils.add_job("fence_slow", {"n": 1})
    before = fenced_count("fence_slow", "complete")
    worker = make_worker(db_url, slow)
    async with running(worker):
        await wait_event(started, what="job started")
        # What the sweep does to a worker it takes for dead, then worker B claims the job (in one step, so
        # this worker cannot claim it back in between).
        await lock_job(db_url, job.id, "worker-b")
        release.set()
        await eventually(
            lambda: asyncio.sleep(0, fenced_count("fence_slow", "complete")),
            lambda n: n == before + 1,
            what="the refused completion counted",
        )

    row = await job_row(db_url, job.id)
    assert row is not None, "the late completion deleted a job that worker-b holds"
    assert row["locked_by"] == "worker-b"


async def test_a_late_completion_does_not_delete_the_payload_that_replaced_the_job(
    utils: WorkerUtils, db_url: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[int] = []

    @define_job("fence_keyed", payload=dict)
    async def keyed(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append(payload["n"])
        started.set()
        await release.wait()

    job = await utils.add_job("fence_keyed", {"n": 1}, job_key="K")
    worker = make_worker(db_url, keyed)
    async with running(worker):
        await wait_event(started, what="job started")
        # The sweep's unlock and the producer's rewrite in one transaction, so the worker cannot claim between.
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            await conn.execute("select graphile_worker.force_unlock_workers(%s)", [[worker.worker_id]])
            replaced = await utils.add_job("fence_keyed", {"n": 2}, job_key="K", connection=conn)
        assert replaced.id == job.id  # rewritten in place: same row, new payload
        release.set()
        await eventually(lambda: asyncio.sleep(0, list(seen)), lambda s: s == [1, 2], what="the new payload ran")
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, what="the new payload completed")


async def _block_heartbeats(url: str) -> None:
    """Make every write to _private_workers fail, as a heartbeat does when the database cannot take it."""
    await fetch(
        url,
        "create function public.refuse_heartbeat() returns trigger language plpgsql as "
        "$$ begin raise exception 'heartbeat refused by the test'; end $$",
    )
    await fetch(
        url,
        "create trigger refuse_heartbeat before insert or update on graphile_worker._private_workers "
        "for each row execute function public.refuse_heartbeat()",
    )


async def test_a_worker_whose_heartbeat_fails_signals_its_jobs_stops_claiming_and_does_not_complete(
    utils: WorkerUtils, db_url: str
) -> None:
    reasons: list[str | None] = []
    runs: list[int] = []

    @define_job("fence_beat", payload=dict)
    async def beat(payload: dict[str, Any], ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await ctx.signal.wait()
            reasons.append(ctx.signal.reason)
            # Returns normally, as a handler that ignores the signal's meaning would: no completion follows.

    job = await utils.add_job("fence_beat")
    worker = make_worker(db_url, beat, heartbeat_interval=0.1, sweep_threshold=1.0)
    async with running(worker):
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is not None and r["locked_by"], what="claimed")
        await _block_heartbeats(db_url)
        await eventually(lambda: asyncio.sleep(0, list(reasons)), lambda r: len(r) == 1, what="ctx.signal fired")
        assert reasons[0] is not None and "heartbeat lost" in reasons[0]
        assert worker.fenced
        # Not completed: handed back (still ours, so the attempt is refunded), and not claimed again.
        row = await eventually(
            lambda: job_row(db_url, job.id), lambda r: r is not None and r["locked_by"] is None, what="returned"
        )
        assert row is not None and row["attempts"] == 0
        for _ in range(10):
            await asyncio.sleep(0.05)
            assert runs == [1], "a fenced worker claimed a job"
        await fetch(db_url, "drop trigger refuse_heartbeat on graphile_worker._private_workers")
        await eventually(lambda: job_row(db_url, job.id), lambda r: r is None, within=10, what="job ran after recovery")
    assert runs == [1, 1] and not worker.fenced


async def test_the_sweep_skips_a_worker_whose_threshold_is_under_3x_its_heartbeat_interval(
    utils: WorkerUtils, db_url: str
) -> None:
    await fetch(
        db_url,
        "insert into graphile_worker._private_workers (id, last_heartbeat_at, metadata) values "
        "('slow-beat', now() - interval '5 seconds', %(slow)s), ('dead', now() - interval '5 seconds', %(fast)s)",
        {"slow": Jsonb({"heartbeat_interval": 10}), "fast": Jsonb({"heartbeat_interval": 0.5})},
    )
    alive = await utils.add_job("t")
    gone = await utils.add_job("t")
    await lock_job(db_url, alive.id, "slow-beat", age_seconds=5)
    await lock_job(db_url, gone.id, "dead", age_seconds=5)

    result = await utils.sweep_stale_workers("2s")

    assert result.unsafe_threshold_workers == ["slow-beat"]
    assert result.stale_workers == ["dead"] and result.recovered_job_ids == [gone.id]
    row = await job_row(db_url, alive.id)
    assert row is not None and row["locked_by"] == "slow-beat"


async def test_a_worker_records_its_heartbeat_interval(utils: WorkerUtils, db_url: str) -> None:
    @define_job("fence_noop", payload=dict)
    async def noop(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    worker = make_worker(db_url, noop, heartbeat_interval=0.25)
    async with running(worker):
        rows = await fetch(db_url, "select metadata from graphile_worker._private_workers")
        assert [r["metadata"]["heartbeat_interval"] for r in rows] == [0.25]

"""What a worker claims: priority then run_at order, serial named queues, flags, queue filter, known tasks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from jobworker.jobs import JobContext, define_job
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, fetch, job_count, job_rows, make_worker, running, wait_event


async def test_claims_in_priority_then_run_at_order(utils: WorkerUtils, db_url: str) -> None:
    ran: list[str] = []

    @define_job("ordered", payload=dict)
    async def ordered(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["name"])

    now = datetime.now(UTC)
    await utils.add_job("ordered", {"name": "low"}, priority=5, run_at=now - timedelta(minutes=9))
    await utils.add_job("ordered", {"name": "urgent"}, priority=-1, run_at=now - timedelta(minutes=1))
    await utils.add_job("ordered", {"name": "newer"}, priority=0, run_at=now - timedelta(minutes=1))
    await utils.add_job("ordered", {"name": "older"}, priority=0, run_at=now - timedelta(minutes=2))
    await utils.add_job("ordered", {"name": "future"}, priority=-9, run_at=now + timedelta(hours=1))

    processed = await make_worker(db_url, ordered, concurrency=1).run_once()

    assert ran == ["urgent", "older", "newer", "low"]
    assert processed == 4
    assert [r["payload"]["name"] for r in await job_rows(db_url)] == ["future"]


async def test_claiming_counts_the_attempt_and_locks_job_and_queue(utils: WorkerUtils, db_url: str) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @define_job("held", payload=dict)
    async def held(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await release.wait()

    added = await utils.add_job("held", queue_name="hq")
    worker = make_worker(db_url, held)
    async with running(worker):
        await wait_event(started, what="job start")
        row = (await job_rows(db_url))[0]
        assert (row["id"], row["attempts"], row["locked_by"]) == (added.id, 1, worker.worker_id)
        assert row["locked_at"] is not None
        queue = await fetch(db_url, "select locked_by from graphile_worker._private_job_queues where queue_name = 'hq'")
        assert queue == [{"locked_by": worker.worker_id}]
        release.set()
        await eventually(lambda: job_count(db_url), lambda n: n == 0, what="job completion")
    queue = await fetch(db_url, "select locked_at, locked_by from graphile_worker._private_job_queues")
    assert queue == [{"locked_at": None, "locked_by": None}], "success must unlock the queue"


async def test_named_queue_runs_one_job_at_a_time_across_workers(utils: WorkerUtils, db_url: str) -> None:
    active: dict[str, int] = {"q1": 0, "q2": 0}
    peak: dict[str, int] = {"q1": 0, "q2": 0}
    both_queues_at_once = asyncio.Event()
    done: list[int] = []

    @define_job("serial", payload=dict)
    async def serial(payload: dict[str, Any], ctx: JobContext) -> None:
        queue = payload["queue"]
        active[queue] += 1
        peak[queue] = max(peak[queue], active[queue])
        if active["q1"] and active["q2"]:
            both_queues_at_once.set()
        await asyncio.sleep(0.03)
        active[queue] -= 1
        done.append(payload["i"])

    for i in range(12):
        queue = "q1" if i % 2 else "q2"
        await utils.add_job("serial", {"queue": queue, "i": i}, queue_name=queue)

    workers = [make_worker(db_url, serial, concurrency=4) for _ in range(2)]
    async with running(workers[0]), running(workers[1]):
        await eventually(lambda: job_count(db_url), lambda n: n == 0, within=10, what="queue drained")

    assert sorted(done) == list(range(12))
    assert peak == {"q1": 1, "q2": 1}, "a named queue ran two jobs at once"
    assert both_queues_at_once.is_set(), "different queues must run side by side"


async def test_unqueued_jobs_run_in_parallel_up_to_concurrency(utils: WorkerUtils, db_url: str) -> None:
    active = 0
    peak = 0
    all_in = asyncio.Event()

    @define_job("parallel", payload=dict)
    async def parallel(payload: dict[str, Any], ctx: JobContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == 3:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 5)
        active -= 1

    for i in range(5):
        await utils.add_job("parallel", {"i": i})
    await make_worker(db_url, parallel, concurrency=3).run_once()

    assert peak == 3
    assert await job_count(db_url) == 0


async def test_forbidden_flags_are_never_claimed(utils: WorkerUtils, db_url: str) -> None:
    ran: list[str] = []

    @define_job("flagged", payload=dict)
    async def flagged(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["name"])

    await utils.add_job("flagged", {"name": "plain"})
    await utils.add_job("flagged", {"name": "gpu"}, flags=["gpu"])
    await utils.add_job("flagged", {"name": "gpu-and-other"}, flags=["other", "gpu"])
    await utils.add_job("flagged", {"name": "other"}, flags=["other"])

    await make_worker(db_url, flagged, forbidden_flags=("gpu",)).run_once()

    assert sorted(ran) == ["other", "plain"]
    left = await job_rows(db_url)
    assert sorted(r["payload"]["name"] for r in left) == ["gpu", "gpu-and-other"]
    assert all(r["attempts"] == 0 and r["locked_at"] is None for r in left)


async def test_queues_filter_claims_only_those_queues(utils: WorkerUtils, db_url: str) -> None:
    ran: list[str] = []

    @define_job("routed", payload=dict)
    async def routed(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["name"])

    await utils.add_job("routed", {"name": "in-a"}, queue_name="a")
    await utils.add_job("routed", {"name": "in-b"}, queue_name="b")
    await utils.add_job("routed", {"name": "no-queue"})

    await make_worker(db_url, routed, queues=("a",)).run_once()

    assert ran == ["in-a"]
    assert sorted(r["payload"]["name"] for r in await job_rows(db_url)) == ["in-b", "no-queue"]


async def test_only_tasks_in_the_registry_are_claimed(utils: WorkerUtils, db_url: str) -> None:
    ran: list[int] = []

    @define_job("mine", payload=dict)
    async def mine(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["i"])

    await utils.add_job("mine", {"i": 1})
    other = await utils.add_job("someone_elses", {"i": 2})

    assert await make_worker(db_url, mine).run_once() == 1

    assert ran == [1]
    rows = await job_rows(db_url)
    assert [(r["id"], r["attempts"], r["locked_at"], r["last_error"]) for r in rows] == [(other.id, 0, None, None)]


async def test_locked_jobs_are_not_claimed_twice(utils: WorkerUtils, db_url: str) -> None:
    # Recorded, not raised: the worker turns a handler's exception into a failed attempt, so an assert
    # inside the handler never reaches pytest.
    ran: list[str] = []

    @define_job("claimed", payload=dict)
    async def claimed(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    job = await utils.add_job("claimed")
    await fetch(
        db_url,
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'other', attempts = 1 where id = %s",
        [job.id],
    )
    processed = await make_worker(db_url, claimed).run_once()
    assert ran == [], "a job locked by another worker was run"
    assert processed == 0
    row = (await job_rows(db_url))[0]
    assert (row["attempts"], row["locked_by"]) == (1, "other")

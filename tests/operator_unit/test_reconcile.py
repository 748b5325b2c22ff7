"""reconcile.py against an in-memory API: the breaking-migration drain end to end, without a cluster."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from jobworker_operator import names, reconcile
from tests.operator_unit.fake_api import FakeApi, conditions
from tests.operator_unit.helpers import body


@dataclass
class Stats:
    ready: int = 0
    scheduled: int = 0
    locked: int = 0
    failed: int = 0
    oldest_ready_seconds: float | None = None
    by_task: tuple[()] = ()
    workers_active: int = 0
    workers_stale: int = 0


async def stats_reader(url: str, schema: str) -> Stats:
    return Stats()


async def _schema_version(url: str, schema: str) -> int:
    return 19


async def test_breaking_migration_drains_then_rolls_out(monkeypatch: Any) -> None:
    monkeypatch.setattr("jobworker_operator.queue_stats.schema_version", _schema_version)
    pool = body(name="pool", scheduler={"enabled": False})
    api = FakeApi(pool)
    rt = reconcile.Runtime(api=api, reader=stats_reader)

    async def run(refresh: bool = False) -> None:
        await rt.trigger("ns", "pool", refresh_stats=refresh)

    # 1. A new pool: only the migration Job exists until it succeeds.
    await run()
    (first_job,) = api.jobs()
    assert ("Deployment", "pool-worker") not in api.objects
    assert conditions(api)["Migrated"] == "False"

    api.finish(first_job)
    await run()
    assert api.deployment("pool-worker")["spec"]["replicas"] == 1
    assert api.pool()["status"]["migration"]["migratedDigest"] in first_job

    # 2. A new image whose migration is breaking while workers are live (exit 3).
    api.pool()["spec"]["image"] = "registry.example/app:2.0"
    api.pool()["metadata"]["generation"] += 1
    await run()
    second_job = next(j for j in api.jobs() if j != first_job and not j.endswith("-b"))
    assert api.deployment("pool-worker")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")
    api.finish(
        second_job,
        "Failed",
        "PodFailurePolicy",
        f"Container migrate for pod ns/{second_job}-x failed with exit code 3 matching FailJob rule at index 0",
    )
    await run()
    # (the first pass also wrote the pool's own spec.workers.replicas default, for /scale)
    assert api.merge_patches == [
        ("pool", {"spec": {"workers": {"replicas": 1}}}),
        ("pool-worker", {"spec": {"replicas": 0}}),
    ]
    assert api.pool()["status"]["migration"]["phase"] == "Draining"
    assert api.pool()["status"]["migration"]["drainStartedAt"]
    assert not any(j.endswith("-b") for j in api.jobs())

    # 3. The next pass reads locked == 0 from the database and runs migrate --allow-breaking.
    await run()
    breaking = next(j for j in api.jobs() if j.endswith("-b"))
    args = api.objects[("Job", breaking)]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["migrate", "--allow-breaking"]
    assert api.deployment("pool-worker")["spec"]["replicas"] == 0

    # 4. Success: roll out the new image with the replicas back, and drop the old Jobs.
    api.finish(breaking)
    await run()
    worker = api.deployment("pool-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")
    assert conditions(api)["Migrated"] == "True"
    assert first_job not in api.jobs()


async def test_unreachable_database_degrades_without_raising(monkeypatch: Any) -> None:
    async def broken(url: str, schema: str) -> Stats:
        raise OSError("connection to postgresql://app:hunter2@db:5432/app refused")

    api = FakeApi(body(name="pool", migration={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=broken)
    await rt.trigger("ns", "pool", refresh_stats=True)
    degraded = next(c for c in api.pool()["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "database unreachable" in degraded["message"]
    assert "hunter2" not in degraded["message"]


async def test_a_second_pass_applies_nothing() -> None:
    api = FakeApi(body(name="pool", migration={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=stats_reader)
    await rt.trigger("ns", "pool")
    versions = {k: o["metadata"]["resourceVersion"] for k, o in api.objects.items() if k[0] != names.KIND}
    await rt.trigger("ns", "pool")
    assert versions == {k: o["metadata"]["resourceVersion"] for k, o in api.objects.items() if k[0] != names.KIND}


async def test_forget_drops_the_pools_lock() -> None:
    api = FakeApi(body(name="pool", migration={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=stats_reader)
    await rt.trigger("ns", "pool")
    assert ("ns", "pool") in rt.locks
    rt.forget("ns", "pool")
    assert rt.locks == {}


async def test_failed_breaking_migration_brings_the_old_workers_back(monkeypatch: Any) -> None:
    monkeypatch.setattr("jobworker_operator.queue_stats.schema_version", _schema_version)
    api = FakeApi(body(name="pool", workers={"replicas": 2}))
    rt = reconcile.Runtime(api=api, reader=stats_reader)

    async def run() -> None:
        await rt.trigger("ns", "pool")

    await run()
    (first_job,) = api.jobs()
    api.finish(first_job)
    await run()
    assert api.deployment("pool-worker")["spec"]["replicas"] == 2
    assert api.deployment("pool-scheduler")["spec"]["replicas"] == 1

    api.pool()["spec"]["image"] = "registry.example/app:2.0"
    api.pool()["metadata"]["generation"] += 1
    await run()
    second_job = next(j for j in api.jobs() if j != first_job)
    api.finish(second_job, "Failed", "PodFailurePolicy", "Container migrate failed with exit code 3 matching rule")
    await run()  # drain
    await run()  # locked == 0: migrate --allow-breaking
    breaking = next(j for j in api.jobs() if j.endswith("-b"))
    assert api.deployment("pool-worker")["spec"]["replicas"] == 0
    api.finish(breaking, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    await run()

    # The schema stayed where it was: the old image comes back at its replica count, not the new one.
    worker, scheduler = api.deployment("pool-worker"), api.deployment("pool-scheduler")
    assert worker["spec"]["replicas"] == 2
    assert scheduler["spec"]["replicas"] == 1
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")
    assert api.pool()["status"]["migration"]["phase"] == "Failed"
    assert conditions(api)["Degraded"] == "True"


async def test_a_trigger_cancelled_while_waiting_does_not_block_later_ones() -> None:
    # kopf cancels a handler that waits for the pool's lock (a deleted pool's timer, shutdown): the pass it
    # had queued must not stay "pending" forever, or every later trigger only joins a pass that never runs.
    api = FakeApi(body(name="pool", migration={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=stats_reader)
    lock = rt.locks.setdefault(("ns", "pool"), asyncio.Lock())
    await lock.acquire()
    waiting = asyncio.create_task(rt.trigger("ns", "pool"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    lock.release()
    await rt.trigger("ns", "pool")
    assert ("Deployment", "pool-worker") in api.objects

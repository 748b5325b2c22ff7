"""Lock ages in the queue reading (issue 10, item 10): per worker holding jobs, how many and how old its newest
and oldest lock are, bounded; and the autoscaler, on a real database, scales below the pods running jobs only
when those jobs have run past the scale-down grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobworker import sql
from jobworker.models import LOCK_HOLDERS
from jobworker_operator import queue_stats, reconcile, status
from tests.integration.runtime import fetch
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body

GRACE = 60


async def lock(url: str, worker: str, *ages: float) -> None:
    """One job per age, locked by ``worker`` that many seconds ago (as a claim would, then time passing)."""
    for age in ages:
        # Two statements: an update cannot see a row that add_job inserts within the same statement.
        job_id = (await fetch(url, "select (graphile_worker.add_job('long', '{}'::json)).id"))[0]["id"]
        await fetch(
            url,
            "update graphile_worker._private_jobs set locked_by = %s, locked_at = now() - %s * interval '1 second', "
            "attempts = 1 where id = %s",
            [worker, age, job_id],
        )


async def holders(url: str, limit: int = LOCK_HOLDERS) -> list[dict[str, Any]]:
    return await fetch(url, sql.query("lock_holders", "graphile_worker"), {"limit": limit})


async def test_each_worker_holding_jobs_with_its_newest_and_oldest_lock_youngest_first(db_url: str) -> None:
    await fetch(db_url, "select graphile_worker.add_job('ready', '{}'::json)")  # not locked: not a holder
    await lock(db_url, "w-a", 10, 600)
    await lock(db_url, "w-b", 3600)
    await lock(db_url, "w-c", 1, 2, 5000)
    rows = await holders(db_url)
    assert [(r["jobs"], r["holders"]) for r in rows] == [(3, 3), (2, 3), (1, 3)]
    ages = [(r["newest_lock_seconds"], r["oldest_lock_seconds"]) for r in rows]
    for (newest, oldest), (want_newest, want_oldest) in zip(ages, [(1, 5000), (10, 600), (3600, 3600)], strict=True):
        # The ages grow while the test runs (a shared machine may take seconds between statements).
        assert want_newest <= newest < want_newest + 30 and want_oldest <= oldest < want_oldest + 30
    assert not any("w-" in str(value) for r in rows for value in r.values())  # no worker id leaves


async def test_the_reading_is_bounded_and_counts_every_holder(db_url: str) -> None:
    await fetch(db_url, "select graphile_worker.add_job('long', '{}'::json) from generate_series(1, 130)")
    await fetch(
        db_url,
        "with numbered as (select id, row_number() over (order by id) as i from graphile_worker._private_jobs) "
        "update graphile_worker._private_jobs j set locked_by = 'w-' || n.i, "
        "locked_at = now() - n.i * interval '1 second' from numbered n where j.id = n.id",
    )
    rows = await holders(db_url, limit=LOCK_HOLDERS)
    assert len(rows) == LOCK_HOLDERS
    assert {r["holders"] for r in rows} == {130}
    newest = [r["newest_lock_seconds"] for r in rows]
    assert newest == sorted(newest) and newest[-1] - newest[0] == LOCK_HOLDERS - 1  # the youngest 100


async def test_no_holders_no_rows(db_url: str) -> None:
    assert await holders(db_url) == []


async def test_the_runtime_reading_carries_them(db_url: str) -> None:
    await lock(db_url, "w-a", 10, 600)
    stats = await queue_stats.worker_utils_reader(db_url, "graphile_worker")
    assert stats.lock_holders is not None and stats.lock_holders_total == 1
    [holder] = stats.lock_holders
    assert holder.jobs == 2 and 10 <= holder.newest_lock_seconds < 40 and 600 <= holder.oldest_lock_seconds < 630


async def autoscaled_replicas(url: str, current: int) -> int:
    """One reconcile pass of a pool that ran ``current`` pods and wanted fewer for long past the delay."""
    long_ago = status.timestamp(datetime.now(UTC) - timedelta(hours=1))
    pool = body(
        name="pool",
        migration={"enabled": False},
        workers={
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 5,
                "targetJobsPerReplica": 10,
                "scaleDownDelay": f"{GRACE}s",
            }
        },
    )
    pool["status"] = {"autoscaling": {"replicas": current, "belowSince": long_ago}}

    class DatabaseApi(FakeApi):
        async def read_secret(self, namespace: str, name: str, key: str) -> str:
            return url

    api = DatabaseApi(pool)
    rt = reconcile.Runtime(api=api, reader=queue_stats.worker_utils_reader)
    await rt.trigger("ns", "pool", refresh_stats=True)
    replicas: int = api.pool()["status"]["autoscaling"]["replicas"]
    return replicas


async def test_pods_with_young_jobs_are_kept(db_url: str) -> None:
    # 3 pods, one job each, locked within the grace: ceil(3 / 10) = 1, but each pod runs a job.
    await lock(db_url, "w-a", 5)
    await lock(db_url, "w-b", 20)
    await lock(db_url, "w-c", 30)
    assert await autoscaled_replicas(db_url, current=3) == 3


async def test_pods_whose_jobs_ran_past_the_grace_are_scaled_down(db_url: str) -> None:
    # Two of the three pods hold only jobs running for an hour (stuck or very long): they no longer pin the
    # pool at 3. Before lock ages, every locked job kept a pod (3).
    await lock(db_url, "w-a", 5)
    await lock(db_url, "w-b", 3600)
    await lock(db_url, "w-c", 3600, 4000)
    assert await autoscaled_replicas(db_url, current=3) == 1


async def test_three_jobs_of_one_pod_keep_one_pod(db_url: str) -> None:
    await lock(db_url, "w-a", 5, 6, 7)
    assert await autoscaled_replicas(db_url, current=3) == 1

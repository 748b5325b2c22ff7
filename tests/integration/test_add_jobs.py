"""WorkerUtils.add_jobs (bulk) and graphile's SQL add_jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from jobworker.models import JobSpec
from jobworker.worker_utils import ANALYZE_THRESHOLD, WorkerUtils
from tests.integration.runtime import eventually, fetch, job_count, job_rows


async def analyze_count(url: str) -> int:
    rows = await fetch(
        url,
        "select analyze_count from pg_stat_user_tables where schemaname = 'graphile_worker' "
        "and relname = '_private_jobs'",
    )
    return int(rows[0]["analyze_count"])


async def test_empty_bulk_add_writes_nothing(utils: WorkerUtils, db_url: str) -> None:
    assert await utils.add_jobs([]) == []
    assert await job_count(db_url) == 0
    tasks = await fetch(db_url, "select count(*) as n from graphile_worker._private_tasks")
    assert tasks[0]["n"] == 0


async def test_bulk_add_stores_every_spec_in_order(utils: WorkerUtils, db_url: str) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    added = await utils.add_jobs(
        [
            JobSpec(task="a", payload={"i": 0}),
            JobSpec(task="b", payload={"i": 1}, queue_name="q1", priority=2, max_attempts=4, flags=["f"]),
            JobSpec(task="a", payload={"i": 2}, run_at=later, job_key="key-2"),
        ]
    )
    assert len(added) == 3
    rows = {r["id"]: r for r in await job_rows(db_url)}
    stored = [rows[a.id] for a in added]
    assert [r["task_identifier"] for r in stored] == ["a", "b", "a"]
    assert [r["payload"] for r in stored] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert (stored[1]["queue_name"], stored[1]["priority"], stored[1]["max_attempts"]) == ("q1", 2, 4)
    assert stored[1]["flags"] == {"f": True}
    assert stored[2]["run_at"] == later and stored[2]["key"] == "key-2"
    assert stored[0]["max_attempts"] == 25 and stored[0]["queue_name"] is None and stored[0]["flags"] is None


async def test_bulk_add_replaces_keyed_jobs_and_merges_batch_payloads(utils: WorkerUtils, db_url: str) -> None:
    first = await utils.add_job("batched", [1, 2], job_key="k")
    again = await utils.add_jobs([JobSpec(task="batched", payload=[3], job_key="k")])
    assert again[0].id == first.id and again[0].revision == 1
    assert [r["payload"] for r in await job_rows(db_url)] == [[1, 2, 3]]


async def test_bulk_add_preserve_run_at(utils: WorkerUtils, db_url: str) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=10)
    await utils.add_job("throttled", {"v": 1}, job_key="k", run_at=soon)
    await utils.add_jobs(
        [JobSpec(task="throttled", payload={"v": 2}, job_key="k", run_at=soon + timedelta(hours=1))],
        job_key_preserve_run_at=True,
    )
    rows = await job_rows(db_url)
    assert [(r["payload"], r["run_at"]) for r in rows] == [({"v": 2}, soon)]

    await utils.add_jobs([JobSpec(task="throttled", payload={"v": 3}, job_key="k", run_at=soon + timedelta(hours=1))])
    rows = await job_rows(db_url)
    assert [(r["payload"], r["run_at"]) for r in rows] == [({"v": 3}, soon + timedelta(hours=1))]


async def test_large_bulk_add_refreshes_planner_statistics(utils: WorkerUtils, db_url: str) -> None:
    before = await analyze_count(db_url)
    await utils.add_jobs([JobSpec(task="small", payload={"i": i}) for i in range(10)])
    assert await analyze_count(db_url) == before, "a small bulk add must not run ANALYZE"

    added = await utils.add_jobs([JobSpec(task="bulk", payload={"i": i}) for i in range(ANALYZE_THRESHOLD)])

    assert len(added) == ANALYZE_THRESHOLD
    assert await job_count(db_url) == ANALYZE_THRESHOLD + 10
    await eventually(lambda: analyze_count(db_url), lambda n: n > before, within=5, what="ANALYZE of _private_jobs")


async def test_both_add_functions_notify_jobs_insert_with_a_count(utils: WorkerUtils, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute('listen "jobs:insert"')
        await utils.add_jobs([JobSpec(task="n") for _ in range(3)])
        await utils.add_job("n")
        notes = [n async for n in listener.notifies(timeout=5, stop_after=2)]
    assert [n.channel for n in notes] == ["jobs:insert", "jobs:insert"]
    assert [json.loads(n.payload)["count"] for n in notes] == [3, 1]


async def test_sql_add_jobs_with_job_spec_array(db_url: str) -> None:
    rows = await fetch(
        db_url,
        "select id, key, priority from graphile_worker.add_jobs(array["
        "  row('sql_bulk', '{\"a\": 1}'::json, 'sq', null, null, 'k1', 1, array['x'])::graphile_worker.job_spec,"
        "  row('sql_bulk', null, null, null, 3, null, null, null)::graphile_worker.job_spec"
        "])",
    )
    assert [(r["key"], r["priority"]) for r in rows] == [("k1", 1), (None, 0)]
    stored = await job_rows(db_url)
    assert [(r["payload"], r["queue_name"], r["max_attempts"], r["flags"]) for r in stored] == [
        ({"a": 1}, "sq", 25, {"x": True}),
        ({}, None, 3, None),
    ]


async def test_a_bad_spec_in_a_bulk_add_adds_nothing(utils: WorkerUtils, db_url: str) -> None:
    specs = [JobSpec(task="fine"), JobSpec(task="x" * 129)]
    try:
        await utils.add_jobs(specs)
    except Exception as exc:
        assert "task: 129 characters" in str(exc)
    else:
        raise AssertionError("an oversize task identifier was accepted")
    assert await job_count(db_url) == 0

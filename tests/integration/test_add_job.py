"""WorkerUtils.add_job and graphile's SQL add_job, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from jobworker import errors
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import fetch, job_count, job_row, job_rows


async def test_add_job_stores_task_payload_and_graphile_defaults(utils: WorkerUtils, db_url: str) -> None:
    added = await utils.add_job("send_email", {"to": "a@example.com", "n": 1})

    row = await job_row(db_url, added.id)
    assert row is not None
    assert row["task_identifier"] == "send_email"
    assert row["payload"] == {"to": "a@example.com", "n": 1}
    assert (row["queue_name"], row["priority"], row["attempts"], row["max_attempts"]) == (None, 0, 0, 25)
    assert (row["key"], row["flags"], row["locked_at"], row["revision"]) == (None, None, None, 0)
    assert row["run_at"] <= datetime.now(UTC)
    assert added.revision == 0 and added.max_attempts == 25 and added.attempts == 0


async def test_add_job_without_payload_stores_an_empty_object(utils: WorkerUtils, db_url: str) -> None:
    added = await utils.add_job("tick")
    row = await job_row(db_url, added.id)
    assert row is not None and row["payload"] == {}


async def test_add_job_options_are_stored(utils: WorkerUtils, db_url: str) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    added = await utils.add_job(
        "report",
        [1, 2],
        queue_name="reports",
        run_at=run_at,
        max_attempts=3,
        job_key="report:1",
        priority=-5,
        flags=["slow", "gpu"],
    )

    row = await job_row(db_url, added.id)
    assert row is not None
    assert row["queue_name"] == "reports"
    assert abs((row["run_at"] - run_at).total_seconds()) < 0.001
    assert (row["max_attempts"], row["key"], row["priority"]) == (3, "report:1", -5)
    assert row["flags"] == {"slow": True, "gpu": True}
    assert row["payload"] == [1, 2]
    assert (added.key, added.priority, added.max_attempts) == ("report:1", -5, 3)


async def test_naive_run_at_is_refused_before_touching_the_queue(utils: WorkerUtils, db_url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="run_at: must be timezone-aware"):
        await utils.add_job("report", run_at=datetime.now())
    assert await job_count(db_url) == 0


async def test_sql_add_job_with_graphiles_named_arguments(db_url: str) -> None:
    # The call Node's graphile-worker makes: every argument named, payload as json.
    rows = await fetch(
        db_url,
        "select * from graphile_worker.add_job(identifier => %s::text, payload => %s::json, "
        "queue_name => %s::text, run_at => now() + interval '1 minute', max_attempts => 7, "
        "job_key => %s::text, priority => 4, flags => array['a'], job_key_mode => 'replace')",
        ["from_sql", '{"x": 1}', "sqlq", "sqlkey"],
    )
    assert len(rows) == 1
    job = rows[0]
    stored = await job_row(db_url, job["id"])
    assert stored is not None
    assert stored["task_identifier"] == "from_sql" and stored["queue_name"] == "sqlq"
    assert (stored["payload"], stored["max_attempts"], stored["priority"]) == ({"x": 1}, 7, 4)
    assert stored["key"] == "sqlkey" and stored["flags"] == {"a": True}
    assert stored["run_at"] > datetime.now(UTC) + timedelta(seconds=50)


async def test_sql_add_job_positional_identifier_only(db_url: str) -> None:
    rows = await fetch(db_url, "select (graphile_worker.add_job('only_name')).id as id")
    stored = await job_row(db_url, rows[0]["id"])
    assert stored is not None
    assert (stored["payload"], stored["max_attempts"], stored["priority"]) == ({}, 25, 0)


async def test_sql_add_job_rejects_unknown_job_key_mode(db_url: str) -> None:
    with pytest.raises(psycopg.Error, match="Invalid job_key_mode"):
        await fetch(db_url, "select graphile_worker.add_job('t', job_key => 'k', job_key_mode => 'bogus')")
    assert await job_count(db_url) == 0


async def test_jobs_view_shows_the_job_without_its_payload(utils: WorkerUtils, db_url: str) -> None:
    added = await utils.add_job("viewed", {"secret": 1}, queue_name="vq")
    rows = await fetch(db_url, "select * from graphile_worker.jobs")
    assert [(r["id"], r["task_identifier"], r["queue_name"]) for r in rows] == [(added.id, "viewed", "vq")]
    assert "payload" not in rows[0]


async def test_add_job_notifies_jobs_insert(utils: WorkerUtils, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute('listen "jobs:insert"')
        await utils.add_job("notified")
        notes = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert len(notes) == 1
    assert notes[0].channel == "jobs:insert"
    assert '"count" : 1' in notes[0].payload or '"count":1' in notes[0].payload.replace(" ", "")


async def test_concurrent_adds_share_one_task_row(utils: WorkerUtils, db_url: str) -> None:
    others = [WorkerUtils(db_url) for _ in range(4)]
    try:
        await asyncio.gather(*(u.add_job("shared_task", {"i": i}) for i, u in enumerate(others)))
    finally:
        for u in others:
            await u.close()
    tasks = await fetch(db_url, "select 1 from graphile_worker._private_tasks where identifier = 'shared_task'")
    assert len(tasks) == 1
    assert sorted(r["payload"]["i"] for r in await job_rows(db_url)) == [0, 1, 2, 3]

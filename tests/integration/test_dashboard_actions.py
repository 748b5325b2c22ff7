"""Each dashboard action through WorkerUtils: what changes in the database, that running jobs are left alone,
and that the log names who did it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import psycopg
import pytest

from jobworker import errors
from jobworker.dashboard.actions import Actions
from jobworker.dashboard.store import DashboardStore
from jobworker.worker_utils import WorkerUtils
from tests.dashboard_seed import Seeded, seed


@pytest.fixture
async def seeded(db_url: str) -> Seeded:
    return await seed(db_url)


@pytest.fixture
async def actions(db_url: str) -> AsyncIterator[Actions]:
    store = DashboardStore(db_url, "graphile_worker", read_only=False)
    await store.open()
    async with WorkerUtils(db_url) as utils:
        yield Actions(utils, store)
    await store.close()


def row(url: str, job_id: int) -> dict[str, object] | None:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "select id, run_at, priority, attempts, max_attempts, last_error, locked_by, key,"
            " run_at <= now() as due from graphile_worker._private_jobs where id = %s",
            (job_id,),
        ).fetchone()


async def test_run_now_moves_run_at_and_skips_running_jobs(
    actions: Actions, seeded: Seeded, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "jobworker.dashboard")
    before = row(db_url, seeded.running)
    outcome = await actions.run_now("alice", [seeded.scheduled, seeded.running])
    assert outcome.done == [seeded.scheduled] and outcome.skipped == [seeded.running]
    assert row(db_url, seeded.scheduled)["due"] is True  # type: ignore[index]
    assert row(db_url, seeded.running) == before
    assert "run_now by alice" in caplog.text and str(seeded.scheduled) in caplog.text


async def test_change_priority_keeps_run_at(actions: Actions, seeded: Seeded, db_url: str) -> None:
    before = row(db_url, seeded.scheduled)
    outcome = await actions.change_priority("alice", [seeded.scheduled, seeded.orphan], -3)
    assert outcome.done == [seeded.scheduled] and outcome.skipped == [seeded.orphan]
    after = row(db_url, seeded.scheduled)
    assert after["priority"] == -3 and after["run_at"] == before["run_at"]  # type: ignore[index]


async def test_fail_records_reason_and_who(actions: Actions, seeded: Seeded, db_url: str) -> None:
    outcome = await actions.fail("alice", [seeded.ready, seeded.running], "customer cancelled")
    assert outcome.done == [seeded.ready] and outcome.skipped == [seeded.running]
    after = row(db_url, seeded.ready)
    assert after["attempts"] == after["max_attempts"]  # type: ignore[index]
    assert after["last_error"] == "customer cancelled (failed by alice from the dashboard)"  # type: ignore[index]
    with pytest.raises(errors.ConfigurationError, match="reason"):
        await actions.fail("alice", [seeded.ready], "  ")


async def test_complete_deletes_only_unlocked_jobs(actions: Actions, seeded: Seeded, db_url: str) -> None:
    outcome = await actions.complete("alice", [seeded.ready, seeded.orphan])
    assert outcome.done == [seeded.ready] and outcome.skipped == [seeded.orphan]
    assert row(db_url, seeded.ready) is None and row(db_url, seeded.orphan) is not None


async def test_requeue_gives_failed_jobs_their_attempts_back(actions: Actions, seeded: Seeded, db_url: str) -> None:
    outcome = await actions.requeue("alice", [seeded.failed, seeded.ready])
    assert outcome.done == [seeded.failed] and outcome.skipped == [seeded.ready]  # ready is not failed
    after = row(db_url, seeded.failed)
    assert after["attempts"] == 0 and after["due"] is True  # type: ignore[index]


async def test_delete_by_key_leaves_a_running_job_alone(actions: Actions, seeded: Seeded, db_url: str) -> None:
    outcome = await actions.delete_key("alice", "digest:bob")
    assert outcome.done == [seeded.keyed] and row(db_url, seeded.keyed) is None
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update graphile_worker._private_jobs set key = 'busy' where id = %s", (seeded.running,))
    outcome = await actions.delete_key("alice", "busy")
    assert outcome.done == [] and outcome.skipped == [seeded.running]
    assert row(db_url, seeded.running)["key"] == "busy"  # type: ignore[index]
    assert "no job has key" in (await actions.delete_key("alice", "missing")).message


async def test_retry_group_runs_the_groups_jobs_now(actions: Actions, seeded: Seeded, db_url: str) -> None:
    outcome = await actions.retry_group("alice", "flaky_call", "TimeoutError: took too long")
    assert outcome.done == [seeded.failed]
    assert row(db_url, seeded.failed)["attempts"] == 0  # type: ignore[index]
    outcome = await actions.retry_group("alice", "flaky_call", "ValueError: upstream said no")
    assert outcome.done == [seeded.retrying]
    after = row(db_url, seeded.retrying)
    assert after["attempts"] == 1 and after["due"] is True  # type: ignore[index]


async def test_sweep_dry_run_changes_nothing_then_sweep_recovers(actions: Actions, seeded: Seeded, db_url: str) -> None:
    dry = await actions.sweep("alice", threshold="5m", dry_run=True)
    assert dry.sweep is not None and dry.sweep.stale_workers == ["w-stale"]
    assert dry.sweep.orphan_lock_holders == ["node-orphan"] and "would recover 1 job" in dry.message
    assert row(db_url, seeded.orphan)["locked_by"] == "node-orphan"  # type: ignore[index]
    done = await actions.sweep("alice", threshold="5m", dry_run=False)
    assert done.done == [seeded.orphan] and row(db_url, seeded.orphan)["locked_by"] is None  # type: ignore[index]
    assert row(db_url, seeded.running)["locked_by"] == "w-live"  # type: ignore[index]


async def test_delete_by_key_leaves_a_job_claimed_between_check_and_delete(
    actions: Actions, seeded: Seeded, db_url: str
) -> None:
    """A worker claims the job while the delete is under way: its claim (an open transaction holding the row) is
    committed only once the delete waits on it. The delete must re-check the lock and leave the job alone."""
    import asyncio
    import time

    claim = psycopg.connect(db_url)  # not autocommit: the claim stays open, holding the row lock
    try:
        claim.execute(
            "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'w-live',"
            " attempts = attempts + 1 where id = %s",
            (seeded.keyed,),
        )
        deleting = asyncio.create_task(actions.delete_key("alice", "digest:bob"))
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as watch:
            while True:  # until the action's statement waits on the claim's row lock
                assert not deleting.done(), deleting.result()
                [[waiting]] = watch.execute(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and wait_event_type = 'Lock' and wait_event = 'transactionid'"
                ).fetchall()
                if waiting:
                    break
                assert time.monotonic() < deadline, "the delete never waited on the claimed row"
                await asyncio.sleep(0.05)
        claim.commit()
        outcome = await asyncio.wait_for(deleting, 30)
    finally:
        claim.close()
    assert outcome.done == [] and outcome.skipped == [seeded.keyed] and "running" in outcome.message
    after = row(db_url, seeded.keyed)
    assert after is not None, "a running job was deleted under its worker"
    # Untouched: graphile's remove_job would have cleared the key and used up the attempts.
    assert (after["key"], after["attempts"], after["locked_by"]) == ("digest:bob", 1, "w-live")

"""job_key and job_key_mode: replace (debounce), preserve_run_at (throttle), unsafe_dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobworker.jobs import JobKeyMode
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import fetch, job_row, job_rows

SOON = datetime.now(UTC) + timedelta(hours=1)
LATER = SOON + timedelta(hours=1)


async def lock(url: str, job_id: int, worker: str = "someone-else") -> None:
    await fetch(
        url,
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s, attempts = attempts + 1 "
        "where id = %s",
        [worker, job_id],
    )


async def test_replace_overwrites_payload_and_run_at(utils: WorkerUtils, db_url: str) -> None:
    first = await utils.add_job("debounced", {"v": 1}, job_key="k", run_at=SOON)
    second = await utils.add_job("debounced", {"v": 2}, job_key="k", run_at=LATER, priority=3)

    assert second.id == first.id
    assert second.revision == 1
    rows = await job_rows(db_url)
    assert len(rows) == 1
    assert rows[0]["payload"] == {"v": 2}
    assert rows[0]["run_at"] == LATER
    assert rows[0]["priority"] == 3


async def test_replace_is_the_default_mode(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("debounced", {"v": 1}, job_key="k", run_at=SOON)
    await utils.add_job("debounced", {"v": 2}, job_key="k", run_at=LATER, job_key_mode=JobKeyMode.REPLACE)
    await utils.add_job("debounced", {"v": 3}, job_key="k", run_at=SOON)
    rows = await job_rows(db_url)
    assert [(r["payload"], r["run_at"], r["revision"]) for r in rows] == [({"v": 3}, SOON, 2)]


async def test_preserve_run_at_keeps_the_first_run_at(utils: WorkerUtils, db_url: str) -> None:
    first = await utils.add_job("throttled", {"v": 1}, job_key="k", run_at=SOON)
    second = await utils.add_job("throttled", {"v": 2}, job_key="k", run_at=LATER, job_key_mode="preserve_run_at")

    assert second.id == first.id
    row = await job_row(db_url, first.id)
    assert row is not None
    assert row["run_at"] == SOON
    assert row["payload"] == {"v": 2}
    assert row["revision"] == 1


async def test_unsafe_dedupe_leaves_the_existing_job_alone(utils: WorkerUtils, db_url: str) -> None:
    first = await utils.add_job("deduped", {"v": 1}, job_key="k", run_at=SOON)
    second = await utils.add_job("deduped", {"v": 2}, job_key="k", run_at=LATER, job_key_mode="unsafe_dedupe")

    assert second.id == first.id
    assert second.revision == 1
    rows = await job_rows(db_url)
    assert [(r["payload"], r["run_at"]) for r in rows] == [({"v": 1}, SOON)]


async def test_unsafe_dedupe_does_not_add_beside_a_locked_or_failed_job(utils: WorkerUtils, db_url: str) -> None:
    locked = await utils.add_job("deduped", {"v": 1}, job_key="locked")
    await lock(db_url, locked.id)
    failed = await utils.add_job("deduped", {"v": 1}, job_key="failed", max_attempts=1)
    await fetch(db_url, "update graphile_worker._private_jobs set attempts = 1 where id = %s", [failed.id])

    again_locked = await utils.add_job("deduped", {"v": 2}, job_key="locked", job_key_mode="unsafe_dedupe")
    again_failed = await utils.add_job("deduped", {"v": 2}, job_key="failed", job_key_mode="unsafe_dedupe")

    assert (again_locked.id, again_failed.id) == (locked.id, failed.id)
    rows = await job_rows(db_url)
    assert len(rows) == 2
    assert all(r["payload"] == {"v": 1} for r in rows)


async def test_replacing_a_locked_job_adds_a_new_one_and_stops_the_old_ones_retries(
    utils: WorkerUtils, db_url: str
) -> None:
    running = await utils.add_job("busy", {"v": 1}, job_key="k", max_attempts=5)
    await lock(db_url, running.id)

    fresh = await utils.add_job("busy", {"v": 2}, job_key="k")

    assert fresh.id != running.id
    old = await job_row(db_url, running.id)
    new = await job_row(db_url, fresh.id)
    assert old is not None and new is not None
    assert old["key"] is None
    assert old["attempts"] == old["max_attempts"] == 5
    assert old["locked_by"] == "someone-else"  # still running: the worker finishes it
    assert (new["key"], new["payload"], new["attempts"], new["locked_at"]) == ("k", {"v": 2}, 0, None)


async def test_replacing_a_failed_job_resets_attempts_and_last_error(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("flaky", {"v": 1}, job_key="k", max_attempts=5)
    await fetch(
        db_url,
        "update graphile_worker._private_jobs set attempts = 2, last_error = 'boom' where id = %s",
        [job.id],
    )

    again = await utils.add_job("flaky", {"v": 2}, job_key="k")

    assert again.id == job.id
    row = await job_row(db_url, job.id)
    assert row is not None
    assert (row["attempts"], row["last_error"], row["payload"]) == (0, None, {"v": 2})


async def test_replacing_a_permanently_failed_job_adds_a_new_job(utils: WorkerUtils, db_url: str) -> None:
    job = await utils.add_job("dead", {"v": 1}, job_key="k", max_attempts=2)
    await fetch(
        db_url, "update graphile_worker._private_jobs set attempts = 2, last_error = 'x' where id = %s", [job.id]
    )

    again = await utils.add_job("dead", {"v": 2}, job_key="k")

    assert again.id != job.id
    old = await job_row(db_url, job.id)
    assert old is not None and old["key"] is None and old["last_error"] == "x"
    assert again.key == "k" and again.attempts == 0


async def test_revision_increments_on_every_update(utils: WorkerUtils, db_url: str) -> None:
    revisions = [(await utils.add_job("counted", {"i": i}, job_key="k")).revision for i in range(4)]
    revisions.append((await utils.add_job("counted", job_key="k", job_key_mode="preserve_run_at")).revision)
    revisions.append((await utils.add_job("counted", job_key="k", job_key_mode="unsafe_dedupe")).revision)
    assert revisions == [0, 1, 2, 3, 4, 5]
    rows = await job_rows(db_url)
    assert [r["revision"] for r in rows] == [5]


async def test_batch_payloads_are_concatenated_on_replace(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("batched", [{"id": 1}, {"id": 2}], job_key="k")
    await utils.add_job("batched", [{"id": 3}], job_key="k")
    await utils.add_job("batched", [{"id": 4}], job_key="k", job_key_mode="preserve_run_at")
    rows = await job_rows(db_url)
    assert [r["payload"] for r in rows] == [[{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]]


async def test_an_object_payload_replaces_a_batch_payload(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("batched", [1, 2], job_key="k")
    await utils.add_job("batched", {"reset": True}, job_key="k")
    rows = await job_rows(db_url)
    assert [r["payload"] for r in rows] == [{"reset": True}]


async def test_different_keys_make_different_jobs(utils: WorkerUtils, db_url: str) -> None:
    a = await utils.add_job("keyed", job_key="a")
    b = await utils.add_job("keyed", job_key="b")
    assert a.id != b.id
    assert len(await job_rows(db_url)) == 2

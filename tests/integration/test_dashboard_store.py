"""Every read query of the dashboard, on real PostgreSQL with one job in each state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jobworker.dashboard.store import DashboardStore, JobFilter
from tests.dashboard_seed import Seeded, seed


@pytest.fixture
async def seeded(db_url: str) -> Seeded:
    return await seed(db_url)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[DashboardStore]:
    s = DashboardStore(db_url, "graphile_worker", read_only=True, refresh=0.01)
    await s.open()
    yield s
    await s.close()


async def test_overview_counts_each_state_exactly_on_a_small_table(store: DashboardStore, seeded: Seeded) -> None:
    snap = await store.overview()
    assert snap.sampled_percent is None
    assert {s: snap.total(s) for s in ("ready", "scheduled", "retrying", "running", "failed")} == {
        "ready": 2,  # the plain one and the keyed one
        "scheduled": 1,
        "retrying": 1,
        "running": 2,  # one held by a registered worker, one by an unregistered owner
        "failed": 1,
    }
    by = {(c.task, c.queue, c.state): c.count for c in snap.counts}
    assert by[("build_report", "reports", "running")] == 1
    assert snap.workers_live == 1 and snap.workers_stale == 1
    assert snap.oldest_waiting_seconds is not None and snap.oldest_waiting_seconds >= 0


async def test_overview_is_cached_between_refreshes(db_url: str, seeded: Seeded) -> None:
    s = DashboardStore(db_url, "graphile_worker", read_only=True, refresh=3600)
    await s.open()
    try:
        first = await s.overview()
        sent = s.queries_run
        for _ in range(20):  # twenty tabs polling
            assert await s.overview() is first
        assert s.queries_run == sent
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (JobFilter(state="ready"), {"ready", "keyed"}),
        (JobFilter(state="scheduled"), {"scheduled"}),
        (JobFilter(state="retrying"), {"retrying"}),
        (JobFilter(state="failed"), {"failed"}),
        (JobFilter(state="running"), {"running", "orphan"}),
        (JobFilter(task="flaky_call"), {"retrying", "failed"}),
        (JobFilter(queue_name="reports"), {"orphan"}),
        (JobFilter(key="digest:bob"), {"keyed"}),
        (JobFilter(error="TIMEOUTERROR"), {"failed"}),
        (JobFilter(task="flaky_call", error="upstream"), {"retrying"}),
    ],
)
async def test_list_jobs_filters(store: DashboardStore, seeded: Seeded, f: JobFilter, expected: set[str]) -> None:
    found = {r.id for r in await store.list_jobs(f)}
    assert found == {getattr(seeded, name) for name in expected}


async def test_list_jobs_keyset_pages_cover_every_job_once(store: DashboardStore, seeded: Seeded) -> None:
    seen: list[int] = []
    before = None
    while True:
        page = await store.list_jobs(JobFilter(), before=before, limit=3)
        if not page:
            break
        seen += [r.id for r in page]
        before = page[-1].id
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7


async def test_job_detail_names_the_lock_holder_and_its_age(store: DashboardStore, seeded: Seeded) -> None:
    running = await store.job(seeded.running)
    orphan = await store.job(seeded.orphan)
    assert running is not None and orphan is not None
    assert running.locked_by == "w-live" and running.lock_owner_registered is True
    assert 25 < running.locked_seconds < 600
    assert orphan.lock_owner_registered is False
    ready = await store.job(seeded.ready)
    assert ready is not None and '"secret"' in ready.payload_text and ready.state == "ready"
    assert await store.job(10**9) is None


async def test_filter_options_list_tasks_and_queues(store: DashboardStore, seeded: Seeded) -> None:
    tasks, queues = await store.filter_options()
    assert tasks == ["build_report", "flaky_call", "send_email"] and queues == ["reports"]


async def test_failure_groups_by_task_and_first_line(store: DashboardStore, seeded: Seeded) -> None:
    groups = {(g.task_identifier, g.first_line): (g.failed, g.retrying) for g in await store.failure_groups()}
    assert groups == {
        ("flaky_call", "ValueError: upstream said no"): (0, 1),
        ("flaky_call", "TimeoutError: took too long"): (1, 0),
    }
    members = await store.failure_group_jobs("flaky_call", "TimeoutError: took too long")
    assert [r.id for r in members] == [seeded.failed]


async def test_workers_with_running_jobs_and_unregistered_lock_holders(store: DashboardStore, seeded: Seeded) -> None:
    workers = {w.id: w for w in await store.workers()}
    assert set(workers) == {"w-live", "w-stale"}
    assert [r["id"] for r in workers["w-live"].running] == [seeded.running]
    assert workers["w-stale"].heartbeat_age_seconds > 3000
    [orphan] = await store.unregistered_locks()
    assert (orphan.locked_by, orphan.jobs, orphan.queues) == ("node-orphan", 1, 1)
    assert orphan.oldest_lock_seconds > 7000


async def test_queues_show_holder_and_depth(store: DashboardStore, seeded: Seeded) -> None:
    [q] = await store.queues()
    assert (q.queue_name, q.locked_by, q.depth, q.due) == ("reports", "node-orphan", 1, 0)


async def test_schedules_from_the_schedulers_table(store: DashboardStore, seeded: Seeded) -> None:
    [row] = await store.schedules()
    assert row.identifier == "nightly" and row.last_execution is not None


async def test_guards_see_only_unlocked_jobs(store: DashboardStore, seeded: Seeded) -> None:
    free = [r.id for r in await store.unlocked_jobs([seeded.ready, seeded.running, seeded.orphan])]
    assert free == [seeded.ready]
    found = await store.job_by_key("digest:bob")
    assert found is not None and found.id == seeded.keyed and found.locked_at is None


async def test_read_only_sessions_cannot_write(store: DashboardStore, seeded: Seeded) -> None:
    import psycopg

    from jobworker import errors, queries

    with pytest.raises(errors.DatabaseError) as refused:
        await store.db.all(queries.COMPLETE_JOBS_ADMIN, {"job_ids": [seeded.ready]})
    assert isinstance(refused.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)

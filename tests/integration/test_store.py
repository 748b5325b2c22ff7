"""JobStore on real PostgreSQL: typed rows, error mapping, and reconnecting after the server restarts.

The restart tests run their own embedded server (restarting the session's would disturb the other tests),
so they skip against JOBWORKER_TEST_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import psycopg
import pytest

from jobworker import errors, migrate, queries
from jobworker.devdb import EphemeralPostgres, free_port
from jobworker.models import AddedJob, Job, QueueStats
from jobworker.queries import JobId, Query
from jobworker.store import JobStore, PoolOptions, refused
from tests.integration.runtime import fetch
from tests.tcp_proxy import TcpProxy


def add_params(task: str, **options: object) -> dict[str, object]:
    base: dict[str, object] = {
        "identifier": task,
        "payload": "{}",
        "queue_name": None,
        "run_at": None,
        "max_attempts": None,
        "job_key": None,
        "priority": None,
        "flags": None,
        "job_key_mode": "replace",
    }
    return {**base, **options}


LIST_ALL = {"state": None, "task": None, "queue_name": None, "limit": 100}


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[JobStore]:
    async with JobStore(db_url) as s:
        yield s


# -- typed rows -----------------------------------------------------------------------------------
async def test_rows_come_back_as_the_declared_frozen_dataclasses(store: JobStore) -> None:
    [added] = await store.all(queries.ADD_JOB, add_params("typed", queue_name="tq"))
    assert isinstance(added, AddedJob) and added.revision == 0 and isinstance(added.run_at, datetime)
    [job] = await store.all(queries.LIST_JOBS, LIST_ALL)
    assert isinstance(job, Job) and (job.id, job.task_identifier, job.queue_name, job.state) == (
        added.id,
        "typed",
        "tq",
        "ready",
    )
    with pytest.raises(AttributeError):
        job.state = "failed"  # type: ignore[misc]

    await store.execute(queries.HEARTBEAT, {"worker_id": "w-typed", "metadata": '{"runtime": "test"}'})
    [worker] = await store.all(queries.LIST_WORKERS)
    # extract(epoch ...) arrives from PostgreSQL as numeric (Decimal); the row type says float.
    assert type(worker.heartbeat_age_seconds) is float and type(worker.locked_jobs) is int
    assert worker.metadata == {"runtime": "test"}

    stats = await store.queue_stats(stale_after=timedelta(minutes=5))
    assert isinstance(stats, QueueStats) and stats.ready == 1 and stats.workers_active == 1
    assert type(stats.oldest_ready_seconds) is float


async def test_a_row_type_that_does_not_match_the_columns_names_the_query_and_the_fix(store: JobStore) -> None:
    await store.all(queries.ADD_JOB, add_params("mismatch"))
    with pytest.raises(RuntimeError, match=r"query list_jobs: columns .* do not match the fields of JobId"):
        await store.all(Query("list_jobs", JobId), LIST_ALL)
    with pytest.raises(RuntimeError, match="no '-- name: no_such_query' block"):
        Query("no_such_query", JobId)


async def test_a_statement_run_for_its_effect_returns_nothing(store: JobStore) -> None:
    assert await store.execute(queries.FORCE_UNLOCK_WORKERS, {"worker_ids": ["nobody"]}) is None


async def test_the_latest_migration_is_read_and_none_before_install(store: JobStore, empty_db_url: str) -> None:
    assert (await store.latest_migration() or 0) >= migrate.GRAPHILE_INSTALL
    async with JobStore(empty_db_url) as empty:
        assert await empty.latest_migration() is None


# -- error mapping --------------------------------------------------------------------------------
async def test_a_missing_schema_says_to_run_migrate(empty_db_url: str) -> None:
    async with JobStore(empty_db_url) as store:
        with pytest.raises(errors.DatabaseError, match=r"run `jobworker migrate`") as info:
            await store.all(queries.LIST_JOBS, LIST_ALL)
    assert not isinstance(info.value, errors.DatabaseUnreachableError)
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)


async def test_a_refused_value_is_a_refusal_not_an_outage(store: JobStore) -> None:
    with pytest.raises(errors.DatabaseError) as info:
        await store.all(queries.ADD_JOB, add_params("refused", max_attempts=0))
    assert not isinstance(info.value, errors.DatabaseUnreachableError)
    assert refused(info.value)
    # The session is still good after a refusal.
    assert await store.all(queries.LIST_JOBS, LIST_ALL) == []


async def test_a_closed_port_is_unreachable_in_both_modes() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with JobStore(url) as single:
        with pytest.raises(errors.DatabaseUnreachableError, match="cannot reach the database") as info:
            await single.all(queries.LIST_JOBS, LIST_ALL)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    pooled = JobStore(url, pool=PoolOptions(wait=1, reconnect_timeout=0, open_timeout=1))
    async with pooled:
        with pytest.raises(errors.DatabaseUnreachableError, match="cannot reach the database"):
            await pooled.open()
    assert pooled.closed


async def test_a_statement_on_a_connection_that_stopped_answering_gives_up_after_the_operation_timeout(
    db_url: str,
) -> None:
    proxy = await TcpProxy.to_database(db_url)
    try:
        async with JobStore(proxy.url(db_url), operation_timeout=1) as store:
            assert await store.all(queries.LIST_JOBS, LIST_ALL) == []
            proxy.freeze_existing()
            with pytest.raises(errors.DatabaseUnreachableError, match="JOBWORKER_OPERATION_TIMEOUT"):
                await store.all(queries.LIST_JOBS, LIST_ALL)
            # The frozen session is given up; the next statement gets a new connection through the proxy.
            assert await store.all(queries.LIST_JOBS, LIST_ALL) == []
    finally:
        await proxy.close()


# -- reconnecting after a restart -----------------------------------------------------------------
@pytest.fixture(scope="module")
def own_pg() -> Iterator[EphemeralPostgres]:
    if os.environ.get("JOBWORKER_TEST_DATABASE_URL"):
        pytest.skip("restarting PostgreSQL needs an embedded server of the test's own")
    server = EphemeralPostgres().start()
    try:
        asyncio.run(migrate.migrate(server.url))
        yield server
    finally:
        server.cleanup()


async def until_it_answers(store: JobStore, within: float = 60.0) -> list[Job]:
    """Poll until the store answers again (the pool may still be reconnecting right after a start)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await store.all(queries.LIST_JOBS, LIST_ALL)
        except errors.DatabaseUnreachableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_a_read_reconnects_transparently_after_a_restart(own_pg: EphemeralPostgres) -> None:
    await fetch(own_pg.url, "delete from graphile_worker._private_jobs")
    async with JobStore(own_pg.url) as store:
        await store.all(queries.ADD_JOB, add_params("before_restart"))
        own_pg.restart()
        # The session died with the server; the read runs again on a new one, unseen by the caller.
        assert [j.task_identifier for j in await store.all(queries.LIST_JOBS, LIST_ALL)] == ["before_restart"]
        async with store.transaction() as tx:
            assert len(await tx.all(queries.LIST_JOBS, LIST_ALL)) == 1


async def test_an_enqueue_after_a_restart_fails_once_and_is_never_repeated(own_pg: EphemeralPostgres) -> None:
    await fetch(own_pg.url, "delete from graphile_worker._private_jobs")
    async with JobStore(own_pg.url) as store:
        await store.all(queries.ADD_JOB, add_params("enqueued"))
        own_pg.restart()
        with pytest.raises(errors.DatabaseUnreachableError):
            await store.all(queries.ADD_JOB, add_params("enqueued"))
        await store.all(queries.ADD_JOB, add_params("enqueued"))
        assert len(await store.all(queries.LIST_JOBS, LIST_ALL)) == 2


async def test_a_pool_fails_fast_while_the_server_is_down_and_recovers_once_it_is_back(
    own_pg: EphemeralPostgres,
) -> None:
    # The worker's settings: give up reconnecting at once, wait 1 s at most for a connection.
    options = PoolOptions(min_size=1, max_size=3, wait=1.0, reconnect_timeout=0, prepare_threshold=0)
    async with JobStore(own_pg.url, pool=options) as store:
        await store.open()
        await store.all(queries.LIST_JOBS, LIST_ALL)
        own_pg._run("pg_ctl", "-D", str(own_pg.data), "-m", "immediate", "-w", "stop")  # a crash, to the clients
        try:
            with pytest.raises(errors.DatabaseUnreachableError, match="cannot reach the database"):
                await store.all(queries.LIST_JOBS, LIST_ALL)
            with pytest.raises(errors.DatabaseUnreachableError):
                await store.all(queries.LIST_JOBS, LIST_ALL)
        finally:
            own_pg._pg_ctl("start")
        assert await until_it_answers(store) is not None
        async with store.transaction() as tx:
            await tx.all(queries.LIST_JOBS, LIST_ALL)


async def test_the_worker_hot_path_rows_are_named_tuples(store: JobStore) -> None:
    [added] = await store.all(queries.ADD_JOB, add_params("hot", payload='{"n": 1}'))
    [task] = await store.all(queries.REGISTER_TASKS, {"identifiers": ["hot"]})
    params = {"worker_id": "w-hot", "task_ids": [task.id], "queue_names": None, "forbidden_flags": None, "limit": 5}
    [claimed] = await store.all(queries.GET_JOBS, params)
    assert isinstance(claimed, queries.ClaimedJob) and isinstance(claimed, tuple)
    assert (claimed.id, claimed.task_identifier, claimed.payload, claimed.attempts) == (added.id, "hot", '{"n": 1}', 1)
    done = await store.all(queries.COMPLETE_JOBS, {"job_ids": [added.id], "worker_id": "w-hot"})
    assert done == [JobId(added.id)]

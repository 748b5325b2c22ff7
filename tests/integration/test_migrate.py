"""migrate(): install graphile-worker 0.17's schema plus jobworker's own table, safely and idempotently."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobworker import errors, migrate
from jobworker.jobs import JobContext, define_job
from jobworker.registry import JobRegistry
from jobworker.worker import Worker
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import FAST, fetch

BREAKING = {1, 3, 11, 13, 14, 16, 19}


async def migrations(url: str, schema: str = "graphile_worker") -> list[tuple[int, bool]]:
    rows = await fetch(url, f'select id, breaking from "{schema}".migrations order by id')  # type: ignore[arg-type]
    return [(r["id"], r["breaking"]) for r in rows]


async def jobworker_migrations(url: str, schema: str = "graphile_worker") -> list[int]:
    rows = await fetch(url, f'select id from "{schema}".jobworker_migrations order by id')  # type: ignore[arg-type]
    return [r["id"] for r in rows]


async def test_fresh_install_records_graphiles_migrations_and_jobworkers_own(empty_db_url: str) -> None:
    result = await migrate.migrate(empty_db_url)

    assert result.installed and result.changed
    assert (result.graphile_version, result.jobworker_version) == (19, 1)
    assert await migrations(empty_db_url) == [(i, i in BREAKING) for i in range(1, 20)]
    assert await jobworker_migrations(empty_db_url) == [1]
    assert await migrate.schema_version(empty_db_url) == (19, 1)


async def test_a_second_run_does_nothing(empty_db_url: str) -> None:
    await migrate.migrate(empty_db_url)
    before = await fetch(empty_db_url, "select id, ts from graphile_worker.migrations order by id")

    again = await migrate.migrate(empty_db_url)

    assert not again.installed and again.applied == [] and not again.changed
    assert await fetch(empty_db_url, "select id, ts from graphile_worker.migrations order by id") == before
    assert await jobworker_migrations(empty_db_url) == [1]


async def test_concurrent_migrators_are_safe(empty_db_url: str) -> None:
    results = await asyncio.gather(*(migrate.migrate(empty_db_url) for _ in range(5)))

    assert sum(r.installed for r in results) == 1
    assert all((r.graphile_version, r.jobworker_version) == (19, 1) for r in results)
    assert await migrations(empty_db_url) == [(i, i in BREAKING) for i in range(1, 20)]
    assert await jobworker_migrations(empty_db_url) == [1]
    async with WorkerUtils(empty_db_url) as utils:
        assert (await utils.add_job("after_concurrent_migrate")).id == 1


async def test_a_newer_breaking_graphile_migration_is_refused(db_url: str) -> None:
    await fetch(db_url, "insert into graphile_worker.migrations (id, breaking) values (20, true)")

    with pytest.raises(errors.SchemaTooNewError) as caught:
        await migrate.migrate(db_url)

    message = str(caught.value)
    assert "graphile-worker migration 20" in message and "breaking" in message and "upgrade jobworker" in message
    assert "\n" not in message
    assert await migrations(db_url) == [(i, i in BREAKING) for i in range(1, 20)] + [(20, True)]


async def test_a_newer_non_breaking_graphile_migration_is_tolerated(db_url: str) -> None:
    await fetch(db_url, "insert into graphile_worker.migrations (id, breaking) values (20, false)")

    result = await migrate.migrate(db_url)

    assert not result.changed and result.graphile_version == 19
    async with WorkerUtils(db_url) as utils:
        assert (await utils.add_job("still_works")).id == 1


async def test_a_newer_breaking_jobworker_migration_is_refused(db_url: str) -> None:
    await fetch(db_url, "insert into graphile_worker.jobworker_migrations (id, breaking) values (2, true)")
    with pytest.raises(errors.SchemaTooNewError, match="jobworker migration 2"):
        await migrate.migrate(db_url)


async def test_an_older_graphile_schema_is_refused_with_the_upgrade_path(empty_db_url: str) -> None:
    await fetch(
        empty_db_url,
        "create schema graphile_worker; "
        "create table graphile_worker.migrations (id int primary key, ts timestamptz default now(), breaking bool);"
        "insert into graphile_worker.migrations (id, breaking) select i, false from generate_series(1, 18) i",
    )
    with pytest.raises(errors.SchemaTooNewError, match="older than the 19"):
        await migrate.migrate(empty_db_url)
    assert len(await migrations(empty_db_url)) == 18


async def test_a_custom_schema_name(empty_db_url: str) -> None:
    ran: list[int] = []

    @define_job("in_custom_schema", payload=dict)
    async def in_custom_schema(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])

    result = await migrate.migrate(empty_db_url, "my_jobs")

    assert result.installed
    present = await fetch(empty_db_url, "select nspname from pg_namespace where nspname like %s", ["%jobs%"])
    assert [r["nspname"] for r in present] == ["my_jobs"]
    assert await migrate.schema_version(empty_db_url) == (None, 0), "nothing was installed in graphile_worker"
    assert await migrations(empty_db_url, "my_jobs") == [(i, i in BREAKING) for i in range(1, 20)]
    async with WorkerUtils(empty_db_url, schema="my_jobs") as utils:
        await utils.add_job("in_custom_schema", {"n": 7})
    worker = Worker(JobRegistry([in_custom_schema]), database_url=empty_db_url, schema="my_jobs", **FAST)
    assert await worker.run_once() == 1
    assert ran == [7]
    assert await fetch(empty_db_url, "select id from my_jobs._private_jobs") == []
    assert await migrate.schema_version(empty_db_url, "my_jobs") == (19, 1)
    assert await migrate.schema_version(empty_db_url) == (None, 0)


async def test_a_schema_name_that_is_not_an_identifier_is_refused(empty_db_url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="schema: 'jobs; drop table x' is not a plain"):
        await migrate.migrate(empty_db_url, "jobs; drop table x")

"""migrate(): install graphile-worker 0.18's schema plus jobworker's own tables, safely and idempotently."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobworker import errors, migrate, sql
from jobworker.jobs import JobContext, define_job
from jobworker.registry import JobRegistry
from jobworker.worker import Worker
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import FAST, fetch

BREAKING = {1, 3, 11, 13, 14, 16, 19}

OWN = [n for n, _ in sql.migration_files()["jobworker"]]
"""jobworker's own migration ids, from the files: a new migration needs no edit here."""


async def migrations(url: str, schema: str = "graphile_worker") -> list[tuple[int, bool]]:
    rows = await fetch(url, f'select id, breaking from "{schema}".migrations order by id')  # type: ignore[arg-type]
    return [(r["id"], r["breaking"]) for r in rows]


async def jobworker_migrations(url: str, schema: str = "graphile_worker") -> list[int]:
    rows = await fetch(url, f'select id from "{schema}".jobworker_migrations order by id')  # type: ignore[arg-type]
    return [r["id"] for r in rows]


async def test_fresh_install_records_graphiles_migrations_and_jobworkers_own(empty_db_url: str) -> None:
    result = await migrate.migrate(empty_db_url)

    assert result.installed and result.changed
    assert result.applied == ["graphile 19", "graphile 20", *(f"jobworker {n}" for n in OWN)]
    assert (result.graphile_version, result.jobworker_version) == (20, OWN[-1])
    assert await migrations(empty_db_url) == [(i, i in BREAKING) for i in range(1, 21)]
    assert await jobworker_migrations(empty_db_url) == OWN
    assert await migrate.schema_version(empty_db_url) == (20, OWN[-1])


async def test_a_second_run_does_nothing(empty_db_url: str) -> None:
    await migrate.migrate(empty_db_url)
    before = await fetch(empty_db_url, "select id, ts from graphile_worker.migrations order by id")

    again = await migrate.migrate(empty_db_url)

    assert not again.installed and again.applied == [] and not again.changed
    assert await fetch(empty_db_url, "select id, ts from graphile_worker.migrations order by id") == before
    assert await jobworker_migrations(empty_db_url) == OWN


async def test_concurrent_migrators_are_safe(empty_db_url: str) -> None:
    results = await asyncio.gather(*(migrate.migrate(empty_db_url) for _ in range(5)))

    assert sum(r.installed for r in results) == 1
    assert all((r.graphile_version, r.jobworker_version) == (20, OWN[-1]) for r in results)
    assert await migrations(empty_db_url) == [(i, i in BREAKING) for i in range(1, 21)]
    assert await jobworker_migrations(empty_db_url) == OWN
    async with WorkerUtils(empty_db_url) as utils:
        assert (await utils.add_job("after_concurrent_migrate")).id == 1


async def test_a_newer_breaking_graphile_migration_is_refused(db_url: str) -> None:
    await fetch(db_url, "insert into graphile_worker.migrations (id, breaking) values (23, true)")

    with pytest.raises(errors.SchemaTooNewError) as caught:
        await migrate.migrate(db_url)

    message = str(caught.value)
    assert "graphile-worker migration 23" in message and "breaking" in message and "upgrade jobworker" in message
    assert "\n" not in message
    assert await migrations(db_url) == [(i, i in BREAKING) for i in range(1, 21)] + [(23, True)]


async def test_a_newer_non_breaking_graphile_migration_is_tolerated(db_url: str) -> None:
    await fetch(db_url, "insert into graphile_worker.migrations (id, breaking) values (23, false)")

    result = await migrate.migrate(db_url)

    assert not result.changed and result.graphile_version == 20
    async with WorkerUtils(db_url) as utils:
        assert (await utils.add_job("still_works")).id == 1


async def test_a_newer_breaking_jobworker_migration_is_refused(db_url: str) -> None:
    newer = OWN[-1] + 1
    await fetch(db_url, f"insert into graphile_worker.jobworker_migrations (id, breaking) values ({newer}, true)")  # type: ignore[arg-type]
    with pytest.raises(errors.SchemaTooNewError, match=f"jobworker migration {newer}"):
        await migrate.migrate(db_url)


async def test_an_older_graphile_schema_is_refused_with_the_upgrade_path(empty_db_url: str) -> None:
    await fetch(
        empty_db_url,
        "create schema graphile_worker; "
        "create table graphile_worker.migrations (id int primary key, ts timestamptz default now(), breaking bool);"
        "insert into graphile_worker.migrations (id, breaking) select i, false from generate_series(1, 18) i",
    )
    with pytest.raises(errors.SchemaTooOldError, match="older than the 19"):
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
    assert await migrations(empty_db_url, "my_jobs") == [(i, i in BREAKING) for i in range(1, 21)]
    async with WorkerUtils(empty_db_url, schema="my_jobs") as utils:
        await utils.add_job("in_custom_schema", {"n": 7})
    worker = Worker(JobRegistry([in_custom_schema]), database_url=empty_db_url, schema="my_jobs", **FAST)
    assert await worker.run_once() == 1
    assert ran == [7]
    assert await fetch(empty_db_url, "select id from my_jobs._private_jobs") == []
    assert await migrate.schema_version(empty_db_url, "my_jobs") == (20, OWN[-1])
    assert await migrate.schema_version(empty_db_url) == (None, 0)


async def test_a_schema_name_that_is_not_an_identifier_is_refused(empty_db_url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="schema: 'jobs; drop table x' is not a plain"):
        await migrate.migrate(empty_db_url, "jobs; drop table x")


# -- the workers table every runtime shares (graphile_worker_rs's shape) --------------------------
RUST_WORKERS_COLUMNS = [
    ("id", "text", "NO", None),
    ("last_heartbeat_at", "timestamp with time zone", "NO", None),
    ("started_at", "timestamp with time zone", "NO", "now()"),
    ("metadata", "jsonb", "YES", None),
]
SHARED_FUNCTIONS = {
    "worker_heartbeat": "worker_id text, metadata json DEFAULT NULL::json",
    "worker_deregister": "worker_id text",
    "list_stale_workers": "stale_threshold interval",
    "list_orphan_locked_workers": "stale_threshold interval",
    "recover_dead_worker_jobs": "worker_ids text[], recovery_delay interval DEFAULT '00:00:00'::interval",
    "delete_stale_workers": "worker_ids text[]",
}


async def assert_shared_workers_shape(url: str) -> None:
    columns = await fetch(
        url,
        "select column_name, data_type, is_nullable, column_default from information_schema.columns "
        "where table_schema = 'graphile_worker' and table_name = '_private_workers' order by ordinal_position",
    )
    assert [tuple(c.values()) for c in columns] == RUST_WORKERS_COLUMNS
    rls = await fetch(
        url, "select relrowsecurity from pg_class where oid = 'graphile_worker._private_workers'::regclass"
    )
    assert rls == [{"relrowsecurity": False}], "a table another runtime may own must not have row-level security"
    indexes = await fetch(
        url, "select indexname from pg_indexes where tablename = '_private_workers' order by indexname"
    )
    assert [i["indexname"] for i in indexes] == ["_private_workers_last_heartbeat_at_idx", "_private_workers_pkey"]
    functions = await fetch(
        url,
        "select p.proname, pg_get_function_arguments(p.oid) as args from pg_proc p "
        "join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'graphile_worker' "
        "and p.proname = any(%s) order by p.proname",
        [[*SHARED_FUNCTIONS, "get_stale_workers", "get_orphan_locks", "recover_worker_jobs"]],
    )
    assert {f["proname"]: f["args"] for f in functions} == SHARED_FUNCTIONS
    assert len(functions) == len(SHARED_FUNCTIONS), "one overload each: an untyped call must not be ambiguous"


async def install_jobworker_1(url: str) -> None:
    """The schema jobworker migrate left before its migration 2: graphile 19 and jobworker 1."""
    files = sql.migration_files()
    graphile, own = dict(files["graphile"]), dict(files["jobworker"])
    await fetch(url, sql.render(graphile[19], "graphile_worker"))
    await fetch(
        url,
        "create table graphile_worker.jobworker_migrations "
        "(id int primary key, ts timestamptz not null default now(), breaking boolean not null default false)",
    )
    await fetch(url, sql.render(own[1], "graphile_worker"))
    await fetch(url, "insert into graphile_worker.jobworker_migrations (id) values (1)")


async def test_a_fresh_install_has_the_shared_workers_table_and_functions(empty_db_url: str) -> None:
    await migrate.migrate(empty_db_url)

    await assert_shared_workers_shape(empty_db_url)
    # an untyped call, as graphile_worker_rs makes it, resolves and registers with no metadata
    await fetch(empty_db_url, "select graphile_worker.worker_heartbeat('rust-like')")
    rows = await fetch(empty_db_url, "select id, metadata from graphile_worker._private_workers")
    assert rows == [{"id": "rust-like", "metadata": None}]


async def test_upgrading_a_jobworker_1_schema_drains_its_workers_then_takes_the_shared_shape(
    empty_db_url: str,
) -> None:
    url = empty_db_url
    await install_jobworker_1(url)
    await fetch(
        url,
        """select graphile_worker.worker_heartbeat('old-worker', '{"tasks": ["a"], "runtime": "jobworker"}'::jsonb)""",
    )
    # a worker of another runtime sharing the table is not what the drain stops
    await fetch(url, """select graphile_worker.worker_heartbeat('node-or-rust', '{}'::jsonb)""")

    with pytest.raises(migrate.BreakingMigrationPendingError, match="jobworker migration 2 while 1 workers"):
        await migrate.migrate(url)
    assert await jobworker_migrations(url) == [1], "nothing was applied"

    result = await migrate.migrate(url, allow_breaking=True)

    assert result.applied == ["graphile 20", *(f"jobworker {n}" for n in OWN[1:])] and not result.installed
    await assert_shared_workers_shape(url)
    rows = await fetch(url, "select id, metadata from graphile_worker._private_workers order by id")
    assert [r["id"] for r in rows] == ["node-or-rust", "old-worker"], "registered workers are kept"
    assert rows[1]["metadata"] == {"tasks": ["a"], "runtime": "jobworker"}
    assert (await migrate.migrate(url)).applied == []

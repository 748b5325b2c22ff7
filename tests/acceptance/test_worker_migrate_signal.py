"""graphile-worker's ``worker:migrate`` signal, both ways (issue 14, item 6).

graphile-worker's migrator sends ``worker:migrate`` with ``{"migrationNumber": N, "breaking": bool}`` in the
transaction that applies a migration, and its workers exit with code 57 on a breaking one. ``jobworker
migrate`` sends the same when it applies a migration, so Node workers sharing the schema stop when jobworker
applies a breaking one; and ``jobworker worker`` stops gracefully on the signal and exits with 57 too.
The database is set back to before jobworker's breaking migration 2, as the previous jobworker left it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.acceptance.conftest import NodeEnv, Spawn
from tests.acceptance.helpers import Process, eventually, jobworker, sql

EXIT_BREAKING_MIGRATION = 57


def _ready(worker: Process) -> None:
    eventually(worker.output, lambda out: "node worker ready" in out, timeout=60, what="the Node worker")


def _before_breaking_migration_2(url: str) -> None:
    sql(url, "delete from graphile_worker.jobworker_migrations where id >= 2")


def test_node_workers_exit_57_when_jobworker_applies_a_breaking_migration(
    db_url: str, node: NodeEnv, spawn: Spawn
) -> None:
    _before_breaking_migration_2(db_url)
    worker = node.worker(spawn, db_url)
    _ready(worker)
    try:
        migrated = jobworker(db_url, "--json", "migrate").json()
        assert migrated["applied"][0] == "jobworker 2", migrated
        assert worker.wait(30) == EXIT_BREAKING_MIGRATION, worker.output()
        assert "breaking migration" in worker.output()
    finally:
        worker.signal(signal.SIGKILL)


def test_node_workers_keep_running_through_a_migration_that_is_not_breaking(
    db_url: str, node: NodeEnv, spawn: Spawn
) -> None:
    newest = sql(db_url, "select max(id) as v from graphile_worker.jobworker_migrations")[0]["v"]
    sql(db_url, "delete from graphile_worker.jobworker_migrations where id = %s", [newest])
    worker = node.worker(spawn, db_url)
    _ready(worker)
    try:
        migrated = jobworker(db_url, "--json", "migrate").json()
        assert migrated["applied"] == [f"jobworker {newest}"], migrated
        added = node.add_jobs(db_url, [{"task": "record", "payload": {}}])
        eventually(
            lambda: sql(db_url, "select id from graphile_worker._private_jobs where id = %s", [added[0]["id"]]),
            lambda rows: rows == [],
            timeout=30,
            what="the Node worker running a job after the migration",
            context=worker.output,
        )
        assert worker.running(), worker.output()
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait(30)


def test_a_jobworker_worker_stops_gracefully_and_exits_57_on_a_breaking_migration(
    db_url: str, spawn_worker: Callable[..., Process]
) -> None:
    _before_breaking_migration_2(db_url)
    worker = spawn_worker(db_url, "--graceful-shutdown", "30s")
    eventually(
        lambda: sql(db_url, "select count(*) as n from graphile_worker._private_workers")[0]["n"],
        lambda n: n >= 1,
        timeout=30,
        what="the worker's first heartbeat",
        context=worker.output,
    )
    job = jobworker(db_url, "--json", "add", "record", "--payload", '{"sleep": 2}').json()
    eventually(
        lambda: sql(db_url, "select note from public.acceptance_effects where job_id = %s", [job["id"]]),
        lambda rows: [r["note"] for r in rows] == ["started"],
        timeout=30,
        what="the job started",
        context=worker.output,
    )
    # Its own workers are active, so jobworker migrate refuses without --allow-breaking (exit 3).
    migrated = jobworker(db_url, "--json", "migrate", "--allow-breaking").json()
    assert migrated["applied"][0] == "jobworker 2", migrated
    assert worker.wait(40) == EXIT_BREAKING_MIGRATION, worker.output()
    # Graceful: the running job finished and was recorded, and the worker deregistered.
    notes = sql(db_url, "select note from public.acceptance_effects where job_id = %s order by id", [job["id"]])
    assert [r["note"] for r in notes] == ["started", "done"], worker.output()
    assert sql(db_url, "select count(*) as n from graphile_worker._private_jobs")[0]["n"] == 0
    assert sql(db_url, "select count(*) as n from graphile_worker._private_workers")[0]["n"] == 0
    assert "breaking migration 2" in worker.output()

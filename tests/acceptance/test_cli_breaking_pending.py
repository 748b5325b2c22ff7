"""Exit 3 end to end (issue 11, item 8): a breaking jobworker migration is pending while a real worker
heartbeats, so ``jobworker migrate`` refuses with one line and exit 3; once the worker stopped it applies."""

from __future__ import annotations

import signal
from collections.abc import Callable

from jobworker import sql as sql_files
from tests.acceptance.conftest import Process
from tests.acceptance.helpers import eventually, jobworker, sql

OWN = [f"jobworker {n}" for n, _ in sql_files.migration_files()["jobworker"]]
"""jobworker's own migrations as ``migrate`` reports them, from the files: a new one needs no edit here."""


def test_a_pending_breaking_migration_exits_3_while_a_worker_runs(
    db_url: str, spawn_worker: Callable[..., Process]
) -> None:
    # The database as the previous jobworker left it: its breaking migration 2 not applied yet.
    sql(db_url, "delete from graphile_worker.jobworker_migrations where id >= 2")
    worker = spawn_worker(db_url)
    eventually(
        lambda: sql(db_url, "select count(*) as n from graphile_worker._private_workers")[0]["n"],
        lambda n: n >= 1,
        timeout=30,
        what="the worker's first heartbeat",
        context=worker.output,
    )

    refused = jobworker(db_url, "migrate")
    assert refused.code == 3, refused.describe()
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: refusing breaking jobworker migration 2 while 1 workers are active"), line
    assert "--allow-breaking" in line
    assert sql(db_url, "select max(id) as v from graphile_worker.jobworker_migrations") == [{"v": 1}]

    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    migrated = jobworker(db_url, "--json", "migrate").json()
    assert migrated["applied"] == OWN[1:]

"""A Node graphile-worker's long job is never recovered under it by the stale-worker sweep.

graphile-worker (Node) never registers in _private_workers and keeps a job locked for up to 4 hours by
design, so its locks are orphans only past graphile's own 4-hour rule (``--orphan-threshold``), never
past the sweep threshold meant for heartbeating workers.
"""

from __future__ import annotations

from typing import Any

from tests.acceptance.conftest import NodeEnv, Spawn
from tests.acceptance.helpers import done_counts, effects, eventually, jobworker, sql


def test_a_long_node_job_is_not_recovered_by_a_sweep_while_node_runs_it(
    node: NodeEnv, spawn: Spawn, db_url: str
) -> None:
    [job] = sql(db_url, "select (graphile_worker.add_job('record', json_build_object('sleep', 8))).id")
    runner = node.worker(spawn, db_url, tasks="record", concurrency=1)
    eventually(
        lambda: effects(db_url, "started"),
        lambda rows: len(rows) == 1,
        timeout=30,
        what="node started the job",
        context=runner.output,
    )
    # The lock is now older than the sweep threshold (1s) the sweep below uses.
    eventually(
        lambda: sql(
            db_url, "select now() - locked_at > interval '2 seconds' as old from graphile_worker._private_jobs"
        ),
        lambda rows: rows == [{"old": True}],
        timeout=10,
        what="the lock ages past the sweep threshold",
    )

    def sweep(*extra: str) -> dict[str, Any]:
        result: dict[str, Any] = jobworker(
            db_url, "--json", "sweep-stale-workers", "--sweep-threshold", "1s", "--recovery-delay", "0s", *extra
        ).json()
        return result

    swept = sweep()
    assert (swept["orphan_lock_holders"], swept["recovered_job_ids"]) == ([], [])
    # The documented knob still recovers a lock that is old enough by it.
    dry = sweep("--orphan-threshold", "1s", "--dry-run")
    assert dry["recovered_job_ids"] == [job["id"]]

    eventually(lambda: done_counts(db_url), lambda done: done == {job["id"]: 1}, timeout=30, what="node finished it")
    assert len(effects(db_url, "started")) == 1  # never run a second time in parallel

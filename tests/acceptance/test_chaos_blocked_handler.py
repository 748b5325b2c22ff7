"""The one way a job row is deleted while a run of it still goes on, made to happen on purpose: the chaos
suite saw it once. A partitioned worker's handler is blocked on I/O through the partition, so it cannot see
ctx.signal when its worker fences; the sweep takes the job after the threshold, another worker runs and
completes it (deleting the row), and the blocked run ends only when the partition heals. When the blocked
write is the run's first, it lands after the row is gone: the evidence then finds the run's worker by the
pid it logged, not by the lock the write read. The worker writes no
result for that run (fenced), so nothing is lost and the job is not completed twice by the stale worker, but
the handler's own effects ran twice: at-least-once, and the suite's evidence names the cause.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobworker.worker_utils import SyncWorkerUtils
from tests.acceptance.chaos_evidence import Evidence, Sweep
from tests.acceptance.conftest import Spawn
from tests.acceptance.helpers import eventually, jobworker_argv, sql
from tests.acceptance.test_chaos import ADD, SWEEP_THRESHOLD, WORKER_ENV, ProxyThread, chaos_url

__all__ = ["chaos_url"]  # the fixture


@pytest.mark.parametrize("blocked", ["hold", "blind"], ids=["in-a-statement", "before-its-first-write"])
def test_a_handler_blocked_through_a_partition_outlives_its_job_row(chaos_url: str, spawn: Spawn, blocked: str) -> None:
    url = chaos_url
    proxy = ProxyThread(url)
    evidence = Evidence()
    argv = jobworker_argv("worker", "--tasks", "tests.acceptance.chaos_tasks", "--poll-interval", "200ms")
    behind = spawn(argv, proxy.proxy.url(url), env=WORKER_ENV, name="w-proxy")
    try:

        def add(payload: dict[str, float]) -> int:
            params = {"task": "chaos", "payload": json.dumps(payload), "queue": None, "max": 25, "key": None}
            return int(sql(url, ADD, params)[0]["id"])

        def ran(job: int) -> int:
            return int(sql(url, "select count(*) as n from public.chaos_runs where job_id = %s", [job])[0]["n"])

        warm = add({"sleep": 0})  # the handler's side-table connections are open before the partition
        eventually(lambda: ran(warm), lambda n: n == 1, timeout=30, what="a first run", context=behind.output)
        job_id = add({blocked: 2})
        if blocked == "hold":
            eventually(lambda: ran(job_id), lambda n: n == 1, timeout=30, what="the run started")
        else:
            eventually(
                lambda: sql(url, "select locked_by from graphile_worker._private_jobs where id = %s", [job_id]),
                lambda rows: rows and rows[0]["locked_by"],
                timeout=30,
                what="the proxied worker claimed the job",
            )
        # The handler is now inside its 2 s statement, or about to make its first write, on a connection
        # through the proxy: freeze it there.
        proxy.do(proxy.proxy.freeze)
        frozen_at = datetime.now(UTC)
        with SyncWorkerUtils(url) as utils:

            def sweep() -> list[int]:
                result = utils.sweep_stale_workers(f"{SWEEP_THRESHOLD:g}s", "0s")
                if result.recovered_job_ids:
                    evidence.sweeps.append(
                        Sweep(datetime.now(UTC), tuple(result.stale_workers), tuple(result.recovered_job_ids))
                    )
                return result.recovered_job_ids

            eventually(sweep, lambda ids: job_id in ids, timeout=30, what="the sweep took the job back")
        direct = spawn(argv, url, env=WORKER_ENV, name="w-direct")
        eventually(
            lambda: sql(url, "select deleted_at from public.chaos_deleted where job_id = %s", [job_id]),
            bool,
            timeout=30,
            what="the other worker completed the job",
            context=direct.output,
        )
        proxy.do(proxy.proxy.thaw)
        evidence.partitions.append((behind.pid, frozen_at, datetime.now(UTC)))
        eventually(
            lambda: sql(url, "select * from public.chaos_runs where job_id = %s and pid = %s", [job_id, behind.pid]),
            lambda rows: rows and rows[0]["finished_at"] is not None,
            timeout=60,
            what="the blocked run ended after the thaw",
            context=behind.output,
        )
    finally:
        proxy.close()

    [run] = sql(url, "select * from public.chaos_runs where job_id = %s and pid = %s", [job_id, behind.pid])
    [deleted] = sql(url, "select * from public.chaos_deleted where job_id = %s", [job_id])
    assert run["started_at"] < deleted["deleted_at"] < run["finished_at"]  # the row went under the run
    assert deleted["locked_by"] != run["locked_by"]  # the other worker's completion, never the stale one's
    assert run["outcome"] == "aborted"  # it saw the signal once unblocked, and wrote no result
    evidence.add_unlocks(sql(url, "select * from public.chaos_unlocks order by unlocked_at"))
    evidence.read_worker_log(behind.pid, Path(behind.log_dir) / f"{behind.name}.err")
    if blocked == "blind":
        assert run["locked_by"] is None  # its first write landed after the row was deleted: it names no one
    cause = evidence.cause(run)
    assert cause is not None and cause.kind == "swept from a stale worker (partitioned)", cause
    assert behind.running() and direct.running()

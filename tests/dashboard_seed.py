"""Seed data for the dashboard's tests: one job in every state, workers live and stale, and a big table.

The states are set with plain SQL after ``add_job`` because a real worker would take seconds to reach
them; the dashboard reads rows, so how a row got its columns does not matter to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from jobworker.worker_utils import WorkerUtils

S = "graphile_worker"


@dataclass(frozen=True)
class Seeded:
    ready: int
    scheduled: int
    retrying: int
    failed: int
    running: int
    orphan: int
    """Locked by ``node-orphan``, which never registered (a Node worker, say), in queue ``reports``."""
    keyed: int
    """A ready job with key ``digest:bob``."""


async def seed(url: str) -> Seeded:
    async with WorkerUtils(url) as u:
        ready = (await u.add_job("send_email", {"to": "ada@example.com", "secret": "s3cret-token"})).id
        scheduled = (await u.add_job("send_email", {"to": "x"}, run_at=datetime.now(UTC) + timedelta(hours=2))).id
        retrying = (await u.add_job("flaky_call", {"n": 1})).id
        failed = (await u.add_job("flaky_call", {"n": 2}, max_attempts=3)).id
        running = (await u.add_job("build_report", {"account": 1})).id
        orphan = (await u.add_job("build_report", {"account": 2}, queue_name="reports")).id
        keyed = (await u.add_job("send_email", {"to": "bob"}, job_key="digest:bob", priority=5)).id
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"update {S}._private_jobs set attempts = 1, last_error = 'ValueError: upstream said no\n  at call()',"
            " updated_at = now(), run_at = now() + interval '10 minutes' where id = %s",
            (retrying,),
        )
        conn.execute(
            f"update {S}._private_jobs set attempts = 3, last_error = 'TimeoutError: took too long\n  at wait()',"
            " updated_at = now() where id = %s",
            (failed,),
        )
        conn.execute(
            f"insert into {S}._private_workers (id, last_heartbeat_at)"
            " values ('w-live', now()), ('w-stale', now() - interval '1 hour')"
        )
        conn.execute(
            f"update {S}._private_jobs set locked_at = now() - interval '30 seconds', locked_by = 'w-live',"
            " attempts = 1 where id = %s",
            (running,),
        )
        conn.execute(
            f"update {S}._private_jobs set locked_at = now() - interval '5 hours', locked_by = 'node-orphan',"
            " attempts = 1 where id = %s",
            (orphan,),
        )
        conn.execute(
            f"update {S}._private_job_queues set locked_at = now() - interval '5 hours', locked_by = 'node-orphan'"
            " where queue_name = 'reports'"
        )
        conn.execute(
            f"insert into {S}._private_known_crontabs (identifier, known_since, last_execution)"
            " values ('nightly', now() - interval '2 days', date_trunc('minute', now()) - interval '1 hour')"
        )
    return Seeded(ready, scheduled, retrying, failed, running, orphan, keyed)


BIG_ROWS = 1_000_000


def seed_big(url: str, rows: int = BIG_ROWS) -> None:
    """``rows`` jobs in one INSERT ... SELECT generate_series: mostly ready, some scheduled, retrying, failed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"insert into {S}._private_tasks (identifier) select 'bulk_' || i from generate_series(1, 8) i"
            " on conflict do nothing"
        )
        conn.execute(
            f"insert into {S}._private_job_queues (queue_name) select 'bulk_q' || i from generate_series(1, 4) i"
            " on conflict do nothing"
        )
        conn.execute(
            f"""
            insert into {S}._private_jobs (task_id, job_queue_id, run_at, attempts, max_attempts, last_error)
            select t.id, case when i %% 10 = 0 then q.id end,
                   now() - interval '1 hour' + case when i %% 7 = 0 then interval '3 hours' else interval '0' end,
                   case when i %% 50 = 0 then 25 when i %% 13 = 0 then 2 else 0 end, 25,
                   case when i %% 50 = 0 or i %% 13 = 0 then 'Error: bulk failure ' || (i %% 5) end
            from generate_series(1, %s) i
            join {S}._private_tasks t on t.identifier = 'bulk_' || (1 + i %% 8)
            join {S}._private_job_queues q on q.queue_name = 'bulk_q' || (1 + i %% 4)
            """,
            (rows,),
        )
        conn.execute(f"vacuum analyze {S}._private_jobs")

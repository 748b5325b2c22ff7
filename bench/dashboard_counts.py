"""What exact per-state counts kept by triggers would cost the job hot path (not shipped; see bench/NOTES.md).

The overview cannot count a million rows exactly within 100 ms (docs/dashboard.md, "Large tables"); the one exact
way that is fast to read is a count kept by statement-level triggers on _private_jobs. This measures what those
triggers cost every add, claim and completion: the jobworker claim/complete SQL and graphile's add_job, 1,000 jobs
one at a time and 1,000 in batches of 50 (50 single adds, one claim of 50, one completion of 50), alternating
triggers off and on, 3 repeats. Reported: wall ms per job and CPU ms per job of the PostgreSQL backend.
Run: ``.venv/bin/python -m bench.dashboard_counts`` (about a minute).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import psycopg

from jobworker import sql
from jobworker.devdb import EphemeralPostgres
from jobworker.migrate import migrate

S = "graphile_worker"
STATE = (
    "case when r.locked_at is not null then 'running' when r.attempts >= r.max_attempts then 'failed'"
    " when r.attempts > 0 then 'retrying' else 'waiting' end"
)
MINUTE = "case when r.locked_at is null and r.attempts = 0 then floor(extract(epoch from r.run_at) / 60)::bigint end"
# Delta rows per (task, queue, state, minute of run_at for waiting jobs), appended by every statement: no row
# is updated in place, so concurrent workers never wait on each other. The lean variant: no compaction.
TRIGGERS = """create table __SCHEMA__.jobworker_job_counts (
  task_id integer not null,
  job_queue_id integer,
  state text not null,
  run_minute bigint,
  n bigint not null
);

create function __SCHEMA__.jobworker_count_inserted_jobs() returns trigger language plpgsql as $$
begin
  insert into __SCHEMA__.jobworker_job_counts (task_id, job_queue_id, state, run_minute, n)
  select r.task_id, r.job_queue_id, {STATE}, {MINUTE}, count(*)
  from new_rows r
  group by 1, 2, 3, 4;
  return null;
end $$;

create function __SCHEMA__.jobworker_count_deleted_jobs() returns trigger language plpgsql as $$
begin
  insert into __SCHEMA__.jobworker_job_counts (task_id, job_queue_id, state, run_minute, n)
  select r.task_id, r.job_queue_id, {STATE}, {MINUTE}, -count(*)
  from old_rows r
  group by 1, 2, 3, 4;
  return null;
end $$;

create function __SCHEMA__.jobworker_count_updated_jobs() returns trigger language plpgsql as $$
begin
  insert into __SCHEMA__.jobworker_job_counts (task_id, job_queue_id, state, run_minute, n)
  select c.task_id, c.job_queue_id, c.state, c.run_minute, sum(c.n)
  from (
    select r.task_id, r.job_queue_id, {STATE} as state, {MINUTE} as run_minute, -1 as n
    from old_rows r
    union all
    select r.task_id, r.job_queue_id, {STATE}, {MINUTE}, 1
    from new_rows r
  ) c
  group by 1, 2, 3, 4
  having sum(c.n) <> 0;
  return null;
end $$;

create function __SCHEMA__.jobworker_count_truncated_jobs() returns trigger language plpgsql as $$
begin
  delete from __SCHEMA__.jobworker_job_counts;
  return null;
end $$;

lock table __SCHEMA__._private_jobs in share row exclusive mode;
insert into __SCHEMA__.jobworker_job_counts (task_id, job_queue_id, state, run_minute, n)
select r.task_id, r.job_queue_id, {STATE}, {MINUTE}, count(*)
from __SCHEMA__._private_jobs r
group by 1, 2, 3, 4;

create trigger jobworker_count_inserted_jobs after insert on __SCHEMA__._private_jobs
  referencing new table as new_rows for each statement execute function __SCHEMA__.jobworker_count_inserted_jobs();
create trigger jobworker_count_deleted_jobs after delete on __SCHEMA__._private_jobs
  referencing old table as old_rows for each statement execute function __SCHEMA__.jobworker_count_deleted_jobs();
create trigger jobworker_count_updated_jobs after update on __SCHEMA__._private_jobs
  referencing old table as old_rows new table as new_rows
  for each statement execute function __SCHEMA__.jobworker_count_updated_jobs();
create trigger jobworker_count_truncated_jobs after truncate on __SCHEMA__._private_jobs
  for each statement execute function __SCHEMA__.jobworker_count_truncated_jobs();
"""
ADD = {
    "identifier": "t",
    "payload": "{}",
    "queue_name": None,
    "run_at": None,
    "max_attempts": None,
    "job_key": None,
    "priority": None,
    "flags": None,
    "job_key_mode": None,
}


def backend_cpu(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    with open(f"/proc/{conn.info.backend_pid}/stat") as stat:
        fields = stat.read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def main() -> None:
    with EphemeralPostgres() as pg:
        asyncio.run(migrate(pg.url))
        conn = psycopg.connect(pg.url, autocommit=True)
        conn.execute(TRIGGERS.replace("__SCHEMA__", S).replace("{STATE}", STATE).replace("{MINUTE}", MINUTE))  # type: ignore[arg-type]
        conn.execute(f"select {S}.add_job('t')")  # type: ignore[arg-type]
        [[task_id]] = conn.execute(f"select id from {S}._private_tasks where identifier = 't'").fetchall()  # type: ignore[arg-type]
        add, claim, done = (sql.query(n, S) for n in ("add_job", "get_jobs", "complete_jobs"))

        def toggle(on: bool) -> None:
            for t in ("inserted", "deleted", "updated", "truncated"):
                verb = "enable" if on else "disable"
                conn.execute(f"alter table {S}._private_jobs {verb} trigger jobworker_count_{t}_jobs")  # type: ignore[arg-type]

        def cycle(batch: int) -> None:
            for _ in range(1000 // batch):
                for _ in range(batch):
                    conn.execute(add, ADD)
                params = {"queue_names": None, "task_ids": [task_id], "forbidden_flags": None, "limit": batch}
                ids = [r[0] for r in conn.execute(claim, {**params, "worker_id": "w"}).fetchall()]
                conn.execute(done, {"job_ids": ids, "worker_id": "w"})

        runs: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        work: dict[str, Callable[[], None]] = {"one at a time": lambda: cycle(1), "batches of 50": lambda: cycle(50)}
        for _ in range(3):
            for on in (False, True):
                toggle(on)
                for name, fn in work.items():
                    cpu, started = backend_cpu(conn), time.perf_counter()
                    fn()
                    runs.setdefault((name, on), []).append((time.perf_counter() - started, backend_cpu(conn) - cpu))
        print("| 1,000 jobs | triggers | wall ms / job | backend CPU ms / job |")
        print("|---|---|---:|---:|")
        for (name, on), values in runs.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"| {name} | {'on' if on else 'off'} | {wall:.2f} | {cpu:.2f} |")
        conn.close()


if __name__ == "__main__":
    main()

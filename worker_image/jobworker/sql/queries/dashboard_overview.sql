-- name: dashboard_table_size
-- The planner's row estimate for the jobs table (free: one catalog row), to choose exact or sampled counts.
select greatest(c.reltuples, 0)::bigint as estimate
from pg_class c
where c.oid = to_regclass('__SCHEMA__._private_jobs')
-- name: dashboard_counts_exact
-- Jobs per task, queue and state, counted exactly: used while the table is small enough to scan quickly.
-- The states: running (locked), failed (attempts used up), retrying (failed before, will run again),
-- scheduled (first run in the future), ready (first run due).
select t.identifier as task_identifier, q.queue_name, c.state, c.count
from (
  select j.task_id, j.job_queue_id,
         case when j.locked_at is not null then 'running'
              when j.attempts >= j.max_attempts then 'failed'
              when j.attempts > 0 then 'retrying'
              when j.run_at > now() then 'scheduled'
              else 'ready' end as state,
         count(*) as count
  from __SCHEMA__._private_jobs j
  group by 1, 2, 3
) c
join __SCHEMA__._private_tasks t on t.id = c.task_id
left join __SCHEMA__._private_job_queues q on q.id = c.job_queue_id
order by 1, 2 nulls first, 3
-- name: dashboard_counts_sampled
-- The same counts estimated from a block sample of about `percent` per cent of the table, scaled up: a large
-- table cannot be counted exactly in the overview's time budget, and no index covers every state.
select t.identifier as task_identifier, q.queue_name, c.state,
       round(c.count * 100.0 / %(percent)s::float8)::bigint as count
from (
  select j.task_id, j.job_queue_id,
         case when j.locked_at is not null then 'running'
              when j.attempts >= j.max_attempts then 'failed'
              when j.attempts > 0 then 'retrying'
              when j.run_at > now() then 'scheduled'
              else 'ready' end as state,
         count(*) as count
  from __SCHEMA__._private_jobs j tablesample system (%(percent)s::float4)
  group by 1, 2, 3
) c
join __SCHEMA__._private_tasks t on t.id = c.task_id
left join __SCHEMA__._private_job_queues q on q.id = c.job_queue_id
order by 1, 2 nulls first, 3
-- name: dashboard_oldest_waiting
-- Age of the oldest job that could run now (available, run_at due), exactly, from jobs_main_index: a
-- loose index scan takes the first entry per priority (few distinct values), never the whole index.
with recursive firsts as (
  (select j.priority, j.run_at
   from __SCHEMA__._private_jobs j
   where j.is_available = true
   order by j.priority, j.run_at
   limit 1)
  union all
  select n.priority, n.run_at
  from firsts f
  cross join lateral (
    select j.priority, j.run_at
    from __SCHEMA__._private_jobs j
    where j.is_available = true and j.priority > f.priority
    order by j.priority, j.run_at
    limit 1
  ) n
)
select extract(epoch from now() - min(run_at))::float8 as oldest_seconds
from firsts
where run_at <= now()
-- name: dashboard_worker_counts
-- Live and stale registered workers by a heartbeat threshold in seconds.
select count(*) filter (where last_heartbeat_at >= now() - %(threshold)s * interval '1 second') as live,
       count(*) filter (where last_heartbeat_at < now() - %(threshold)s * interval '1 second') as stale
from __SCHEMA__._private_workers

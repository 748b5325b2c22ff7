-- name: dashboard_workers
-- Registered workers with their heartbeat age and the jobs each is running (id, task, seconds held).
select w.id, w.started_at, w.last_heartbeat_at, w.metadata,
       extract(epoch from now() - w.last_heartbeat_at)::float8 as heartbeat_age_seconds,
       coalesce((select json_agg(json_build_object('id', j.id, 'task', t.identifier,
                                                   'seconds', extract(epoch from now() - j.locked_at))
                                 order by j.locked_at)
                 from __SCHEMA__._private_jobs j
                 join __SCHEMA__._private_tasks t on t.id = j.task_id
                 where j.locked_by = w.id), '[]'::json) as running
from __SCHEMA__._private_workers w
order by w.started_at
-- name: dashboard_unregistered_locks
-- Lock holders with no registered worker (graphile-worker in Node or Rust does not heartbeat here):
-- their job and queue locks, and the oldest lock's age.
select l.locked_by, sum(l.jobs)::bigint as jobs, sum(l.queues)::bigint as queues,
       extract(epoch from now() - min(l.locked_at))::float8 as oldest_lock_seconds
from (
  select locked_by, count(*) as jobs, 0 as queues, min(locked_at) as locked_at
  from __SCHEMA__._private_jobs where locked_by is not null group by locked_by
  union all
  select locked_by, 0, count(*), min(locked_at)
  from __SCHEMA__._private_job_queues where locked_by is not null group by locked_by
) l
where not exists (select 1 from __SCHEMA__._private_workers w where w.id = l.locked_by)
group by l.locked_by
order by 4 desc

-- name: dashboard_queues
-- Named queues: who holds each (a named queue runs one job at a time), for how long, and its depth.
-- One grouped pass over the jobs (no index leads with job_queue_id), not one scan per queue.
select q.queue_name, q.locked_by, extract(epoch from now() - q.locked_at)::float8 as locked_seconds,
       coalesce(d.depth, 0) as depth, coalesce(d.due, 0) as due
from __SCHEMA__._private_job_queues q
left join (
  select j.job_queue_id, count(*) as depth,
         count(*) filter (where j.is_available = true and j.run_at <= now()) as due
  from __SCHEMA__._private_jobs j
  where j.job_queue_id is not null
  group by j.job_queue_id
) d on d.job_queue_id = q.id
order by q.queue_name

-- Claim up to %(limit)s jobs in one statement: priority then run_at order, only the tasks this worker
-- knows, no forbidden flag, and at most one job per named queue whose queue row is free, so named
-- queues stay serial. Claiming counts the attempt and locks the job (and its queue) to the worker.
with free_queues as (
  select q.id
  from __SCHEMA__._private_job_queues q
  where q.is_available = true
    and (%(queue_names)s::text[] is null or q.queue_name = any(%(queue_names)s::text[]))
  for update skip locked
),
queued as (
  select head.id, head.job_queue_id, head.priority, head.run_at
  from free_queues,
  lateral (
    select j.id, j.job_queue_id, j.priority, j.run_at
    from __SCHEMA__._private_jobs j
    where j.job_queue_id = free_queues.id
      and j.is_available = true
      and j.run_at <= now()
      and j.task_id = any(%(task_ids)s::int[])
      and (%(forbidden_flags)s::text[] is null or j.flags is null or not (j.flags ?| %(forbidden_flags)s::text[]))
    order by j.priority, j.run_at, j.id
    limit 1
    for update skip locked
  ) head
),
unqueued as (
  select j.id, j.job_queue_id, j.priority, j.run_at
  from __SCHEMA__._private_jobs j
  where %(queue_names)s::text[] is null
    and j.is_available = true
    and j.job_queue_id is null
    and j.run_at <= now()
    and j.task_id = any(%(task_ids)s::int[])
    and (%(forbidden_flags)s::text[] is null or j.flags is null or not (j.flags ?| %(forbidden_flags)s::text[]))
  order by j.priority, j.run_at, j.id
  limit %(limit)s
  for update skip locked
),
picked as (
  select * from (select * from unqueued union all select * from queued) c
  order by c.priority, c.run_at, c.id
  limit %(limit)s
),
locked_queues as (
  update __SCHEMA__._private_job_queues q
  set locked_at = now(), locked_by = %(worker_id)s
  from picked
  where q.id = picked.job_queue_id
  returning q.id
)
update __SCHEMA__._private_jobs j
set attempts = j.attempts + 1, locked_at = now(), locked_by = %(worker_id)s
from picked
where j.id = picked.id
returning j.id, j.task_id, j.job_queue_id, j.payload, j.priority, j.run_at, j.attempts, j.max_attempts,
          j.key, j.flags, j.created_at

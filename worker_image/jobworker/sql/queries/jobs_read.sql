-- name: list_jobs
-- Jobs filtered by state, task and queue; state is derived from the lock, attempts and run_at.
select j.id, t.identifier as task_identifier, q.queue_name, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags,
       case when j.locked_at is not null then 'locked'
            when j.attempts >= j.max_attempts then 'failed'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
where (%(task)s::text is null or t.identifier = %(task)s::text)
  and (%(queue_name)s::text is null or q.queue_name = %(queue_name)s::text)
  and (%(state)s::text is null or %(state)s::text = case
        when j.locked_at is not null then 'locked'
        when j.attempts >= j.max_attempts then 'failed'
        when j.run_at > now() then 'scheduled'
        else 'ready' end)
order by j.priority, j.run_at, j.id
limit %(limit)s
-- name: get_job
-- One job with its payload, for `jobworker show`.
select j.id, t.identifier as task_identifier, q.queue_name, j.payload, j.priority, j.run_at, j.attempts,
       j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision,
       j.flags,
       case when j.locked_at is not null then 'locked'
            when j.attempts >= j.max_attempts then 'failed'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
where j.id = %(job_id)s
-- name: queue_stats
-- Counts per task, queue and state, plus the age of the oldest ready job, for `stats` and the operator.
select t.identifier as task_identifier, q.queue_name,
       case when j.locked_at is not null then 'locked'
            when j.attempts >= j.max_attempts then 'failed'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state,
       count(*) as count,
       extract(epoch from now() - min(j.run_at)) as oldest_seconds
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
group by 1, 2, 3
order by 1, 2, 3
-- name: queue_stats_top_queues
-- As queue_stats, but only the top_queues named queues with the most jobs keep their name; every other
-- named queue counts under the name given as other, so one queue per entity cannot make the result (and
-- the series built from it) grow without bound.
with top as (
  select j.job_queue_id
  from __SCHEMA__._private_jobs j
  where j.job_queue_id is not null
  group by 1
  order by count(*) desc, 1
  limit %(top_queues)s
)
select t.identifier as task_identifier,
       case when j.job_queue_id is null then null
            when top.job_queue_id is not null then q.queue_name
            else %(other)s::text end as queue_name,
       case when j.locked_at is not null then 'locked'
            when j.attempts >= j.max_attempts then 'failed'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state,
       count(*) as count,
       extract(epoch from now() - min(j.run_at)) as oldest_seconds
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
left join top on top.job_queue_id = j.job_queue_id
group by 1, 2, 3
order by 1, 2, 3

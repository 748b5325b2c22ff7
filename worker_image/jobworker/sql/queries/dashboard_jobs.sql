-- name: dashboard_list_jobs
-- One page of jobs, newest first, filtered by state, task, queue, key and a substring of last_error.
-- Keyset pagination (id below the last one shown) walks the primary key backwards, so page 1000 costs what page 1 does.
select j.id, t.identifier as task_identifier, q.queue_name, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags,
       case when j.locked_at is not null then 'running'
            when j.attempts >= j.max_attempts then 'failed'
            when j.attempts > 0 then 'retrying'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
where (%(before)s::bigint is null or j.id < %(before)s::bigint)
  and (%(task)s::text is null or t.identifier = %(task)s::text)
  and (%(queue_name)s::text is null or q.queue_name = %(queue_name)s::text)
  and (%(key)s::text is null or j.key = %(key)s::text)
  and (%(error)s::text is null or strpos(lower(j.last_error), lower(%(error)s::text)) > 0)
  and (%(state)s::text is null or %(state)s::text = case
        when j.locked_at is not null then 'running'
        when j.attempts >= j.max_attempts then 'failed'
        when j.attempts > 0 then 'retrying'
        when j.run_at > now() then 'scheduled'
        else 'ready' end)
order by j.id desc
limit %(limit)s
-- name: dashboard_job
-- One job with its payload (as text, so the page can cap its size) and how long its lock has been held.
select j.id, t.identifier as task_identifier, q.queue_name, j.payload::text as payload_text,
       octet_length(j.payload::text) as payload_bytes, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags,
       extract(epoch from now() - j.locked_at)::float8 as locked_seconds,
       exists (select 1 from __SCHEMA__._private_workers w where w.id = j.locked_by) as lock_owner_registered,
       case when j.locked_at is not null then 'running'
            when j.attempts >= j.max_attempts then 'failed'
            when j.attempts > 0 then 'retrying'
            when j.run_at > now() then 'scheduled'
            else 'ready' end as state
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
where j.id = %(job_id)s::bigint
-- name: dashboard_filter_options
-- Task identifiers and queue names, for the filter menus.
select 'task' as kind, identifier as name from __SCHEMA__._private_tasks
union all
select 'queue', queue_name from __SCHEMA__._private_job_queues
order by 1, 2

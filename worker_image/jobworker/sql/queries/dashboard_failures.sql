-- name: dashboard_failure_groups
-- Failed and retrying jobs grouped by task and the first line of their last error, most frequent first.
select t.identifier as task_identifier, split_part(j.last_error, E'\n', 1) as first_line,
       count(*) filter (where j.attempts >= j.max_attempts) as failed,
       count(*) filter (where j.attempts < j.max_attempts) as retrying,
       max(j.updated_at) as last_seen
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
where j.attempts > 0 and j.last_error is not null and j.locked_at is null
group by 1, 2
order by count(*) desc, 1, 2
limit %(limit)s
-- name: dashboard_failure_group_jobs
-- The unlocked jobs of one failure group, for "retry group" (at most `limit` per click).
select j.id, j.attempts, j.max_attempts
from __SCHEMA__._private_jobs j
join __SCHEMA__._private_tasks t on t.id = j.task_id
where t.identifier = %(task)s::text
  and split_part(j.last_error, E'\n', 1) = %(first_line)s::text
  and j.attempts > 0 and j.locked_at is null
order by j.id
limit %(limit)s

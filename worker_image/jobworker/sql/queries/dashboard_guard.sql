-- name: dashboard_unlocked_jobs
-- Of the given ids, the jobs no worker holds, read just before an action: the dashboard never acts on a
-- running job (graphile's admin functions would touch one locked for more than 4 hours).
select j.id, j.run_at, j.attempts, j.max_attempts
from __SCHEMA__._private_jobs j
where j.id = any(%(job_ids)s::bigint[]) and j.locked_at is null
order by j.id
-- name: dashboard_job_by_key
-- The job holding a key, and whether a worker holds it, before "delete by key".
select j.id, j.locked_at
from __SCHEMA__._private_jobs j
where j.key = %(job_key)s::text

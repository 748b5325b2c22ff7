-- Give back jobs a stopping worker did not finish, without using up the attempt that claiming counted.
with returned as (
  update __SCHEMA__._private_jobs j
  set attempts = greatest(j.attempts - 1, 0), locked_at = null, locked_by = null, updated_at = now()
  where j.id = any(%(job_ids)s::bigint[]) and j.locked_by = %(worker_id)s
  returning j.id, j.job_queue_id
),
freed as (
  update __SCHEMA__._private_job_queues q
  set locked_at = null, locked_by = null
  where q.id in (select job_queue_id from returned where job_queue_id is not null)
    and q.locked_by = %(worker_id)s
)
select id from returned
